"""The ``torch.compile`` fused path: one compiled pass per tensor (inductor), cached process-wide.

On CPU ``fused=True`` runs the native kernel (:mod:`._native`) and comes here only where no C
compiler is available, or with ``LIONSPEC_FUSED_CPU=compile``.

:func:`fused_update` evaluates the algorithm's math (:mod:`._math`) on one tensor and writes the
results into the parameter, momentum and compensation buffers in place; ``torch.compile`` turns
that into one generated kernel per tensor (Tiger's per-tensor NaN flag adds a reduction over the
gradient; its RMS is computed before the call, see ``Tiger._prepare_fused``). The optimizer
calls :func:`fused_update_many`, the same per-tensor math over a short list of tensors (see
:data:`CHUNK`), so that the per-call dynamo/AOT wrapper cost is paid once per list.

Compilation is keyed by everything that changes the generated code: the algorithm, the device
type, the dtypes, and the structural switches (maximize, Tiger's role, window position and NaN
mode, and which coefficients are exactly 0 or 1: an absent term is absent from the kernel,
instead of computed and discarded by a per-element select, which made the fp32 Lion kernel
compute-bound at ~2x the memory time). Each key gets its *own* function object with its own
code object, so keys never share dynamo's cache entries or its recompile limit. Within a key:

* shapes are dynamic (``dynamic=True``) and tensors are passed flattened (1-D, or 2-D rows for
  Tiger's embedding role), so every tensor size shares one compiled kernel;
* hyperparameter values (lr, betas, decay) travel packed in one small tensor (:func:`pack`; one
  tensor keeps dynamo's per-call guard work small), so an LR schedule, or any change of a
  hyperparameter, never recompiles -- except a change to or from exactly 0 (or a keep factor of
  exactly 1), which compiles that variant once per process.

Tensors the compiled kernel is not specialised for (non-contiguous, or with a dimension < 2 in
the flattened view, where dynamo would specialise on the size) are stepped by the eager math
instead, with identical semantics.

>>> fusable_view(__import__("torch").zeros(3, 4), None)
((12,), None)
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._math import ALGORITHMS
from ._ops import TensorOps, double_rounds, round_once

__all__ = ["CHUNK", "chunk_sizes", "compiled_update", "compiled_update_many", "flat",
           "fusable_view", "fused_update", "fused_update_many", "pack"]

#: Most tensors per compiled call of :func:`fused_update_many`. One call costs ~100 µs of
#: dynamo/AOT wrapper work whatever its size, so batching cuts that cost per tensor; larger
#: chunks take longer to trace and compile (the first step).
CHUNK = 4


def chunk_sizes(n: int) -> list[int]:
    """``n`` tensors as calls of :data:`CHUNK` tensors, the rest in powers of two (so that at
    most ``log2(CHUNK) + 1`` list lengths, hence compiled graphs, exist per key).

    >>> chunk_sizes(19)
    [4, 4, 4, 4, 2, 1]
    """
    sizes = [CHUNK] * (n // CHUNK)
    rest = n % CHUNK
    bit = CHUNK
    while rest:
        bit //= 2
        if rest >= bit:
            sizes.append(bit)
            rest -= bit
    return sizes

_CACHE: dict[tuple[Any, ...], Callable[..., None]] = {}

#: Inductor by default drops a downcast-upcast pair (fp32 -> bf16 -> fp32) inside a fused kernel;
#: the compensated split ``lo = new − fp32(bf16(new))`` needs that rounding, so keep every cast.
_INDUCTOR_OPTIONS = {"emulate_precision_casts": True}


def fused_update(kind: str, theta: Tensor, grad: Tensor, exp_avg: Tensor, comp: Tensor | None,
                 hp: Tensor, given: dict[str, Any], layout: tuple[str, ...],
                 consts: dict[str, Any]) -> None:
    """Run the math of ``kind`` on one tensor and store the results in place.

    ``hp[i]`` is the hyperparameter named ``layout[i]``;
    ``given`` holds tensor arguments as they are, ``consts`` the structural (compiled-in) ones.
    """
    kwargs = dict(consts)
    for i, name in enumerate(layout):
        kwargs[name] = hp[i]
    kwargs.update(given)
    update = ALGORITHMS[kind](TensorOps, theta, grad, exp_avg, comp, **kwargs)
    for dst, value in ((theta, update.theta), (exp_avg, update.exp_avg), (comp, update.comp)):
        if value is not None and dst is not None:
            dst.copy_(round_once(value, dst.dtype) if double_rounds(value, dst.dtype) else value)


def fused_update_many(kind: str, thetas: list[Tensor], grads: list[Tensor],
                      exp_avgs: list[Tensor], comps: list[Tensor] | None, hp: Tensor,
                      givens: list[dict[str, Any]], layout: tuple[str, ...],
                      consts: dict[str, Any]) -> None:
    """:func:`fused_update` on each tensor of the lists in turn (one traced graph, one call).

    The same per-tensor math, so each tensor's result is that of :func:`fused_update`.
    """
    for i in range(len(thetas)):
        fused_update(kind, thetas[i], grads[i], exp_avgs[i],
                     None if comps is None else comps[i], hp, givens[i], layout, consts)


def _no_duck(fn: Callable[..., None]) -> Callable[..., None]:
    """``fn`` traced without duck shaping: every size is its own symbol, so that which tensors
    of a chunk happen to share a size never matters (no recompile when that pattern changes)."""
    from torch.fx.experimental import _config as fx_config

    def call(*args: Any) -> None:
        with fx_config.patch(use_duck_shape=False):
            fn(*args)

    return call


def _compiled(template: Callable[..., None], cache_key: tuple[Any, ...], exact_casts: bool,
              duck_shaping: bool) -> Callable[..., None]:
    """``template`` compiled once per process per ``cache_key``; a fresh function object (and name)
    per key so that dynamo's own caches never mix keys. ``exact_casts``: the kernel rounds to a
    narrower dtype and back inside (the compensated split), so inductor must keep those casts
    (the options patch inductor's config on every call: only where they matter)."""
    fn = _CACHE.get(cache_key)
    if fn is None:
        name = f"{template.__name__}_{len(_CACHE)}"
        fresh = types.FunctionType(template.__code__.replace(co_name=name),
                                   template.__globals__, name)
        options = _INDUCTOR_OPTIONS if exact_casts else None
        fn = torch.compile(fresh, dynamic=True, fullgraph=True, options=options)
        if not duck_shaping:
            fn = _no_duck(fn)
        _CACHE[cache_key] = fn
    return fn


def compiled_update_many(key: tuple[Any, ...], count: int,
                         exact_casts: bool) -> Callable[..., None]:
    """The compiled :func:`fused_update_many` for ``key`` and lists of ``count`` tensors."""
    return _compiled(fused_update_many, (key, "many", count), exact_casts, duck_shaping=False)


def compiled_update(key: tuple[Any, ...], exact_casts: bool) -> Callable[..., None]:
    """The compiled :func:`fused_update` for ``key``, compiled lazily once per process."""
    return _compiled(fused_update, key, exact_casts, duck_shaping=True)


def _alias(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A contiguous ``t`` reshaped to ``shape`` as a plain tensor on the same memory.

    Not ``t.view(shape)``: dynamo guards on a view's ``_base`` sizes, which would recompile the
    kernel for every base rank; a tensor ``set_`` on the storage carries no base.
    """
    strides = (shape[1], 1) if len(shape) == 2 else (1,)
    return t.new_empty(0).set_(t.untyped_storage(), t.storage_offset(), shape, strides)


def fusable_view(theta: Tensor, rms_dims: tuple[int, ...] | None
                 ) -> tuple[tuple[int, ...], tuple[int, ...] | None] | None:
    """The flattened shape the compiled kernel takes (and the RMS dims in it), or ``None``.

    1-D for everything but rows: ``(rows, row_length)`` when Tiger's RMS runs over ``rms_dims``
    (the last axis, or the last two of a complex tensor's real view).
    """
    if not theta.is_contiguous():
        return None
    if rms_dims is None:
        return ((theta.numel(),), None) if theta.numel() >= 2 else None
    row = math.prod(theta.shape[d] for d in rms_dims)
    if row < 2 or theta.numel() < 2 * row:
        return None
    return (theta.numel() // row, row), (-1,)


def flat(t: Tensor | None, shape: tuple[int, ...]) -> Tensor | None:
    """``t`` (contiguous) as a plain tensor of ``shape`` sharing its memory (see ``_alias``)."""
    return None if t is None else _alias(t, shape)


def pack(values: dict[str, Any], compute: torch.dtype, device: torch.device
         ) -> tuple[Tensor, tuple[tuple[str, bool], ...], dict[str, Any]]:
    """Hyperparameters as one tensor in ``compute`` and its layout, plus the compiled-in ones.

    Returns ``(hp, layout, consts)``: numbers go to ``hp`` (``layout`` names them), so a new
    value never recompiles; ``None`` and the bools (the "coefficient is exactly 0 / 1"
    conditions and flags) go to ``consts`` and so into the compile key: a term that is absent
    is then absent from the generated code instead of being computed and discarded by a
    per-element select. The price is one compilation per combination that occurs (e.g. an LR
    warm-up from exactly 0 compiles the lr == 0 variant once).
    """
    layout, numbers, consts = [], [], {}
    for name, value in values.items():
        if value is None or isinstance(value, bool):
            consts[name] = value
        else:
            layout.append(name)
            numbers.append(float(value))
    return torch.tensor(numbers, dtype=compute, device=device), tuple(layout), consts

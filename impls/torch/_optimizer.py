"""The ``torch.optim.Optimizer`` machinery shared by Lion, Signum and Tiger.

Subclasses supply the algorithm's name (its math in :mod:`._math`), their group validation and the
per-group hyperparameters as Python values; this base class handles what torch.optim users
expect: param groups, lazy state, closures, skipped params without gradients, sparse-gradient
errors, complex params (through ``torch.view_as_real``), tensor learning rates, ``state_dict``
round trips that keep the state's own dtypes, and the three code paths:

* ``"for-loop"``: one tensor at a time (:class:`~._ops.TensorOps`, Python-float hyperparameters);
* ``"foreach"``: tensors bucketed by (device, dtypes, structural flags), each bucket through
  :class:`~._ops.ListOps` -- the same operations, bit-identical to the for-loop;
* ``"fused"``: one pass over memory per tensor: on CPU the native C kernel (:mod:`._native`,
  every tensor of a group in one call), or ``torch.compile`` (:mod:`._fused`) where no C compiler
  is available; on CUDA the Triton kernels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from lionspec.spec._validate import check_lr, check_weight_decay

from . import _fused, _native
from ._math import ALGORITHMS, Update, compute_dtype
from ._ops import ListOps, TensorOps

__all__ = ["MOMENTUM_DTYPES", "SignOptimizer", "lr_value"]

#: dtypes accepted for ``momentum_dtype``.
MOMENTUM_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32,
                                            torch.float64)
_NARROW = (torch.float16, torch.bfloat16)
_FOREACH_DEVICES = ("cuda", "xpu")
#: devices whose ``fused=True`` runs the Triton kernels (:mod:`lionspec.impls.triton`); tests add
#: "cpu" to run them through Triton's interpreter
_TRITON_DEVICES: tuple[str, ...] = ("cuda",)
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def lr_value(lr: Any, name: str = "lr") -> float:
    """The learning rate as a Python float: a real number or a one-element real tensor, finite
    and ``>= 0`` (``ValueError`` naming ``name`` otherwise)."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1 or lr.is_complex():
            raise ValueError(f"{name} must be a real number or a one-element real tensor, got a "
                             f"tensor of shape {tuple(lr.shape)} and dtype {lr.dtype}")
        lr = lr.item()
    return check_lr(lr, name)


def _check_bool(group: dict[str, Any], name: str, allow_none: bool = False) -> None:
    value = group[name]
    if not (isinstance(value, bool) or (allow_none and value is None)):
        allowed = "True, False or None" if allow_none else "True or False"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


@dataclass
class Entry:
    """One parameter with a gradient, as the math sees it (real views of complex tensors)."""

    param: Tensor
    theta: Tensor
    grad: Tensor
    exp_avg: Tensor
    comp: Tensor | None
    state: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def compute(self) -> torch.dtype:
        return compute_dtype(self.theta.dtype, self.exp_avg.dtype)


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t.resolve_conj()) if t.is_complex() else t


class SignOptimizer(Optimizer):
    """Base class of :class:`~lionspec.impls.torch.Lion`, ``Signum`` and ``Tiger``."""

    #: key of :data:`._math.ALGORITHMS`
    algorithm: ClassVar[str]

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        if defaults.get("foreach") and defaults.get("fused"):
            raise ValueError("foreach and fused cannot both be True")
        super().__init__(params, defaults)

    # ---------------------------------------------------------------- groups and validation

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            if not (p.is_floating_point() or p.is_complex()):
                raise ValueError(f"params must be floating-point or complex tensors, got {p.dtype}")
        self._check_group(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters (``ValueError`` naming the parameter)."""
        lr_value(group["lr"])
        check_weight_decay(group["weight_decay"])
        for name in ("maximize", "compensated"):
            _check_bool(group, name)
        for name in ("foreach", "fused"):
            _check_bool(group, name, allow_none=True)
        if group["foreach"] and group["fused"]:
            raise ValueError("foreach and fused cannot both be True")
        mdt = group["momentum_dtype"]
        if mdt is not None and mdt not in MOMENTUM_DTYPES:
            raise ValueError(f"momentum_dtype must be None or one of "
                             f"{', '.join(map(str, MOMENTUM_DTYPES))}, got {mdt!r}")

    # ---------------------------------------------------------------- hooks for subclasses

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        """Shared hyperparameters of a group as Python floats and bools (the math's kwargs)."""
        raise NotImplementedError

    def _init_state(self, state: dict[str, Any], theta: Tensor) -> None:
        """Extra per-parameter state (Tiger's step counter)."""

    def _entry_args(self, group: dict[str, Any], entry: Entry, fused: bool
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Per-tensor arguments of the math: (uniform within a foreach bucket, per tensor)."""
        return {}, {}

    def _after_group(self, group: dict[str, Any], entries: list[Entry]) -> None:
        """Bookkeeping after a group was stepped (Tiger's step counters)."""

    #: names of the hyperparameters (keys of :meth:`_hyper`) the native kernel takes, in order
    _native_hp: ClassVar[tuple[str, ...]] = ()
    #: native kernel switch -> the :meth:`_hyper` bool that sets it
    _native_flags: ClassVar[dict[str, str]] = {}

    def _native_switches(self, group: dict[str, Any], e: Entry, hyper: dict[str, Any],
                         uniform: dict[str, Any], per: dict[str, Any]
                         ) -> tuple[dict[str, int], int]:
        """Per-entry switches of the native kernel beyond :attr:`_native_flags` (Tiger's role,
        window and NaN mode), and the row length of a per-row RMS (0: none)."""
        return {}, 0

    def _prepare_fused(self, flats: list[Tensor | None], given: dict[str, Any],
                       consts: dict[str, Any], hp: Tensor,
                       layout: tuple[str, ...]) -> None:
        """Extra tensor inputs of a fused call (Tiger passes its RMS, computed eagerly)."""

    # ---------------------------------------------------------------- state

    def _entries(self, group: dict[str, Any]) -> list[Entry]:
        entries = []
        name = type(self).__name__
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.layout != torch.strided:
                raise RuntimeError(f"{name} does not support sparse gradients (got layout "
                                   f"{p.grad.layout}); use dense gradients")
            theta, grad = _real(p), _real(p.grad)
            state = self.state[p]
            if "exp_avg" not in state:
                mdt = group["momentum_dtype"] or theta.dtype
                state["exp_avg"] = torch.zeros_like(theta, dtype=mdt,
                                                    memory_format=torch.preserve_format)
                self._init_state(state, theta)
            if group["compensated"] and theta.dtype in _NARROW:
                if "compensation" not in state:
                    state["compensation"] = torch.zeros_like(theta,
                                                             memory_format=torch.preserve_format)
            else:
                state.pop("compensation", None)
            entries.append(Entry(p, theta, grad, state["exp_avg"], state.get("compensation"),
                                 state))
        return entries

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As :meth:`torch.optim.Optimizer.load_state_dict`, but state tensors keep their own
        dtype (torch casts floating state to the parameter's dtype, which would round an fp32
        momentum of a bf16 parameter) and are copied (never aliased with ``state_dict``).
        Tiger's ``step`` counters stay int64 CPU tensors."""
        super().load_state_dict(state_dict)
        saved = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        live = chain.from_iterable(g["params"] for g in self.param_groups)
        for saved_id, p in zip(saved, live, strict=True):
            values = state_dict["state"].get(saved_id)
            if values is not None:
                self.state[p] = {k: self._restored(k, v, p) for k, v in values.items()}

    @staticmethod
    def _restored(key: str, value: Any, param: Tensor) -> Any:
        if not isinstance(value, Tensor):
            return value
        if key == "step":
            return value.detach().to("cpu", torch.int64, copy=True)
        return value.detach().to(device=param.device, copy=True)

    # ---------------------------------------------------------------- stepping

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step; ``closure`` (re-evaluating the loss) is called with
        gradients enabled and its result is returned."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = [(group, self._entries(group)) for group in self.param_groups]
        self._before_step(groups)
        if not getattr(self, "_native_prefetched", False):
            self._native_prefetch(groups)
            self._native_prefetched = True
        for group, entries in groups:
            self._step_group(group, entries)
            self._after_group(group, entries)
        return loss

    def _before_step(self, groups: list[tuple[dict[str, Any], list[Entry]]]) -> None:
        """Hook run once the entries of every group exist (Tiger's global NaN flag)."""

    @staticmethod
    def path(group: dict[str, Any], params: Iterable[Tensor]) -> str:
        """The code path a group takes: ``"fused"``, ``"foreach"`` or ``"for-loop"``.

        ``fused=None`` means False; ``foreach=None`` means True when every parameter lives on a
        device with ``_foreach`` kernels (CUDA, XPU), as for torch's AdamW.
        """
        if group["fused"]:
            return "fused"
        foreach = group["foreach"]
        if foreach is None:
            params = list(params)
            foreach = bool(params) and all(p.device.type in _FOREACH_DEVICES for p in params)
        return "foreach" if foreach else "for-loop"

    def _kwargs(self, group: dict[str, Any], entry: Entry) -> dict[str, Any]:
        return {"maximize": group["maximize"], "compute": entry.compute,
                "storage": entry.theta.dtype}

    def _step_group(self, group: dict[str, Any], entries: list[Entry]) -> None:
        live = [e for e in entries if e.theta.numel() > 0]
        if not live:
            return
        path = self.path(group, (e.param for e in live))
        hyper = self._hyper(group)
        if path == "foreach":
            self._foreach(group, live, hyper)
        elif path == "fused":
            self._fused(group, live, hyper)
        else:
            for e in live:
                self._eager(group, e, hyper)

    def _eager(self, group: dict[str, Any], e: Entry, hyper: dict[str, Any]) -> None:
        uniform, per = self._entry_args(group, e, fused=False)
        kwargs = {**hyper, **uniform, **self._kwargs(group, e)}
        for (theta, grad, exp_avg, comp), args in _blocks(e, per):
            update = ALGORITHMS[self.algorithm](TensorOps, theta, grad, exp_avg, comp,
                                                **kwargs, **args)
            _store(TensorOps, update, theta, exp_avg, comp)

    def _foreach(self, group: dict[str, Any], live: list[Entry], hyper: dict[str, Any]) -> None:
        buckets: dict[tuple[Any, ...], list[tuple[Entry, dict[str, Any]]]] = defaultdict(list)
        for e in live:
            uniform, per = self._entry_args(group, e, fused=False)
            key = (e.theta.device, e.theta.dtype, e.exp_avg.dtype, e.comp is not None,
                   tuple(sorted(uniform.items())))
            buckets[key].append((e, per))
        for key, items in buckets.items():
            kwargs = {**hyper, **dict(key[4]), **self._kwargs(group, items[0][0])}
            blocks = [b for e, per in items for b in _blocks(e, per)]
            for batch in _batches(blocks):
                if len(batch) == 1:
                    # a list of one block: the same ATen ops as the for-loop (the CPU foreach
                    # kernels call them per tensor), without the list machinery
                    (theta, grad, exp_avg, comp), args = batch[0]
                    update = ALGORITHMS[self.algorithm](TensorOps, theta, grad, exp_avg,
                                                        comp if key[3] else None, **kwargs,
                                                        **args)
                    _store(TensorOps, update, theta, exp_avg, comp if key[3] else None)
                    continue
                thetas, grads, exp_avgs, comps = (list(c) for c in zip(*(ts for ts, _ in batch),
                                                                        strict=True))
                per = {name: [args[name] for _, args in batch] for name in batch[0][1]}
                update = ALGORITHMS[self.algorithm](ListOps, thetas, grads, exp_avgs,
                                                    comps if key[3] else None, **kwargs, **per)
                _store(ListOps, update, thetas, exp_avgs, comps if key[3] else None)

    def _triton_step(self, group: dict[str, Any], entries: list[Entry]) -> bool:
        """Step ``entries`` with the Triton kernels; ``False`` if this algorithm or group option
        has no Triton path (then the compiled path runs)."""
        return False

    @staticmethod
    def _triton_ready(e: Entry) -> bool:
        """Whether the Triton kernels take this entry: a real, uncompensated parameter on a
        Triton device, θ, g and m contiguous in fp32/fp16/bf16."""
        tensors = (e.theta, e.grad, e.exp_avg)
        return (e.comp is None and not e.param.is_complex()
                and e.theta.device.type in _TRITON_DEVICES
                and all(t.dtype in _TRITON_DTYPES and t.is_contiguous() for t in tensors))

    @staticmethod
    def _native_ready(e: Entry) -> bool:
        """Whether the native kernel takes this entry: CPU, every tensor contiguous and of a
        dtype it handles (others take the torch.compile path)."""
        return (e.theta.device.type == "cpu"
                and all(t is None or (t.is_contiguous() and _native.takes(t.dtype))
                        for t in (e.theta, e.grad, e.exp_avg, e.comp)))

    def _native_calls(self, group: dict[str, Any], entries: list[Entry],
                      hyper: dict[str, Any]) -> dict[_native.Config, list[tuple[Entry, int]]]:
        """``entries`` by native kernel configuration, each with its RMS row length."""
        calls: dict[_native.Config, list[tuple[Entry, int]]] = defaultdict(list)
        switches = {macro: hyper[name] for macro, name in self._native_flags.items()}
        switches["MAXIMIZE"] = group["maximize"]
        for e in entries:
            uniform, per = self._entry_args(group, e, fused=True)
            extra, rowlen = self._native_switches(group, e, hyper, uniform, per)
            cfg = _native.config(self.algorithm, e.theta.dtype, e.grad.dtype, e.exp_avg.dtype,
                                 e.compute, {**switches, **extra, "COMP": e.comp is not None})
            calls[cfg].append((e, rowlen))
        return calls

    def _native_prefetch(self, groups: list[tuple[dict[str, Any], list[Entry]]]) -> None:
        """Build (or load) the native kernels of every fused CPU group at the first step at once,
        so that the missing ones compile concurrently (a first Tiger step has one per role).
        Later steps build what they miss as they go (e.g. Tiger's window-closing variant)."""
        configs: list[_native.Config] = []
        for group, entries in groups:
            live = [e for e in entries if e.theta.numel() > 0 and self._native_ready(e)]
            if live and self.path(group, (e.param for e in live)) == "fused":
                configs += self._native_calls(group, live, self._hyper(group))
        if configs and _native.backend() == "native":
            _native.kernels_or_none(configs)

    def _native_step(self, group: dict[str, Any], entries: list[Entry],
                     hyper: dict[str, Any]) -> bool:
        """Step ``entries`` with the native kernel, one call per configuration; ``False`` if it
        could not be built (then, under ``LIONSPEC_FUSED_CPU=auto``, torch.compile runs)."""
        calls = self._native_calls(group, entries, hyper)
        fns = _native.kernels_or_none(list(calls))
        if fns is None:
            return False
        hp = [float(hyper[name]) for name in self._native_hp]
        for fn, items in zip(fns, calls.values(), strict=True):
            _native.launch(fn, [(e.theta, e.grad, e.exp_avg, e.comp) for e, _ in items],
                           [e.theta.numel() for e, _ in items], [r for _, r in items], hp)
        # the kernel wrote through raw pointers: bump the version counters autograd checks
        torch.autograd.graph.increment_version([t for e in entries for t in (e.param, e.exp_avg)])
        return True

    def _fused(self, group: dict[str, Any], live: list[Entry], hyper: dict[str, Any]) -> None:
        ready = [e for e in live if self._triton_ready(e)]
        if ready and self._triton_step(group, ready):
            live = [e for e in live if not self._triton_ready(e)]
        native = [e for e in live if self._native_ready(e)]
        if native and _native.backend() == "native" and self._native_step(group, native, hyper):
            live = [e for e in live if not self._native_ready(e)]
        packed: dict[tuple[Any, ...], tuple[Tensor, tuple[str, ...], dict]] = {}
        calls: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
        for e in live:
            uniform, per = self._entry_args(group, e, fused=True)
            view = _fused.fusable_view(e.theta, per.get("rms_dims"))
            tensors_ok = all(t is None or t.is_contiguous() for t in (e.grad, e.exp_avg, e.comp))
            if view is None or not tensors_ok:
                self._eager(group, e, hyper)
                continue
            shape, rms_dims = view
            scalars = {name: v for name, v in per.items() if name != "rms_dims"}
            pk = (e.compute, e.theta.device, *scalars.items())
            if pk not in packed:
                packed[pk] = _fused.pack({**hyper, **scalars}, e.compute, e.theta.device)
            hp, layout, hp_consts = packed[pk]
            consts = {**uniform, **self._kwargs(group, e), **hp_consts}
            if "rms_dims" in per:
                consts["rms_dims"] = rms_dims
            flats = [_fused.flat(t, shape) for t in (e.theta, e.grad, e.exp_avg, e.comp)]
            given: dict[str, Any] = {}
            self._prepare_fused(flats, given, consts, hp, layout)
            key = (self.algorithm, e.theta.device.type, e.theta.dtype, e.grad.dtype,
                   e.exp_avg.dtype, e.comp is not None, layout, tuple(given),
                   tuple(sorted(consts.items(), key=str)))
            calls[(key, id(hp))].append((e, flats, given, hp, layout, consts))
        for (key, _), items in calls.items():
            exact = key[5]
            # measured (torch 2.13, CPU, 2 threads, GPT-2 shapes): batching gained ~5% for Lion
            # with θ and m of one dtype, but lost ~20% for bf16 θ + fp32 m and ~5% for Tiger
            batch = key[2] == key[4] and self.algorithm != "tiger"
            start = 0
            for size in _fused.chunk_sizes(len(items)) if batch else [1] * len(items):
                chunk, start = items[start:start + size], start + size
                _, _, _, hp, layout, consts = chunk[0]
                fn = _fused.compiled_update_many(key, len(chunk), exact_casts=exact)
                columns = list(zip(*(flats for _, flats, *_ in chunk), strict=True))
                comps = list(columns[3]) if exact else None
                fn(self.algorithm, list(columns[0]), list(columns[1]), list(columns[2]), comps,
                   hp, [given for _, _, given, *_ in chunk], layout, consts)
                # the kernel wrote through aliases: bump the version counters autograd checks
                torch.autograd.graph.increment_version(
                    [t for e, *_ in chunk for t in (e.param, e.exp_avg)])


#: Elements per block of the eager paths (for-loop and foreach). They evaluate the math one ATen
#: operation at a time, each writing a temporary; on blocks of this size (512 KiB per fp32
#: temporary, half of it per thread) the temporaries stay in the L2 cache, so the dozen passes of
#: the math run at cache speed and only θ, g, m (and the compensation) cross the memory bus,
#: once each. Elementwise math, so blocking never changes a result. Measured (torch 2.13, CPU,
#: 2 threads, Lion fp32 on one 16M-element tensor): whole tensor 178 ms, blocks of 2^15 69 ms,
#: 2^16 41 ms, 2^17 29 ms, 2^18 71 ms (the temporaries no longer fit), lion-pytorch 67 ms.
BLOCK = 1 << 17

Tensors4 = tuple[Tensor, Tensor, Tensor, Tensor | None]


def _blocks(e: Entry, per: dict[str, Any]) -> list[tuple[Tensors4, dict[str, Any]]]:
    """``e``'s (θ, g, m, comp) in blocks of at most :data:`BLOCK` elements, each with its
    per-tensor arguments: contiguous slices of the flattened tensors (of whole rows when Tiger's
    RMS is per row: its ``given_rms`` is sliced alongside). A tensor with a non-contiguous
    member, or no larger than a block, is one block as it is."""
    tensors: Tensors4 = (e.theta, e.grad, e.exp_avg, e.comp)
    n = e.theta.numel()
    if n <= BLOCK or not all(t is None or t.is_contiguous() for t in tensors):
        return [(tensors, per)]
    rms = per.get("given_rms")
    rows = rms.numel() if isinstance(rms, Tensor) and rms.dim() > 0 else n
    if rows != n:
        rms = rms.reshape(rows, 1)
    shape = (rows, n // rows) if rows != n else (n,)
    flat = [None if t is None else t.view(shape) for t in tensors]
    step = max(1, BLOCK * rows // n)
    blocks = []
    for start in range(0, rows, step):
        args = dict(per)
        if rows != n:
            args["given_rms"] = rms[start:start + step]
        views = tuple(None if t is None else t[start:start + step] for t in flat)
        blocks.append((views, args))
    return blocks


def _batches(blocks: list[tuple[Tensors4, dict[str, Any]]]
             ) -> list[list[tuple[Tensors4, dict[str, Any]]]]:
    """Consecutive blocks in lists of at most :data:`BLOCK` elements in all (a larger block
    alone): the foreach path's lists, so that one list's temporaries stay in cache together."""
    batches: list[list[tuple[Tensors4, dict[str, Any]]]] = []
    size = BLOCK
    for block in blocks:
        n = block[0][0].numel()
        if size + n > BLOCK:
            batches.append([])
            size = 0
        batches[-1].append(block)
        size += n
    return batches


def _store(ops: Any, update: Update, theta: Any, exp_avg: Any, comp: Any) -> None:
    if update.theta is not None:
        ops.store(theta, update.theta)
    if update.exp_avg is not None:
        ops.store(exp_avg, update.exp_avg)
    if update.comp is not None and comp is not None:
        ops.store(comp, update.comp)

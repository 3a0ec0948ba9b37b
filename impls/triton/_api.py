"""In-place multi-tensor steps: :func:`lion_step_`, :func:`signum_step_`, :func:`tiger_step_`."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lionspec.spec._validate import (
    check_accumulation_steps,
    check_beta,
    check_lr,
    check_role,
    check_shrink_ratio,
    check_step,
    check_weight_decay,
)

from . import _kernels as K
from ._launch import DTYPES, bf16_faithful, get_plan, launch

__all__ = ["DEFAULT_BLOCK", "NAN_CHECKS", "NAN_SCOPES", "lion_step_", "signum_step_",
           "tiger_step_"]

#: elements per program (fixed: no autotuning, so no kernel is ever launched twice per step)
DEFAULT_BLOCK = 1024
NAN_CHECKS = ("nan", "nonfinite")
NAN_SCOPES = ("tensor", "global")
_ROLE_CODE = {"weight": K.ROLE_RMS, "embedding": K.ROLE_RMS, "bias": K.ROLE_BIAS,
              "scale": K.ROLE_SCALE}


def _hyper(value: Any, name: str) -> float:
    """A real hyperparameter: a Python/NumPy real or a one-element real tensor (read with
    ``.item()``, which synchronises)."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{name} must be a real number or a one-element real tensor, got a "
                             f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _check_block(block: Any) -> int:
    if isinstance(block, bool) or not isinstance(block, int) or block < 16 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 16, got {block!r}")
    return block


def _tensors(params: Any, grads: Any, exp_avgs: Any) -> tuple[list[Tensor], ...]:
    lists = []
    for name, seq in (("params", params), ("grads", grads), ("exp_avgs", exp_avgs)):
        if isinstance(seq, Tensor) or not isinstance(seq, Sequence):
            raise TypeError(f"{name} must be a list or tuple of tensors, got {type(seq).__name__}")
        for t in seq:
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must hold tensors only, got {type(t).__name__}")
        lists.append(list(seq))
    ps, gs, ms = lists
    if not len(ps) == len(gs) == len(ms):
        raise ValueError(f"params, grads and exp_avgs must have the same length, got {len(ps)}, "
                         f"{len(gs)} and {len(ms)}")
    if not ps:
        return ps, gs, ms
    device = ps[0].device
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"params must live on a CUDA device (compiled Triton) or on the CPU "
                         f"(the Triton interpreter), got {device}")
    allowed = ", ".join(map(str, DTYPES))
    for i, (p, g, m) in enumerate(zip(ps, gs, ms, strict=True)):
        for name, t in (("params", p), ("grads", g), ("exp_avgs", m)):
            if t.dtype not in DTYPES:
                raise TypeError(f"{name}[{i}] has dtype {t.dtype}; allowed: {allowed} "
                                f"(float64 and complex: use lionspec.impls.torch)")
            if t.device != device:
                raise ValueError(f"{name}[{i}] is on {t.device}, params[0] on {device}: all "
                                 f"tensors of one call must share a device")
            if t.is_sparse:
                raise ValueError(f"{name}[{i}] is sparse; dense tensors only")
        if g.shape != p.shape or m.shape != p.shape:
            raise ValueError(f"params[{i}], grads[{i}] and exp_avgs[{i}] must have the same shape, "
                             f"got {tuple(p.shape)}, {tuple(g.shape)} and {tuple(m.shape)}")
        for name, t in (("params", p), ("exp_avgs", m)):
            if not t.is_contiguous():
                raise ValueError(f"{name}[{i}] must be contiguous (it is updated in place)")
        if not g.is_contiguous():
            gs[i] = g.contiguous()
    uses_bf16 = any(torch.bfloat16 in (p.dtype, g.dtype, m.dtype)
                    for p, g, m in zip(ps, gs, ms, strict=True))
    if device.type == "cpu" and uses_bf16 and not bf16_faithful(device):
        raise ValueError("bfloat16 tensors on the CPU: the Triton interpreter does not round "
                         "float32 -> bfloat16 to nearest (its self-check failed); use a CUDA "
                         "device or float16/float32 storage")
    return ps, gs, ms


def lion_step_(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
               *, lr: float | Tensor, beta1: float = 0.9, beta2: float = 0.99,
               weight_decay: float = 0.0, maximize: bool = False,
               block: int = DEFAULT_BLOCK) -> int:
    """One Lion step on every tensor of the lists, in place, in O(1) kernel launches.

    Per element, in float32 (w1 = 1 − β1, w2 = 1 − β2, keep = 1 − η·λ formed in float64)::

        c  = fl(fl(β1·m) + fl(w1·g))          # = fl(w1·g) when β1 == 0
        θ' = RN(fl(fl(θ·keep) − η·sign(c)))    # sign(NaN) = NaN, sign(±0) = 0, sign(±Inf) = ±1
        m' = RN(fl(fl(β2·m) + fl(w2·g)))

    RN rounds once into the storage dtype. η == 0 leaves θ bit-for-bit untouched (even for NaN
    c); keep == 1 skips the product, keep == 0 drops the θ term. ``params`` / ``exp_avgs`` must be
    contiguous float32/float16/bfloat16 tensors on one CUDA device, or on the CPU (run by the
    Triton interpreter; bfloat16 only where the interpreter passes its self-check). Returns the
    number of kernel launches made (one per (θ, g, m) dtype combination).

    >>> import torch
    >>> p = torch.tensor([1.0, 1.0, 1.0]); m = torch.zeros(3)
    >>> g = torch.tensor([2.0, float("nan"), 0.0])
    >>> lion_step_([p], [g], [m], lr=0.5, weight_decay=0.1)
    1
    >>> p.tolist()[0], p.isnan().tolist(), p.tolist()[2]
    (0.44999998807907104, [False, True, False], 0.949999988079071)
    """
    lr = check_lr(_hyper(lr, "lr"))
    beta1 = check_beta(_hyper(beta1, "beta1"), "beta1")
    beta2 = check_beta(_hyper(beta2, "beta2"), "beta2")
    weight_decay = check_weight_decay(_hyper(weight_decay, "weight_decay"))
    keep = 1.0 - lr * weight_decay
    return _elementwise(K.ALGO_LION, params, grads, exp_avgs, maximize, block,
                        [lr, beta1, 1.0 - beta1, beta2, 1.0 - beta2, keep, lr == 0.0,
                         beta1 == 0.0, beta2 == 0.0, keep == 0.0, keep == 1.0])


def _elementwise(algo: int, params: Sequence[Tensor], grads: Sequence[Tensor],
                 exp_avgs: Sequence[Tensor], maximize: bool, block: Any,
                 hyper: list[Any]) -> int:
    """Launch Lion's or SIGNUM's kernel (``hyper`` in the kernel's slot order); returns the
    launch count."""
    block = _check_block(block)
    ps, gs, ms = _tensors(params, grads, exp_avgs)
    if not ps:
        return 0
    plan = get_plan(ps, gs, ms, rowlens=[max(p.numel(), 1) for p in ps], roles=[0] * len(ps),
                    global_flag=False, block=block)
    plan.set_hyper(hyper)
    return launch(plan, ps[0].device, algo, maximize=bool(maximize), block=block)


def signum_step_(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
                 *, lr: float | Tensor, beta: float = 0.9, weight_decay: float = 0.0,
                 maximize: bool = False, block: int = DEFAULT_BLOCK) -> int:
    """One SIGNUM step in place (see :func:`lion_step_` for tensors and the return value)::

        m' = fl(fl(β·m) + fl(w·g))             # w = 1 − β in float64; = fl(w·g) when β == 0
        θ' = RN(fl(fl(θ·keep) − η·sign(m')))   # sign taken before m' is rounded for storage

    >>> import torch
    >>> p, m = torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.0])
    >>> signum_step_([p], [torch.tensor([-1.0, 0.0])], [m], lr=0.25, beta=0.5)
    1
    >>> p.tolist(), m.tolist()
    ([1.25, -1.0], [-0.25, 0.0])
    """
    lr = check_lr(_hyper(lr, "lr"))
    beta = check_beta(_hyper(beta, "beta"), "beta")
    weight_decay = check_weight_decay(_hyper(weight_decay, "weight_decay"))
    keep = 1.0 - lr * weight_decay
    return _elementwise(K.ALGO_SIGNUM, params, grads, exp_avgs, maximize, block,
                        [lr, beta, 1.0 - beta, 0.0, 0.0, keep, lr == 0.0, beta == 0.0, 0.0,
                         keep == 0.0, keep == 1.0])


def tiger_step_(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
                *, lr: float | Tensor, step: int, beta: float = 0.965,
                weight_decay: float = 0.01, roles: str | Sequence[str] = "weight",
                accumulation_steps: int = 1, shrink_ratio: float = 0.99,
                nan_check: str = "nan", nan_scope: str = "tensor", maximize: bool = False,
                block: int = DEFAULT_BLOCK) -> int:
    """One Tiger micro-step ``step`` (0-based t, shared by all tensors of the call), in place.

    With k = ``accumulation_steps``, w = (1 − β)/k in float64, α = ``lr``::

        NaN flag of the tensor (or, nan_scope="global", of any tensor of the call):
            m kept, θ' = RN((θ − c)·s + c)      c = 1 for "scale", else 0; s = shrink_ratio
        else:
            m' = RN(fl(fl(β·m) + fl(w·g)))  if t mod k == 0  else  RN(fl(m + fl(w·g)))
            if (t + 1) mod k == 0:  θ' = RN(fl(fl(θ·keep) − η·sign(m')))
                "weight":    η = fl(RMS(θ)·α) over the tensor, keep = fl(1 − fl(η·λ))
                "embedding": the same per row (last axis; 1-D tensors: whole tensor)
                "bias"/"scale": η = α/2, keep = 1
            θ is untouched on other micro-steps and where η == 0.

    RMS = fl(√(Σθ²) / √n) in float32 (sum of squares by blocks and atomic adds, correctly rounded
    √ and ÷). ``nan_check="nonfinite"`` also reacts to ±Inf. Launches: a zero fill, then per
    dtype group a reduction and a step kernel; returns the count.

    >>> import torch
    >>> w, b = torch.tensor([3.0, -4.0]), torch.tensor([0.5])
    >>> mw, mb = torch.zeros(2), torch.zeros(1)
    >>> for t in range(2):
    ...     n = tiger_step_([w, b], [torch.tensor([1.0, 1.0]), torch.tensor([-1.0])], [mw, mb],
    ...                     lr=0.1, step=t, weight_decay=0.0, roles=["weight", "bias"],
    ...                     accumulation_steps=2)
    >>> w.tolist(), b.tolist()
    ([2.646446704864502, -4.353553295135498], [0.550000011920929])
    """
    alpha = check_lr(_hyper(lr, "lr"))
    beta = check_beta(_hyper(beta, "beta"), "beta")
    lam = check_weight_decay(_hyper(weight_decay, "weight_decay"))
    k = check_accumulation_steps(accumulation_steps)
    t = check_step(step)
    shrink = check_shrink_ratio(_hyper(shrink_ratio, "shrink_ratio"))
    if nan_check not in NAN_CHECKS:
        raise ValueError(f"nan_check must be one of {NAN_CHECKS}, got {nan_check!r}")
    if nan_scope not in NAN_SCOPES:
        raise ValueError(f"nan_scope must be one of {NAN_SCOPES}, got {nan_scope!r}")
    block = _check_block(block)
    ps, gs, ms = _tensors(params, grads, exp_avgs)
    role_list = [roles] * len(ps) if isinstance(roles, str) else list(roles)
    if len(role_list) != len(ps):
        raise ValueError(f"roles must be one role or one per tensor ({len(ps)}), got "
                         f"{len(role_list)}")
    for i, r in enumerate(role_list):
        check_role(r, f"roles[{i}]")
    if not ps:
        return 0
    rowlens = [p.shape[-1] if r == "embedding" and p.dim() > 1 and p.shape[-1] else
               max(p.numel(), 1) for p, r in zip(ps, role_list, strict=True)]
    plan = get_plan(ps, gs, ms, rowlens=rowlens, roles=[_ROLE_CODE[r] for r in role_list],
                    global_flag=nan_scope == "global", block=block)
    half = alpha / 2
    plan.set_hyper([alpha, beta, (1.0 - beta) / k, half, lam, shrink, alpha == 0.0, beta == 0.0,
                    t % k == 0, (t + 1) % k == 0, lam == 0.0, half == 0.0])
    return launch(plan, ps[0].device, K.ALGO_TIGER, maximize=bool(maximize), block=block,
                  nonfinite=nan_check == "nonfinite")

"""Tiger, the "tight-fisted optimizer" (Su Jianlin, kexue.fm/archives/9512; github bojone/tiger).

SIGNUM's order with decoupled decay inside the bracket, per-tensor learning-rate roles, built-in
k-step gradient accumulation and a NaN rule. With t the tensor's 0-based micro-step counter::

    b1 = β if t mod k == 0 else 1          decay the momentum at a window's first micro-step
    m  = b1·m + ((1 − β)/k)·g              every micro-step adds its share of the mean
    if (t + 1) mod k == 0:                 only the window's last micro-step moves θ
        θ = θ − η·(sign(m) + λ_r·θ)

========== ================================================ ===== ===========
role       η                                                λ_r   NaN centre
========== ================================================ ===== ===========
weight     α·RMS(θ) over the whole tensor (1-D too)         λ     0
embedding  α·RMS(θ) per row (over the last axis)            λ     0
bias       α/2                                              0     0
scale      α/2                                              0     1
========== ================================================ ===== ===========

NaN rule: if the tensor's gradient holds a NaN (``nan_check="nonfinite"``: or ±Inf), its momentum
is kept and θ ← (θ − centre)·s + centre, on every micro-step where it happens;
``nan_scope="global"`` raises one flag for all tensors of all global-scope groups together.

Call ``step()`` after every micro-batch (do not sum gradients over the window yourself).

>>> import torch
>>> from lionspec.impls.torch import Tiger
>>> w = torch.nn.Parameter(torch.tensor([3.0, -4.0]))
>>> b = torch.nn.Parameter(torch.tensor([0.5]))
>>> opt = Tiger([{"params": [w]}, {"params": [b], "role": "bias"}], lr=0.1, weight_decay=0.0,
...             accumulation_steps=2)
>>> for _ in range(2):
...     w.grad, b.grad = torch.tensor([1.0, 1.0]), torch.tensor([-1.0])
...     opt.step()
...     print(w.detach().tolist(), b.detach().tolist())
[3.0, -4.0] [0.5]
[2.646446704864502, -4.353553295135498] [0.550000011920929]
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from lionspec.spec._validate import (
    SHRINK_CENTRE,
    check_accumulation_steps,
    check_beta,
    check_role,
    check_shrink_ratio,
)

from ._math import master_rms, nan_flag
from ._optimizer import Entry, SignOptimizer, lr_value

__all__ = ["NAN_CHECKS", "NAN_SCOPES", "Tiger"]

#: what the NaN rule reacts to: the original's NaN only, or any non-finite gradient element
NAN_CHECKS = ("nan", "nonfinite")
#: one flag per tensor (the original) or one for all tensors of the global-scope groups
NAN_SCOPES = ("tensor", "global")


class Tiger(SignOptimizer):
    """Tiger with torch.optim's conventions and a per-group ``role``.

    Args:
        params: parameters or param groups; a group may set ``role`` ("weight" by default,
            "embedding", "bias", "scale") and override any hyperparameter below.
            :func:`~lionspec.impls.torch.tiger_param_groups` builds the groups from a module.
        lr: α >= 0, the global relative learning rate (float or one-element tensor; read at
            every micro-step, so a scheduler stepped per micro-step indexes it by micro-step).
        beta: β in [0, 1).
        weight_decay: λ >= 0, applied to the weight and embedding roles only.
        accumulation_steps: k >= 1 micro-steps per window.
        shrink_ratio: s in (0, 1] of the NaN rule.
        nan_check: "nan" (the original) or "nonfinite".
        nan_scope: "tensor" (the original) or "global".
        maximize, foreach, fused, momentum_dtype, compensated: as for :class:`~.Lion`.

    State per parameter: ``exp_avg``, ``step`` (the micro-step counter t, an int64 CPU tensor)
    and ``compensation`` when compensated. A parameter without gradient at a micro-step is
    skipped and its counter does not advance.
    """

    algorithm = "tiger"
    _native_hp: ClassVar[tuple[str, ...]] = ("lr", "beta", "w", "weight_decay", "shrink_ratio")
    _native_flags: ClassVar[dict[str, str]] = {"LR_ZERO": "lr_zero", "B_ZERO": "beta_zero"}

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3, beta: float = 0.965,
                 weight_decay: float = 0.01, *, accumulation_steps: int = 1,
                 shrink_ratio: float = 0.99, nan_check: str = "nan", nan_scope: str = "tensor",
                 maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
                 momentum_dtype: torch.dtype | None = None, compensated: bool = False) -> None:
        defaults = {"lr": lr, "beta": beta, "weight_decay": weight_decay,
                    "accumulation_steps": accumulation_steps, "shrink_ratio": shrink_ratio,
                    "nan_check": nan_check, "nan_scope": nan_scope, "role": "weight",
                    "maximize": maximize, "foreach": foreach, "fused": fused,
                    "momentum_dtype": momentum_dtype, "compensated": compensated}
        self._global_nan = False
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        check_beta(group["beta"], "beta")
        check_accumulation_steps(group["accumulation_steps"])
        check_shrink_ratio(group["shrink_ratio"])
        check_role(group["role"])
        if group["nan_check"] not in NAN_CHECKS:
            raise ValueError(f"nan_check must be one of {NAN_CHECKS}, got {group['nan_check']!r}")
        if group["nan_scope"] not in NAN_SCOPES:
            raise ValueError(f"nan_scope must be one of {NAN_SCOPES}, got {group['nan_scope']!r}")

    def _init_state(self, state: dict[str, Any], theta: Tensor) -> None:
        state["step"] = torch.zeros((), dtype=torch.int64)

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        alpha = lr_value(group["lr"])
        role = group["role"]
        eta = alpha / 2 if role in ("bias", "scale") else alpha
        beta = float(group["beta"])
        lam = float(group["weight_decay"]) if role in ("weight", "embedding") else 0.0
        return {"lr": eta, "lr_zero": eta == 0.0, "beta": beta,
                "w": (1.0 - beta) / group["accumulation_steps"], "beta_zero": beta == 0.0,
                "weight_decay": lam, "decay_zero": lam == 0.0,
                "shrink_ratio": float(group["shrink_ratio"])}

    def _before_step(self, groups: list[tuple[dict[str, Any], list[Entry]]]) -> None:
        self._global_nan = any(bool(nan_flag(e.grad, group["nan_check"]))
                               for group, entries in groups if group["nan_scope"] == "global"
                               for e in entries)

    @staticmethod
    def _rms_dims(group: dict[str, Any], e: Entry) -> tuple[int, ...] | None:
        if group["role"] != "embedding":
            return None
        dims = (-2, -1) if e.param.is_complex() else (-1,)
        return dims if e.theta.dim() > len(dims) else None

    def _entry_args(self, group: dict[str, Any], e: Entry, fused: bool
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        k = group["accumulation_steps"]
        t = int(e.state["step"])
        uniform: dict[str, Any] = {"role": group["role"], "first": t % k == 0,
                                   "last": (t + 1) % k == 0, "nan_check": group["nan_check"]}
        dims = self._rms_dims(group, e)
        count = e.theta.numel() if dims is None else math.prod(e.theta.shape[d] for d in dims)
        per: dict[str, Any] = {"rms_dims": dims, "rms_divisor": math.sqrt(count)}
        if group["nan_scope"] == "global":
            flag: bool | None = self._global_nan
        else:
            flag = None if fused else bool(nan_flag(e.grad, group["nan_check"]))
        (per if fused else uniform)["nan"] = flag
        if not fused and uniform["last"] and group["role"] in ("weight", "embedding"):
            # the eager paths take the RMS of the whole tensor (or row) before they step it
            # block by block; the same expression as inside the math
            per["given_rms"] = master_rms(e.theta, e.comp, e.compute, dims, per["rms_divisor"])
        return uniform, per

    def _native_switches(self, group: dict[str, Any], e: Entry, hyper: dict[str, Any],
                         uniform: dict[str, Any], per: dict[str, Any]
                         ) -> tuple[dict[str, int], int]:
        role = uniform["role"]
        by_rms = role in ("weight", "embedding")
        dims = per["rms_dims"]
        rowlen = math.prod(e.theta.shape[d] for d in dims) if dims else 0
        nan = per["nan"]  # None: per tensor, from g; a bool: the global flag
        mode = (2 if uniform["nan_check"] == "nan" else 3) if nan is None else int(nan)
        return {"RMS": by_rms, "ROWS": rowlen > 0, "FIRST": uniform["first"],
                "LAST": uniform["last"], "NAN_MODE": mode, "CENTRE": SHRINK_CENTRE[role],
                "KEEP_ONE": not by_rms or hyper["decay_zero"]}, rowlen

    def _prepare_fused(self, flats: list[Tensor | None], given: dict[str, Any],
                       consts: dict[str, Any], hp: Tensor,
                       layout: tuple[str, ...]) -> None:
        # The RMS (weight and embedding roles) is computed outside the kernel, by the same eager
        # expression as the other paths (:func:`._math.rms`), and passed in. The kernel is then
        # purely elementwise, hence bit-identical to the for-loop on CPU; the reduction costs the
        # same one read of θ either way. (Fused into the kernel, a row reduction also hit an
        # inductor 2.13 CPU bug: outer-loop fusion with the momentum store, "KeyError: 'bufN'".)
        if consts["last"] and consts["role"] in ("weight", "embedding"):
            theta, _, _, comp = flats
            divisor = hp[layout.index("rms_divisor")]
            given["given_rms"] = master_rms(theta, comp, hp.dtype, consts["rms_dims"], divisor)

    def _triton_step(self, group: dict[str, Any], entries: list[Entry]) -> bool:
        # the kernels' global NaN flag spans one call only; a global scope across groups stays
        # on the compiled path
        if group["nan_scope"] == "global":
            return False
        from lionspec.impls.triton import tiger_step_

        by_step: dict[int, list[Entry]] = {}
        for e in entries:  # the kernels take one micro-step counter per call
            by_step.setdefault(int(e.state["step"]), []).append(e)
        for t, es in by_step.items():
            tiger_step_([e.theta for e in es], [e.grad for e in es], [e.exp_avg for e in es],
                        lr=lr_value(group["lr"]), step=t, beta=float(group["beta"]),
                        weight_decay=float(group["weight_decay"]), roles=group["role"],
                        accumulation_steps=group["accumulation_steps"],
                        shrink_ratio=float(group["shrink_ratio"]), nan_check=group["nan_check"],
                        maximize=group["maximize"])
        return True

    def _after_group(self, group: dict[str, Any], entries: list[Entry]) -> None:
        for e in entries:
            e.state["step"] += 1

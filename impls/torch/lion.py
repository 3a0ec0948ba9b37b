"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2).

::

    c  = β1·m + (1 − β1)·g                 interpolation with the OLD momentum
    θ' = θ − η·(sign(c) + λ·θ)             decoupled decay, one expression
    m' = β2·m + (1 − β2)·g                 momentum update AFTER the parameter update

>>> import torch
>>> from lionspec.impls.torch import Lion
>>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))
>>> opt = Lion([w], lr=0.1, weight_decay=0.5)
>>> w.grad = torch.tensor([2.0, -3.0, 0.0])
>>> opt.step()
>>> w.detach().tolist()  # θ·(1 − 0.05) − 0.1·sign(c); the zero gradient only decays
[0.8499999642372131, -0.8499999642372131, 0.4749999940395355]
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from lionspec.spec._validate import check_beta

from ._optimizer import Entry, SignOptimizer, lr_value

__all__ = ["Lion"]


class Lion(SignOptimizer):
    """Lion with torch.optim's conventions (param groups, closures, state_dict, schedulers).

    Args:
        params: parameters or param groups (dicts may override any hyperparameter below).
        lr: η >= 0, a float or a one-element tensor (read at every step, so LR schedulers work).
        betas: (β1, β2), each in [0, 1).
        weight_decay: λ >= 0, decoupled and scaled by lr (θ·(1 − η·λ)).
        maximize: ascend instead (the gradient is negated).
        foreach: use the ``torch._foreach_*`` path (default: on CUDA/XPU only); bit-identical to
            the for-loop path.
        fused: one pass over memory per tensor (default False): a native C kernel on CPU
            (``torch.compile`` without a C compiler), the Triton kernels on CUDA.
        momentum_dtype: dtype of ``exp_avg`` (default: the parameter's dtype).
        compensated: keep a compensation buffer for fp16/bf16 parameters so that
            θ + compensation tracks the exact trajectory (no-op for fp32/fp64 parameters).

    State per parameter: ``exp_avg`` (and ``compensation`` when compensated). The exact
    expressions, rounding points and NaN semantics are documented in ``docs/torch.md``.
    """

    algorithm = "lion"
    _native_hp: ClassVar[tuple[str, ...]] = ("lr", "beta1", "w1", "beta2", "w2", "keep")
    _native_flags: ClassVar[dict[str, str]] = {
        "LR_ZERO": "lr_zero", "B1_ZERO": "beta1_zero", "B2_ZERO": "beta2_zero",
        "KEEP_ZERO": "keep_zero", "KEEP_ONE": "keep_one"}

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, *,
                 maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
                 momentum_dtype: torch.dtype | None = None, compensated: bool = False) -> None:
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay, "maximize": maximize,
                    "foreach": foreach, "fused": fused, "momentum_dtype": momentum_dtype,
                    "compensated": compensated}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_beta(betas[0], "betas[0]")
        check_beta(betas[1], "betas[1]")

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        lr = lr_value(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        keep = 1.0 - lr * float(group["weight_decay"])
        return {"lr": lr, "beta1": beta1, "w1": 1.0 - beta1, "beta2": beta2, "w2": 1.0 - beta2,
                "keep": keep, "lr_zero": lr == 0.0, "beta1_zero": beta1 == 0.0,
                "beta2_zero": beta2 == 0.0, "keep_zero": keep == 0.0, "keep_one": keep == 1.0}

    def _triton_step(self, group: dict[str, Any], entries: list[Entry]) -> bool:
        from lionspec.impls.triton import lion_step_

        beta1, beta2 = (float(b) for b in group["betas"])
        lion_step_([e.theta for e in entries], [e.grad for e in entries],
                   [e.exp_avg for e in entries], lr=lr_value(group["lr"]), beta1=beta1,
                   beta2=beta2, weight_decay=float(group["weight_decay"]),
                   maximize=group["maximize"])
        return True

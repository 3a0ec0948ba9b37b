"""SIGNUM (Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex Problems").

::

    m' = β·m + (1 − β)·g                   momentum FIRST
    θ' = θ − η·(sign(m') + λ·θ)            decoupled decay (λ = 0 in the paper)

β = 0 is signSGD.

>>> import torch
>>> from lionspec.impls.torch import Signum
>>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
>>> opt = Signum([w], lr=0.25, momentum=0.5)
>>> w.grad = torch.tensor([3.0, -1.0])
>>> opt.step()
>>> w.detach().tolist(), opt.state[w]["exp_avg"].tolist()
([0.75, -0.75], [1.5, -0.5])
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from lionspec.spec._validate import check_beta

from ._optimizer import Entry, SignOptimizer, lr_value

__all__ = ["Signum"]


class Signum(SignOptimizer):
    """SIGNUM with torch.optim's conventions; arguments as :class:`~.Lion`'s, with one
    ``momentum`` (β in [0, 1)) instead of ``betas``. The sign is taken of the new momentum in
    compute precision (before it is rounded into ``momentum_dtype``).
    """

    algorithm = "signum"
    _native_hp: ClassVar[tuple[str, ...]] = ("lr", "beta", "w", "keep")
    _native_flags: ClassVar[dict[str, str]] = {
        "LR_ZERO": "lr_zero", "B_ZERO": "beta_zero", "KEEP_ZERO": "keep_zero",
        "KEEP_ONE": "keep_one"}

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0, *, maximize: bool = False,
                 foreach: bool | None = None, fused: bool | None = None,
                 momentum_dtype: torch.dtype | None = None, compensated: bool = False) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "maximize": maximize, "foreach": foreach, "fused": fused,
                    "momentum_dtype": momentum_dtype, "compensated": compensated}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        check_beta(group["momentum"], "momentum")

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        lr = lr_value(group["lr"])
        beta = float(group["momentum"])
        keep = 1.0 - lr * float(group["weight_decay"])
        return {"lr": lr, "beta": beta, "w": 1.0 - beta, "keep": keep, "lr_zero": lr == 0.0,
                "beta_zero": beta == 0.0, "keep_zero": keep == 0.0, "keep_one": keep == 1.0}

    def _triton_step(self, group: dict[str, Any], entries: list[Entry]) -> bool:
        from lionspec.impls.triton import signum_step_

        signum_step_([e.theta for e in entries], [e.grad for e in entries],
                     [e.exp_avg for e in entries], lr=lr_value(group["lr"]),
                     beta=float(group["momentum"]), weight_decay=float(group["weight_decay"]),
                     maximize=group["maximize"])
        return True

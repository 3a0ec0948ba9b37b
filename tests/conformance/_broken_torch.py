"""Deliberately broken ``torch.optim.Optimizer`` classes: the known-bads of the API-level checks.

:class:`MiniLion` is a tiny, correct, hand-written Lion (for-loop, float32 compute -- float64 for
float64 parameters --, mul+add, NaN-propagating sign, decoupled decay). Every other class breaks
exactly one behaviour, of :class:`MiniLion` or of :class:`lionspec.impls.torch.Lion`/``Tiger``;
:data:`BROKEN` maps each API check id to the classes it must catch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from lionspec.impls.torch import Lion, Tiger


def sign_nan(x: Tensor) -> Tensor:
    """sign with NaN propagated (torch.sign(NaN) is 0 on CPU)."""
    return torch.where(torch.isnan(x), x, torch.sign(x))


class MiniLion(Optimizer):
    """A small correct Lion; the hooks below are what the broken subclasses override."""

    def __init__(self, params: Any, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    # ------------------------------------------------------------------ hooks
    def _compute(self, p: Tensor) -> torch.dtype:
        return torch.float64 if p.dtype == torch.float64 else torch.float32

    def _new_momentum(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        return torch.zeros_like(p, memory_format=torch.preserve_format)

    def _momentum(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        state = self.state[p]
        if "exp_avg" not in state:
            state["exp_avg"] = self._new_momentum(p, group)
        return state["exp_avg"]

    def _views(self, p: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(θ, g, m) as the math sees them (views that writes go through)."""
        assert p.grad is not None
        return p, p.grad, m

    def _decision(self, g: Tensor, m: Tensor, b1: float, dt: torch.dtype) -> Tensor:
        return m * b1 + g.to(dt) * (1.0 - b1)

    def _store_theta(self, theta: Tensor, value: Tensor) -> None:
        theta.copy_(value)

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2) = group["lr"], group["betas"]
            keep = 1.0 - lr * group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._check(p)
                theta, g, m = self._views(p, self._momentum(p, group))
                dt = self._compute(p)
                mc = m.to(dt)
                new_m = mc * b2 + g.to(dt) * (1.0 - b2)
                s = sign_nan(self._decision(g, mc, b1, dt))
                self._store_theta(theta, theta.to(dt) * keep - lr * s)
                m.copy_(new_m)
        return loss

    def _check(self, p: Tensor) -> None:
        """Per-tensor validation (none here)."""


# ---------------------------------------------------------------------------- checkpoint

class CastingLoadLion(Lion):
    """load_state_dict is torch's default: floating state is cast to the parameter's dtype, so
    the fp32 momentum of a bf16 parameter comes back rounded to bf16."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        Optimizer.load_state_dict(self, state_dict)


class ForgetfulTiger(Tiger):
    """load_state_dict drops Tiger's micro-step counter (every restored tensor restarts its
    accumulation window at 0)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for state in self.state.values():
            if "step" in state:
                state["step"] = torch.zeros((), dtype=torch.int64)


# ------------------------------------------------------------------------ noncontiguous

class StorageOrderLion(MiniLion):
    """Walks θ and m in *storage* order (as a kernel that ignores strides would) but the
    gradient in logical order: right for contiguous tensors, elements mispaired when θ is
    transposed."""

    def _views(self, p: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        assert p.grad is not None
        n = p.numel()
        return (p.as_strided((n,), (1,)), p.grad.reshape(-1), m.as_strided((n,), (1,)))


# --------------------------------------------------------------------------- grad-intact

class ScratchGradLion(MiniLion):
    """Forms c = (1 − β1)·g + β1·m in the gradient's own buffer (the gradient used as scratch);
    the arithmetic is unchanged, but ``p.grad`` holds c after the step."""

    def _decision(self, g: Tensor, m: Tensor, b1: float, dt: torch.dtype) -> Tensor:
        return g.mul_(1.0 - b1).add_(m * b1).to(dt)


# ------------------------------------------------------------------------------ float64

class Fp32Lion(MiniLion):
    """Computes every parameter in float32, float64 ones included (then stores in float64)."""

    def _compute(self, p: Tensor) -> torch.dtype:
        return torch.float32


class Fp32DecisionLion(MiniLion):
    """Computes in float64 except the decision variable c, formed in float32: only the signs
    of nearly cancelling decisions come out wrong."""

    def _decision(self, g: Tensor, m: Tensor, b1: float, dt: torch.dtype) -> Tensor:
        return (m.float() * b1 + g.float() * (1.0 - b1)).to(dt)


# --------------------------------------------------------------------- mixed dtype groups

class FirstDtypeLion(MiniLion):
    """Allocates every momentum in the dtype of the group's first parameter (a bucketing
    shortcut): harmless for one-dtype groups, wrong storage for the others."""

    def _new_momentum(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        return torch.zeros_like(p, dtype=group["params"][0].dtype)


# -------------------------------------------------------------------------- determinism

class StochasticRoundingLion(MiniLion):
    """Stores bf16 parameters with unseeded stochastic rounding: runs differ."""

    def _store_theta(self, theta: Tensor, value: Tensor) -> None:
        if theta.dtype != torch.bfloat16:
            theta.copy_(value)
            return
        bits = value.to(torch.float32).view(torch.int32)
        noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32)
        theta.copy_(((bits + noise) & ~0xFFFF).view(torch.float32).to(torch.bfloat16))


class SharedWorkspaceLion(MiniLion):
    """Keeps momenta in a class-level workspace keyed by shape and dtype, cleared on
    construction: sequential runs agree, but two live instances share their momenta."""

    _workspace: ClassVar[dict[tuple[Any, ...], Tensor]] = {}

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        SharedWorkspaceLion._workspace.clear()

    def _momentum(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        key = (tuple(p.shape), p.dtype)
        if key not in self._workspace:
            self._workspace[key] = torch.zeros_like(p)
        self.state[p]["exp_avg"] = self._workspace[key]
        return self._workspace[key]


# ---------------------------------------------------------------------------- zero-size

class MaxGuardLion(MiniLion):
    """Rejects non-finite gradients with a per-tensor ``max()``, which raises on an empty
    tensor."""

    def _check(self, p: Tensor) -> None:
        assert p.grad is not None
        if not torch.isfinite(p.grad.abs().max()):
            raise ValueError("non-finite gradient")


class FlattenRowsLion(MiniLion):
    """Views every tensor as rows of its last dimension, which a 0-d tensor does not have."""

    def _views(self, p: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        assert p.grad is not None
        return tuple(t.view(-1, t.shape[-1]) for t in (p, p.grad, m))  # type: ignore[return-value]


#: check id -> [(algorithm, optimizer class)] it must catch
BROKEN: dict[str, list[tuple[str, type[Optimizer]]]] = {
    "checkpoint": [("lion", CastingLoadLion), ("tiger", ForgetfulTiger)],
    "noncontiguous": [("lion", StorageOrderLion)],
    "grad-intact": [("lion", ScratchGradLion)],
    "float64": [("lion", Fp32Lion), ("lion", Fp32DecisionLion)],
    "mixed-dtype-groups": [("lion", FirstDtypeLion)],
    "determinism": [("lion", StochasticRoundingLion), ("lion", SharedWorkspaceLion)],
    "zero-size": [("lion", MaxGuardLion), ("lion", FlattenRowsLion)],
}

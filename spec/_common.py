"""Pieces shared by the Lion, SIGNUM and Tiger oracles: conventions, signs and the θ update."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ._accurate import Coef, Term, sum_of_products

DECAY_MODES = ("decoupled", "coupled", "lr_independent", "unscaled")


@dataclass(frozen=True)
class Conventions:
    """How a step deviates from the canonical spec; the default *is* the canonical spec.

    * ``decay``: weight-decay convention (``"decoupled"`` canonical; ``"coupled"`` adds λθ to the
      gradient; ``"lr_independent"`` uses 1 − λ·η/η_max; ``"unscaled"`` uses 1 − λ).
    * ``lr_max``: η_max for ``"lr_independent"``.
    * ``sign_zero``: the direction taken where the decision variable is exactly 0 (canonical 0).
    * ``sign_nan``: the direction taken where it is NaN (canonical NaN: propagate).
    """

    decay: str = "decoupled"
    lr_max: float | None = None
    sign_zero: float = 0.0
    sign_nan: float = math.nan

    def __post_init__(self) -> None:
        if self.decay not in DECAY_MODES:
            raise ValueError(f"decay must be one of {DECAY_MODES}, got {self.decay!r}")
        if self.decay == "lr_independent" and (self.lr_max is None or not self.lr_max > 0):
            raise ValueError("lr_max must be > 0 for decay='lr_independent'")
        if self.sign_zero not in (-1.0, 0.0, 1.0):
            raise ValueError(f"sign_zero must be -1, 0 or +1, got {self.sign_zero!r}")
        if not (math.isnan(self.sign_nan) or self.sign_nan in (-1.0, 0.0, 1.0)):
            raise ValueError(f"sign_nan must be nan, -1, 0 or +1, got {self.sign_nan!r}")


CANONICAL = Conventions()


def exact(x: float) -> Fraction:
    """The exact rational value of a float64 hyperparameter."""
    return Fraction(float(x))


def direction(sign: np.ndarray, conv: Conventions) -> np.ndarray:
    """Apply the sign(0) and sign(NaN) conventions to an exact sign array."""
    out = sign.copy()
    if conv.sign_zero != 0.0:
        out[sign == 0] = conv.sign_zero
    if not math.isnan(conv.sign_nan):
        out[np.isnan(sign)] = conv.sign_nan
    return out


def keep_factor(lr: Fraction, weight_decay: Fraction, conv: Conventions) -> Fraction:
    """The factor multiplying θ in θ' = keep·θ − η·direction, per decay convention."""
    if conv.decay == "coupled" or weight_decay == 0:
        return Fraction(1)
    if conv.decay == "decoupled":
        return 1 - lr * weight_decay
    if conv.decay == "lr_independent":
        return 1 - weight_decay * lr / exact(conv.lr_max)
    return 1 - weight_decay  # unscaled


def param_update(theta: np.ndarray, step_dir: np.ndarray, lr: Coef, keep: Coef) -> np.ndarray:
    """θ' = keep·θ − η·direction, accurately (the direction is in {−1, 0, +1, NaN})."""
    neg_lr = Coef(tuple(-p for p in lr.parts), None if lr.exact is None else -lr.exact, lr.rel_err)
    value, _ = sum_of_products([Term(keep, theta), Term(neg_lr, step_dir, unit=True)], theta.shape)
    return value


def ema_terms(m: np.ndarray, g: np.ndarray, theta: np.ndarray, beta: Fraction, grad_scale: Fraction,
              weight_decay: Fraction, conv: Conventions) -> list[Term]:
    """Terms of β·m + w·(g [+ λθ if coupled]) with w = grad_scale (1 − β, or (1 − β)/k)."""
    terms = [Term(Coef.of(beta), m), Term(Coef.of(grad_scale), g)]
    if conv.decay == "coupled" and weight_decay != 0:
        terms.append(Term(Coef.of(grad_scale * weight_decay), theta))
    return terms

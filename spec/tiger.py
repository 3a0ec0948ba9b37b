"""Tiger (Su Jianlin, kexue.fm/archives/9512; github bojone/tiger), the float64 oracle, in full.

Core (SIGNUM order, decay inside the bracket), with built-in k-step accumulation (t is the
0-based micro-step counter)::

    b1 = β if t mod k == 0 else 1
    m  = b1·m + ((1 − β)/k)·g
    θ  = θ − η·(sign(m) + λ_r·θ)   only if (t + 1) mod k == 0, else θ is left bit-for-bit unchanged

Per-tensor roles (α = lr, the global relative learning rate):

=========  =================================================  =====  ===========
role       η                                                  λ_r    NaN centre
=========  =================================================  =====  ===========
weight     α·RMS(θ) over the whole tensor                     λ      0
embedding  α·RMS(θ) per row (RMS over the last axis)          λ      0
bias       α/2                                                0      0
scale      α/2                                                0      1
=========  =================================================  =====  ===========

NaN rule (original, per tensor): if any element of g is NaN (±Inf is not caught), m is kept and
θ ← (θ − centre)·s + centre for the whole tensor, on every micro-step where it happens.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from . import _validate as v
from ._accurate import Coef, Term, accurate_sum, exact_square_parts, sum_of_products
from ._common import CANONICAL, Conventions, direction, ema_terms, exact, keep_factor, param_update
from .lion import _decision_inputs, _inputs

__all__ = ["NAN_CHECKS", "RMS_REL_ERR", "rms", "tiger_lr", "tiger_step"]

#: Relative error bound of :func:`rms` against the exact (irrational) RMS: the pairwise TwoSum of
#: exact squares is within u(1 + γ_L) of Σθ², the division and the square root round once each,
#: so |rms^ − rms| ≤ (u/2 + u/2 + u + O(u²))·rms; the factor (1 + 2**-40) covers the O(u²) terms.
RMS_REL_ERR = 2.0 * 2.0**-53 * (1.0 + 2.0**-40)

#: What the NaN rule reacts to: the original's NaN only, or any non-finite value (a named option).
NAN_CHECKS = ("nan", "nonfinite")


def rms(x: Any, axis: int | None = None) -> np.ndarray:
    """RMS(x) = sqrt(mean(x²)), accurate to :data:`RMS_REL_ERR` (over all of x, or along ``axis``).

    Elements are scaled by a power of two (exactly) so squares neither overflow nor underflow.
    Non-finite inputs give Inf or NaN as IEEE arithmetic would.

    >>> float(rms([3.0, 4.0]))
    3.5355339059327378
    """
    a = np.asarray(x, dtype=np.float64)
    rows = a.reshape(1, -1) if axis is None else np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])
    n = rows.shape[-1]
    if n == 0:
        raise ValueError("rms of an empty tensor is undefined")
    with np.errstate(all="ignore"):
        peak = np.max(np.abs(rows), axis=-1)
        finite = np.isfinite(peak) & (peak > 0)
        exponent = np.where(finite, np.frexp(np.where(finite, peak, 1.0))[1], 0)
        scaled = np.ldexp(rows, -exponent[:, None])
        hi, lo = exact_square_parts(scaled)
        total = accurate_sum(np.concatenate([hi, lo], axis=-1), axis=-1)
        out = np.ldexp(np.sqrt(total / n), exponent)
        out = np.where(finite, out, np.sqrt(np.mean(rows * rows, axis=-1)))
    shape = () if axis is None else np.delete(np.array(a.shape), axis % max(a.ndim, 1)).tolist()
    return out.reshape(shape)


def _row_coef(values: list[Fraction | float], row_shape: tuple[int, ...],
              full_shape: tuple[int, ...]) -> Coef:
    """Per-row coefficients (exact rationals, or non-finite floats) broadcast over the last axis."""
    expansions = [Coef.of(q) if isinstance(q, Fraction) else Coef((q,)) for q in values]
    width = max((len(c.parts) for c in expansions), default=1) or 1
    parts = []
    for j in range(width):
        col = np.array([c.parts[j] if j < len(c.parts) else 0.0 for c in expansions])
        parts.append(np.broadcast_to(col.reshape((*row_shape, 1)), full_shape).copy())
    return Coef(tuple(parts), None, max((c.rel_err for c in expansions), default=0.0))


def tiger_lr(param: Any, *, lr: float, role: str = "weight") -> np.ndarray:
    """Tiger's effective learning rate η for a tensor: α·RMS(θ) (whole tensor, or per row for
    embeddings) or α/2 for biases and scales; returned per element as float64.

    >>> tiger_lr([[3.0, 4.0], [0.0, 0.0]], lr=0.1, role="embedding").tolist()
    [[0.3535533905932738, 0.3535533905932738], [0.0, 0.0]]
    """
    theta = v.as_float64(param, "param")
    alpha = v.check_lr(lr)
    role = v.check_role(role)
    coef, _ = _lr_and_keep(theta, exact(alpha), Fraction(0), role)
    return np.broadcast_to(coef.value(), theta.shape).copy()


def tiger_momentum(grad: Any, exp_avg: Any, *, step: int, beta: float = 0.965,
                   accumulation_steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Tiger's decision variable on a micro-step without NaN, ``b1·m + ((1 − β)/k)·g``, and its
    exact sign (b1 = β at a window's first micro-step, else 1).

    >>> m, s = tiger_momentum([3.0], [1.0], step=1, beta=0.5, accumulation_steps=3)
    >>> m.tolist(), s.tolist()
    ([1.5], [1.0])
    """
    t = v.check_step(step)
    b = exact(v.check_beta(beta, "beta"))
    k = v.check_accumulation_steps(accumulation_steps)
    g, m = _decision_inputs(grad, exp_avg)
    b1 = b if t % k == 0 else Fraction(1)
    return sum_of_products(ema_terms(m, g, m, b1, (1 - b) / k, Fraction(0), CANONICAL), g.shape)


def _lr_and_keep(theta: np.ndarray, alpha: Fraction, lam: Fraction, role: str,
                 conv: Conventions = CANONICAL) -> tuple[Coef, Coef]:
    """(η, keep) as coefficients for θ' = keep·θ − η·sign(m) under the role's rules."""
    if role in ("bias", "scale"):
        eta = alpha / 2
        return Coef.of(eta), Coef.of(1)
    if role == "weight" or theta.ndim == 0:
        r = float(rms(theta)) if theta.size else 0.0
        if math.isfinite(r):
            eta = alpha * exact(r)
            return Coef.of(eta), Coef.of(keep_factor(eta, lam, conv))
        eta_f = float(alpha) * r
        keep_f = 1.0 if lam == 0 else 1.0 - eta_f * float(lam)
        return (Coef((np.full(theta.shape, eta_f),)), Coef((np.full(theta.shape, keep_f),)))
    row_rms = rms(theta, axis=-1)
    etas: list[Fraction | float] = []
    keeps: list[Fraction | float] = []
    for r in row_rms.reshape(-1).tolist():
        if math.isfinite(r):
            eta = alpha * exact(r)
            etas.append(eta)
            keeps.append(keep_factor(eta, lam, conv))
        else:
            eta_f = float(alpha) * r
            etas.append(eta_f)
            keeps.append(1.0 if lam == 0 else 1.0 - eta_f * float(lam))
    row_shape = theta.shape[:-1]
    return (_row_coef(etas, row_shape, theta.shape), _row_coef(keeps, row_shape, theta.shape))


def _nan_flag(g: np.ndarray, nan_check: str) -> bool:
    if nan_check == "nan":
        return bool(np.isnan(g).any())
    return not bool(np.isfinite(g).all())


def _shrink(theta: np.ndarray, shrink_ratio: float, role: str) -> np.ndarray:
    s = exact(shrink_ratio)
    centre = v.SHRINK_CENTRE[role]
    ones = np.ones_like(theta)
    value, _ = sum_of_products([Term(Coef.of(s), theta), Term(Coef.of((1 - s) * centre), ones)],
                               theta.shape)
    return value


def _tiger(theta: np.ndarray, g: np.ndarray, m: np.ndarray, *, step: int, lr: float, beta: float,
           weight_decay: float, accumulation_steps: int, role: str, shrink_ratio: float,
           conv: Conventions, nan_flag: bool | None, nan_check: str = "nan",
           ) -> tuple[np.ndarray, np.ndarray]:
    """Tiger's step with every knob; ``nan_flag=None`` means "decide per tensor from g"."""
    t = v.check_step(step)
    alpha = exact(v.check_lr(lr))
    b = exact(v.check_beta(beta, "beta"))
    lam_all = exact(v.check_weight_decay(weight_decay))
    k = v.check_accumulation_steps(accumulation_steps)
    role = v.check_role(role)
    s = v.check_shrink_ratio(shrink_ratio)
    if nan_check not in NAN_CHECKS:
        raise ValueError(f"nan_check must be one of {NAN_CHECKS}, got {nan_check!r}")
    if nan_flag is None:
        nan_flag = _nan_flag(g, nan_check)
    if nan_flag:
        return _shrink(theta, s, role), m.copy()
    b1 = b if t % k == 0 else Fraction(1)
    lam = lam_all if role in ("weight", "embedding") else Fraction(0)
    new_m, m_sign = sum_of_products(ema_terms(m, g, theta, b1, (1 - b) / k, lam, conv), theta.shape)
    if (t + 1) % k != 0 or theta.size == 0:
        return theta.copy(), new_m
    eta, keep = _lr_and_keep(theta, alpha, lam, role, conv)
    return param_update(theta, direction(m_sign, conv), eta, keep), new_m


def tiger_step(param: Any, grad: Any, exp_avg: Any, *, step: int, lr: float, beta: float = 0.965,
               weight_decay: float = 0.01, accumulation_steps: int = 1, role: str = "weight",
               shrink_ratio: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """One Tiger micro-step on one tensor; returns new float64 arrays ``(param, exp_avg)``.

    ``step`` is the 0-based micro-step counter t; θ moves only when (t + 1) is a multiple of
    ``accumulation_steps``. ``role`` picks the learning-rate rule (see the module table). Sign
    decisions are exact; values are within two ulps of the exact result, except that for the weight
    and embedding roles η carries the error of the irrational RMS (≤ :data:`RMS_REL_ERR` relative).

    >>> p, m = tiger_step([1.0, -1.0], [0.5, 0.5], [0.0, 0.0], step=0, lr=0.1, weight_decay=0.0)
    >>> p.tolist()
    [0.9, -1.1]
    """
    theta, g, m = _inputs(param, grad, exp_avg)
    return _tiger(theta, g, m, step=step, lr=lr, beta=beta, weight_decay=weight_decay,
                  accumulation_steps=accumulation_steps, role=role, shrink_ratio=shrink_ratio,
                  conv=CANONICAL, nan_flag=None)

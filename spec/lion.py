"""Lion (Chen et al. 2023, Algorithm 2), the float64 oracle.

    c_t = β1·m_{t−1} + (1 − β1)·g_t            (interpolation with the OLD momentum)
    θ_t = θ_{t−1} − η·(sign(c_t) + λ·θ_{t−1})   (decoupled decay, one expression)
    m_t = β2·m_{t−1} + (1 − β2)·g_t             (momentum update AFTER the parameter update)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _validate as v
from ._accurate import Coef, sum_of_products
from ._common import CANONICAL, Conventions, direction, ema_terms, exact, keep_factor, param_update

__all__ = ["lion_interp", "lion_step"]


def _inputs(param: Any, grad: Any, exp_avg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    theta = v.as_float64(param, "param")
    g = v.as_float64(grad, "grad")
    m = v.as_float64(exp_avg, "exp_avg")
    v.check_same_shape(theta, grad=g, exp_avg=m)
    return theta, g, m


def _decision_inputs(grad: Any, exp_avg: Any) -> tuple[np.ndarray, np.ndarray]:
    """(g, m) of a decision variable, converted exactly; shapes must match."""
    g = v.as_float64(grad, "grad")
    m = v.as_float64(exp_avg, "exp_avg")
    if m.shape != g.shape:
        raise ValueError(f"exp_avg must have the same shape as grad {g.shape}, got {m.shape}")
    return g, m


def lion_interp(grad: Any, exp_avg: Any, *, beta1: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Lion's decision variable ``c = β1·m + (1 − β1)·g`` and its exact sign.

    Returns ``(c, sign)``: ``c`` within two float64 ulps of the exact value, ``sign`` the exact sign
    (−1, 0, +1; NaN where c is NaN) even where ``c`` rounds to 0. The conformance suite uses ``|c|``
    to tell an allowed ("ambiguous") sign flip from a failure.

    >>> c, s = lion_interp([3.0, -1.0], [-1.0, 0.0], beta1=0.75)
    >>> c.tolist(), s.tolist()
    ([0.0, -0.25], [0.0, -1.0])
    """
    b1 = exact(v.check_beta(beta1, "beta1"))
    g, m = _decision_inputs(grad, exp_avg)
    return sum_of_products(ema_terms(m, g, m, b1, 1 - b1, exact(0.0), CANONICAL), g.shape)


def _lion(theta: np.ndarray, g: np.ndarray, m: np.ndarray, *, lr: float, beta1: float, beta2: float,
          weight_decay: float, conv: Conventions) -> tuple[np.ndarray, np.ndarray]:
    eta = exact(v.check_lr(lr))
    b1 = exact(v.check_beta(beta1, "beta1"))
    b2 = exact(v.check_beta(beta2, "beta2"))
    lam = exact(v.check_weight_decay(weight_decay))
    _, c_sign = sum_of_products(ema_terms(m, g, theta, b1, 1 - b1, lam, conv), theta.shape)
    new_theta = param_update(theta, direction(c_sign, conv), Coef.of(eta),
                             Coef.of(keep_factor(eta, lam, conv)))
    new_m, _ = sum_of_products(ema_terms(m, g, theta, b2, 1 - b2, lam, conv), theta.shape)
    return new_theta, new_m


def lion_step(param: Any, grad: Any, exp_avg: Any, *, lr: float, beta1: float = 0.9,
              beta2: float = 0.99, weight_decay: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One canonical Lion step; returns new float64 arrays ``(param, exp_avg)``.

    Inputs are array-likes of any float dtype, converted exactly to float64 and never mutated.
    Every sign decision equals the sign in exact arithmetic; every value is within two ulps of the
    exact result. NaN and ±Inf propagate elementwise as IEEE arithmetic on the expressions above
    (a NaN gradient element gives a NaN parameter and momentum element); a term whose
    hyperparameter coefficient is exactly 0 is absent (``lr=0`` leaves θ unchanged).

    >>> p, m = lion_step([1.0, 1.0], [0.5, -2.0], [0.0, 0.0], lr=0.1, weight_decay=0.5)
    >>> p.tolist(), m.tolist()
    ([0.85, 1.05], [0.0050000000000000044, -0.020000000000000018])
    """
    theta, g, m = _inputs(param, grad, exp_avg)
    return _lion(theta, g, m, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                 conv=CANONICAL)

"""SIGNUM (Bernstein et al. 2018), the float64 oracle; signSGD is β = 0.

    m_t = β·m_{t−1} + (1 − β)·g_t
    θ_t = θ_{t−1} − η·(sign(m_t) + λ·θ_{t−1})   (sign of the NEW momentum: SIGNUM order)
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from . import _validate as v
from ._accurate import Coef, sum_of_products
from ._common import CANONICAL, Conventions, direction, ema_terms, exact, keep_factor, param_update
from .lion import _decision_inputs, _inputs

__all__ = ["signum_momentum", "signum_step"]


def signum_momentum(grad: Any, exp_avg: Any, *, beta: float = 0.9
                    ) -> tuple[np.ndarray, np.ndarray]:
    """SIGNUM's decision variable, the new momentum ``m' = β·m + (1 − β)·g``, and its exact sign.

    >>> m, s = signum_momentum([-2.0], [1.0], beta=0.5)
    >>> m.tolist(), s.tolist()
    ([-0.5], [-1.0])
    """
    b = exact(v.check_beta(beta, "beta"))
    g, m = _decision_inputs(grad, exp_avg)
    return sum_of_products(ema_terms(m, g, m, b, 1 - b, Fraction(0), CANONICAL), g.shape)


def _signum(theta: np.ndarray, g: np.ndarray, m: np.ndarray, *, lr: float, beta: float,
            weight_decay: float, conv: Conventions) -> tuple[np.ndarray, np.ndarray]:
    eta = exact(v.check_lr(lr))
    b = exact(v.check_beta(beta, "beta"))
    lam = exact(v.check_weight_decay(weight_decay))
    new_m, m_sign = sum_of_products(ema_terms(m, g, theta, b, 1 - b, lam, conv), theta.shape)
    new_theta = param_update(theta, direction(m_sign, conv), Coef.of(eta),
                             Coef.of(keep_factor(eta, lam, conv)))
    return new_theta, new_m


def signum_step(param: Any, grad: Any, exp_avg: Any, *, lr: float, beta: float = 0.9,
                weight_decay: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One canonical SIGNUM step; returns new float64 arrays ``(param, exp_avg)``.

    Same input, NaN/Inf and accuracy contract as :func:`lionspec.spec.lion_step`.

    >>> p, m = signum_step([1.0], [-2.0], [1.0], lr=0.1, beta=0.5)
    >>> p.tolist(), m.tolist()
    ([1.1], [-0.5])
    """
    theta, g, m = _inputs(param, grad, exp_avg)
    return _signum(theta, g, m, lr=lr, beta=beta, weight_decay=weight_decay, conv=CANONICAL)

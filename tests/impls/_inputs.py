"""Hard inputs shared by the implementation tests of every framework."""

from __future__ import annotations

import numpy as np


def hard_grad_values(rng: np.random.Generator, m: np.ndarray, a: float, b: float,
                     tiny: float) -> np.ndarray:
    """float64 gradient values for the decision variable a·m + b·g: a third of the elements
    cancel it to within rounding, and there are zeros, signed zeros and values around ``tiny``
    (the target dtype's smallest normal). The caller converts to its dtype (one rounding)."""
    n = m.size
    g = rng.normal(0, 1e-3, n)
    k = n // 3
    g[:k] = -a * m.reshape(-1)[:k] / b
    g[k:k + 8] = 0.0
    g[k + 8:k + 12] = -0.0
    g[k + 12:k + 16] = [tiny / 4, -tiny / 8, tiny, -tiny]
    return g

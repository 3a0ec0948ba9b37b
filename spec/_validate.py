"""Hyperparameter and input validation shared by the spec and the implementations.

Every check raises :class:`ValueError` naming the parameter and the allowed range. This module holds
no arithmetic of the algorithms, so ``impls/`` may import it without checking itself against itself.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "ROLES",
    "SHRINK_CENTRE",
    "as_float64",
    "check_accumulation_steps",
    "check_beta",
    "check_lr",
    "check_role",
    "check_same_shape",
    "check_shrink_ratio",
    "check_step",
    "check_weight_decay",
]

#: Tiger's per-tensor roles (ALGORITHMS.md): they pick the learning-rate rule, decay and NaN centre.
ROLES: tuple[str, ...] = ("weight", "embedding", "bias", "scale")

#: Centre of Tiger's NaN shrink θ ← (θ − c)·s + c, per role.
SHRINK_CENTRE: dict[str, int] = {"weight": 0, "embedding": 0, "bias": 0, "scale": 1}


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def check_lr(value: Any, name: str = "lr") -> float:
    """Return ``value`` as a float if it is a finite learning rate ``>= 0``."""
    x = _real(name, value)
    if x < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return x


def check_beta(value: Any, name: str = "beta") -> float:
    """Return ``value`` as a float if it is a momentum coefficient in ``[0, 1)``."""
    x = _real(name, value)
    if not 0.0 <= x < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return x


def check_weight_decay(value: Any, name: str = "weight_decay") -> float:
    """Return ``value`` as a float if it is a finite weight decay ``>= 0``."""
    x = _real(name, value)
    if x < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return x


def check_shrink_ratio(value: Any, name: str = "shrink_ratio") -> float:
    """Return ``value`` as a float if it is a NaN-shrink ratio in ``(0, 1]``."""
    x = _real(name, value)
    if not 0.0 < x <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return x


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    k = int(value)
    if k < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return k


def check_accumulation_steps(value: Any, name: str = "accumulation_steps") -> int:
    """Return ``value`` as an int if it is a whole number of micro-steps ``>= 1``."""
    return _integer(name, value, 1)


def check_step(value: Any, name: str = "step") -> int:
    """Return ``value`` as an int if it is a 0-based micro-step counter ``>= 0``."""
    return _integer(name, value, 0)


def check_role(value: Any, name: str = "role") -> str:
    """Return ``value`` if it is one of :data:`ROLES`."""
    if not isinstance(value, str) or value not in ROLES:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, ROLES))}, got {value!r}")
    return value


def as_float64(value: Any, name: str) -> np.ndarray:
    """Convert an array-like of real numbers *exactly* to a new float64 array.

    Accepts every NumPy float dtype up to float64 (and ml_dtypes' bfloat16 and friends), Python
    floats and integers. A value that float64 cannot hold exactly (a long double with more
    precision, an integer beyond 2**53) raises ``ValueError`` rather than being rounded silently.
    """
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # pragma: no cover - numpy's message is specific enough
        raise ValueError(f"{name} must be an array-like of real numbers: {exc}") from exc
    if arr.dtype == np.float64:
        return np.array(arr, dtype=np.float64, copy=True)
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} must be real; got complex dtype {arr.dtype} (use view_as_real)")
    if arr.dtype.kind not in "fiuV" and arr.dtype != np.bool_:
        raise ValueError(f"{name} must be an array-like of real numbers, got dtype {arr.dtype}")
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} has dtype {arr.dtype}, which does not convert to float64"
                         ) from exc
    with np.errstate(invalid="ignore"):
        back = out.astype(arr.dtype)
        exact = (back == arr) | (np.isnan(out) & np.isnan(back.astype(np.float64)))
    if not np.all(exact):
        raise ValueError(
            f"{name} has values that float64 cannot represent exactly (dtype {arr.dtype})")
    return out


def check_same_shape(reference: np.ndarray, **arrays: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first array whose shape differs from ``reference``'s."""
    for name, arr in arrays.items():
        if arr.shape != reference.shape:
            raise ValueError(
                f"{name} must have the same shape as param {reference.shape}, got {arr.shape}"
            )

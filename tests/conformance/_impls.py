"""Small NumPy implementations for the conformance tests: a correct one and broken ones.

:func:`reference` computes a step the way eager framework code does — in float32 (float64 for
float64 inputs), mul+add, NaN-propagating sign, decoupled decay — independently of the spec's
arithmetic. Each entry of :data:`BROKEN` is that implementation with one deliberate bug, and
names the check that must catch it (the "known-bad" of that check, see docs/conformance.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lionspec.conformance import Functional, Profile, Target

ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")


def _sign(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), x, np.sign(x))


def reference(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, *, lr: float,
              beta1: float = 0.9, beta2: float = 0.99, beta: float | None = None,
              weight_decay: float = 0.0, step: int = 0, accumulation_steps: int = 1,
              role: str = "weight", shrink_ratio: float = 0.99, _algorithm: str = "lion",
              _sign_fn: Callable[[np.ndarray], np.ndarray] = _sign, _order: str = "canonical",
              _decay: str = "decoupled", _m_init: str = "zero", _nan: str = "propagate",
              _pointwise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One step of Lion or SIGNUM (``_algorithm``) in float32 arithmetic (Tiger's roles and
    windows are not modelled); the ``_*`` knobs break it on purpose."""
    dt = np.float32  # inputs hold fp32/fp16/bf16 values: exact in float32
    x, g, m = param.astype(dt), grad.astype(dt), exp_avg.astype(dt)
    if not _pointwise:  # a per-tensor gradient clip: not pointwise
        norm = np.sqrt(np.sum(np.where(np.isfinite(g), g, 0) ** 2, dtype=dt))
        g = g / max(norm, dt(1.0))
    if _nan == "skip" and np.isnan(g).any():
        return param.copy(), exp_avg.copy()
    if _decay == "coupled":
        g = g + dt(weight_decay) * x
    if _m_init == "grad" and not np.any(m):
        m = g.copy()
    lr_ = dt(lr)
    if _algorithm == "lion":
        b1, b2 = dt(beta1), dt(beta2)
        w1, w2 = dt(1.0 - beta1), dt(1.0 - beta2)
        c = b1 * m + w1 * g
        m_new = b2 * m + w2 * g
        decision = m_new if _order == "signum" else c
    else:
        b = dt(beta if beta is not None else 0.9)
        m_new = b * m + dt(1.0 - (beta if beta is not None else 0.9)) * g
        decision = m if _order == "old-momentum" else m_new
    s = _sign_fn(decision)
    if _nan == "freeze":
        s = np.where(np.isnan(s), dt(0), s)
    if _decay == "decoupled":
        keep = dt(1.0 - lr * weight_decay)
        new = x * keep - lr_ * s
    elif _decay == "unscaled":
        new = x * dt(1.0 - weight_decay) - lr_ * s
    else:  # coupled: no separate decay
        new = x - lr_ * s
    return new, m_new


def functional(algorithm: str, **knobs: Any) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    def fn(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, **hyper: Any
           ) -> tuple[np.ndarray, np.ndarray]:
        hyper.pop("step", None)
        hyper.pop("role", None)
        return reference(param, grad, exp_avg, _algorithm=algorithm, **hyper, **knobs)
    return fn


def target(algorithm: str, name: str = "reference", **knobs: Any) -> Target:
    """The NumPy implementation as a float32-computing target over fp32/fp16/bf16 storage."""
    return Target(name, algorithm, Functional(functional(algorithm, **knobs)),
                  Profile(compute="float32", c_form="muladd",
                          dtypes=("float32", "float16", "bfloat16")))


def _where_sign(x: np.ndarray) -> np.ndarray:
    """The lion-pytorch Triton shortcut: where(c > 0, 1, -1): sign(0) = sign(NaN) = -1."""
    return np.where(x > 0, 1.0, -1.0).astype(x.dtype)


def _plus_sign(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1.0, -1.0).astype(x.dtype)


#: check id -> (algorithm, knobs, variation the diagnosis must name or None)
BROKEN: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "update-order": ("lion", {"_order": "signum"}, None),
    "weight-decay": ("lion", {"_decay": "coupled"}, "decay:coupled"),
    "sign-zero": ("lion", {"_sign_fn": _plus_sign}, "sign0:+1"),
    "nan-inf": ("lion", {"_nan": "freeze"}, "nan:freeze"),
    "elementwise": ("lion", {"_pointwise": False}, None),
    "first-step": ("lion", {"_m_init": "grad"}, None),
    "single-step": ("lion", {"_sign_fn": _where_sign}, None),
    "multi-step": ("signum", {"_order": "old-momentum"}, None),
}


# targets for the runner tests, importable as tests.conformance._impls:NAME
lion_reference = functional("lion")
lion_nan_freeze = functional("lion", _nan="freeze")


def lion_hangs(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """A target that never returns (the runner must time it out)."""
    import time

    time.sleep(3600)
    raise AssertionError("unreachable")


def lion_crashes(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """A target that kills its process (the runner must report it, not die)."""
    import os

    os.abort()

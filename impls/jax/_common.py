"""Shared plumbing of the optax transformations: state, learning rates, masks, pytree prefixes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lionspec.spec._validate import check_lr

__all__ = ["SignState", "broadcast_prefix", "check_mu_dtype", "increment", "learning_rate_at",
           "learning_rate_fn", "need_params", "static_bool", "zeros_like"]

#: optax's ScalarOrSchedule: a float or a callable of the (micro-)step count
ScalarOrSchedule = float | Callable[[jax.Array], Any]


class SignState(NamedTuple):
    """State of :func:`~lionspec.impls.jax.lion`, ``signum`` and ``tiger``.

    ``count``: int32 steps taken (Tiger: micro-steps, the t of the spec); ``mu``: the momentum,
    a pytree like the parameters (dtype ``mu_dtype``, else each parameter's dtype).
    """

    count: jax.Array
    mu: Any


def learning_rate_fn(learning_rate: Any, name: str = "learning_rate") -> ScalarOrSchedule:
    """A validated float (``>= 0``, finite) or the schedule callable itself."""
    if callable(learning_rate):
        return learning_rate
    return check_lr(learning_rate, name)


def learning_rate_at(lr: ScalarOrSchedule, count: jax.Array) -> tuple[float | jax.Array, bool]:
    """(η at this count, whether η may be exactly 0). A float stays a host float (exact
    float64 until it is carried into the compute dtype); a schedule gives a traced value."""
    if callable(lr):
        return jnp.asarray(lr(count)), True
    return lr, lr == 0.0


def check_mu_dtype(mu_dtype: Any) -> np.dtype | None:
    """``None`` or a floating dtype (ValueError naming ``mu_dtype`` otherwise)."""
    if mu_dtype is None:
        return None
    try:
        dt = jnp.dtype(mu_dtype)
    except TypeError as exc:
        raise ValueError(f"mu_dtype must be a floating dtype or None, got {mu_dtype!r}") from exc
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"mu_dtype must be a floating dtype or None, got {mu_dtype!r}")
    return dt


def zeros_like(params: Any, dtype: np.dtype | None) -> Any:
    """Momentum zeros: ``dtype`` if given, else each parameter's dtype."""
    return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), dtype or jnp.result_type(p)), params)


def need_params(params: Any, who: str) -> None:
    if params is None:
        raise ValueError(f"{who}: update() needs params (decoupled weight decay and Tiger's RMS "
                         "read θ): call update(grads, state, params)")


def increment(count: jax.Array) -> jax.Array:
    """count + 1, saturating at the int32 maximum (as optax's safe_increment)."""
    big = jnp.iinfo(jnp.int32).max
    return jnp.where(count < big, count + 1, count).astype(jnp.int32)


def broadcast_prefix(prefix: Any, params: Any, name: str) -> list[Any]:
    """The leaves of ``prefix`` (a pytree prefix of ``params``, or a callable of ``params``
    returning one) broadcast to ``params``' leaves, in ``jax.tree.leaves(params)`` order."""
    if callable(prefix):
        prefix = prefix(params)
    try:
        full = jax.tree.map(lambda leaf, sub: jax.tree.map(lambda _: leaf, sub), prefix, params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a pytree prefix of the parameters: {exc}") from exc
    return jax.tree.leaves(full, is_leaf=lambda x: x is None)


def static_bool(value: Any, name: str) -> bool:
    """A mask leaf must be a Python or NumPy bool (it selects code at trace time)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"{name} leaves must be bools (True: apply weight decay), got {value!r}")

"""Lion, Signum and Tiger as optax ``GradientTransformation``\\ s that follow lionspec's spec.

>>> import jax, jax.numpy as jnp, optax
>>> from lionspec.impls.jax import lion
>>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
>>> opt = lion(optax.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100), weight_decay=0.1)
>>> @jax.jit
... def step(params, state, grads):
...     updates, state = opt.update(grads, state, params)
...     return optax.apply_updates(params, updates), state
>>> params, state = step(params, opt.init(params), jax.tree.map(jnp.ones_like, params))

``optax.apply_updates(θ, u)`` gives the spec's new parameter computed in float32 (float64 for
float64 parameters, momenta or gradients) and rounded once into θ's dtype: the updates are in
that compute dtype. Each ``update`` is jitted; inside an outer ``jax.jit`` it is inlined. See
``docs/jax.md`` (numerics, Tiger roles, sharding).
"""

from ._common import SignState
from .lion import lion, signum
from .tiger import NAN_CHECKS, NAN_SCOPES, role_from_path, tiger

__all__ = ["NAN_CHECKS", "NAN_SCOPES", "SignState", "lion", "role_from_path", "signum", "tiger"]

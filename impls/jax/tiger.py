"""Tiger (Su Jianlin, kexue.fm/archives/9512) as an optax ``GradientTransformation``.

SIGNUM's order with decoupled decay inside the bracket, per-tensor roles, built-in k-step gradient
accumulation and a NaN rule. With t the 0-based micro-step counter (``state.count``)::

    b1 = β if t mod k == 0 else 1          decay the momentum at a window's first micro-step
    m  = b1·m + ((1 − β)/k)·g              every micro-step adds its share of the mean
    if (t + 1) mod k == 0:                 only the window's last micro-step moves θ
        θ = θ − η·(sign(m) + λ_r·θ)        (other micro-steps: update −0.0, θ unchanged)

========== ================================================ ===== ===========
role       η                                                λ_r   NaN centre
========== ================================================ ===== ===========
weight     α·RMS(θ) over the whole tensor (1-D too)         λ     0
embedding  α·RMS(θ) per row (over the last axis)            λ     0
bias       α/2                                              0     0
scale      α/2                                              0     1
========== ================================================ ===== ===========

NaN rule: if a tensor's gradient holds a NaN (``nan_check="nonfinite"``: or ±Inf), its momentum is
kept and θ ← (θ − centre)·s + centre, on every micro-step where it happens (``nan_scope="global"``:
one flag for all tensors). Call ``update`` after every micro-batch; the learning-rate schedule is
indexed by micro-step, as in the original.

>>> import jax.numpy as jnp, optax
>>> from lionspec.impls.jax import tiger
>>> params = {"w": jnp.array([3.0, -4.0]), "b": jnp.array([0.5])}
>>> opt = tiger(0.1, weight_decay=0.0, accumulation_steps=2, roles={"w": "weight", "b": "bias"})
>>> state = opt.init(params)
>>> for _ in range(2):
...     grads = {"w": jnp.array([1.0, 1.0]), "b": jnp.array([-1.0])}
...     updates, state = opt.update(grads, state, params)
...     params = optax.apply_updates(params, updates)
...     print(params["w"].tolist(), params["b"].tolist())
[3.0, -4.0] [0.5]
[2.646446704864502, -4.353553295135498] [0.550000011920929]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lionspec.spec._validate import (
    SHRINK_CENTRE,
    check_accumulation_steps,
    check_beta,
    check_role,
    check_shrink_ratio,
    check_weight_decay,
)

from . import _math
from ._common import (
    ScalarOrSchedule,
    SignState,
    broadcast_prefix,
    check_mu_dtype,
    increment,
    learning_rate_at,
    learning_rate_fn,
    need_params,
    zeros_like,
)

__all__ = ["NAN_CHECKS", "NAN_SCOPES", "role_from_path", "tiger"]

#: what the NaN rule reacts to: the original's NaN only, or any non-finite gradient element
NAN_CHECKS = ("nan", "nonfinite")
#: one flag per tensor (the original) or one for all tensors
NAN_SCOPES = ("tensor", "global")

RolesSpec = Any | Callable[[tuple[Any, ...]], str] | None


def role_from_path(path: tuple[Any, ...]) -> str:
    """Tiger's role from a ``jax.tree_util`` key path, by name (a convenience, like the original).

    The last key decides: ``bias``/``beta`` → "bias"; ``scale``/``gamma`` → "scale" (flax
    LayerNorm/RMSNorm, Keras); ``embedding``/``embeddings`` → "embedding" (flax ``nn.Embed``);
    anything else → "weight". The original matched ``bias|beta|gamma`` and ``embeddings`` as
    substrings of the variable name, which also catches e.g. ``alphabet``.

    >>> from jax.tree_util import DictKey
    >>> [role_from_path((DictKey("Dense_0"), DictKey(k))) for k in ("kernel", "bias")]
    ['weight', 'bias']
    >>> role_from_path((DictKey("LayerNorm_0"), DictKey("scale")))
    'scale'
    """
    if not path:
        return "weight"
    key = path[-1]
    name = str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))).lower()
    if name in ("bias", "beta"):
        return "bias"
    if name in ("scale", "gamma"):
        return "scale"
    if name in ("embedding", "embeddings"):
        return "embedding"
    return "weight"


def _roles(roles: RolesSpec, params: Any) -> list[str]:
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    if roles is None:
        names = ["weight"] * len(paths)
    elif callable(roles):
        names = [roles(p) for p in paths]
    else:
        names = broadcast_prefix(roles, params, "roles")
    return [check_role(r, f"roles{jax.tree_util.keystr(p)}")
            for r, p in zip(names, paths, strict=True)]


def tiger(learning_rate: ScalarOrSchedule, beta: float = 0.965, weight_decay: float = 0.01,
          accumulation_steps: int = 1, roles: RolesSpec = None, shrink_ratio: float = 0.99,
          nan_check: str = "nan", nan_scope: str = "tensor",
          mu_dtype: Any = None) -> optax.GradientTransformation:
    """Tiger, with updates for ``optax.apply_updates``; ``update`` is called per micro-batch.

    Args:
        learning_rate: α >= 0, the global relative learning rate: a float or an optax schedule
            of the micro-step count.
        beta: β in [0, 1).
        weight_decay: λ >= 0, applied to the weight and embedding roles only.
        accumulation_steps: k >= 1 micro-steps per window (no extra buffer: the momentum
            accumulates the mean gradient; θ moves only on a window's last micro-step).
        roles: each parameter's role ("weight", "embedding", "bias", "scale"): ``None`` (all
            "weight"), a pytree prefix of the parameters with string leaves, or a callable of a
            ``jax.tree_util`` key path returning the role (e.g. :func:`role_from_path`).
        shrink_ratio: s in (0, 1] of the NaN rule.
        nan_check: "nan" (the original) or "nonfinite" (±Inf too).
        nan_scope: "tensor" (the original) or "global" (all tensors skip together; under
            sharding XLA inserts the all-reduce).
        mu_dtype: dtype of the momentum (default: each parameter's dtype).

    Raises:
        ValueError: naming the hyperparameter and its allowed range.

    >>> import jax.numpy as jnp
    >>> opt = tiger(0.1, roles=lambda path: "bias")
    >>> u, _ = opt.update(jnp.array([jnp.nan, 1.0]), opt.init(jnp.ones(2)), jnp.ones(2))
    >>> u.tolist()   # the NaN rule: θ ← 0.99·θ for the whole tensor, momentum kept
    [-0.009999999776482582, -0.009999999776482582]
    """
    lr = learning_rate_fn(learning_rate)
    beta = check_beta(beta, "beta")
    wd = check_weight_decay(weight_decay)
    k = check_accumulation_steps(accumulation_steps)
    ratio = check_shrink_ratio(shrink_ratio)
    if nan_check not in NAN_CHECKS:
        raise ValueError(f"nan_check must be one of {NAN_CHECKS}, got {nan_check!r}")
    if nan_scope not in NAN_SCOPES:
        raise ValueError(f"nan_scope must be one of {NAN_SCOPES}, got {nan_scope!r}")
    if roles is not None and not callable(roles):
        for r in jax.tree.leaves(roles):
            check_role(r, "roles")
    mu_dt = check_mu_dtype(mu_dtype)

    def init_fn(params: Any) -> SignState:
        return SignState(count=jnp.zeros([], jnp.int32), mu=zeros_like(params, mu_dt))

    def _update(updates: Any, state: SignState, params: Any) -> tuple[Any, SignState]:
        t = state.count
        alpha, may_be_zero = learning_rate_at(lr, t)
        first = True if k == 1 else (t % k) == 0
        last = True if k == 1 else (t % k) == k - 1
        treedef = jax.tree.structure(params)
        p_leaves = treedef.flatten_up_to(params)
        g_leaves = treedef.flatten_up_to(updates)
        m_leaves = treedef.flatten_up_to(state.mu)
        flags = [_math.nan_flag(g, nan_check) for g in g_leaves]
        if nan_scope == "global" and flags:
            flags = [jnp.any(jnp.stack(flags))] * len(flags)
        out_u, out_m = [], []
        for p, g, m, role, nan in zip(p_leaves, g_leaves, m_leaves, _roles(roles, params), flags,
                                      strict=True):
            u, m_new = _math.tiger_leaf(
                p, g, m, alpha=alpha, role=role, beta=beta, weight_decay=wd,
                accumulation_steps=k, first=first, last=last, nan=nan, shrink_ratio=ratio,
                centre=SHRINK_CENTRE[role], mu_dtype=m.dtype, alpha_may_be_zero=may_be_zero)
            out_u.append(u)
            out_m.append(m_new)
        return (treedef.unflatten(out_u),
                SignState(count=increment(t), mu=treedef.unflatten(out_m)))

    jitted = jax.jit(_update)

    def update_fn(updates: Any, state: SignState, params: Any = None) -> tuple[Any, SignState]:
        need_params(params, "tiger")
        return jitted(updates, state, params)

    return optax.GradientTransformation(init_fn, update_fn)

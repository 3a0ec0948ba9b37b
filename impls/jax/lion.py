"""Lion and SIGNUM as optax ``GradientTransformation``\\ s that follow lionspec's spec.

Lion (Chen et al. 2023, Algorithm 2)::

    c  = β1·m + (1 − β1)·g                 interpolation with the OLD momentum
    θ' = θ − η·(sign(c) + λ·θ)              decoupled decay
    m' = β2·m + (1 − β2)·g                 momentum update after the parameter update

SIGNUM (Bernstein et al. 2018)::

    m' = β·m + (1 − β)·g
    θ' = θ − η·(sign(m') + λ·θ)

The updates ``u`` satisfy ``optax.apply_updates(θ, u) = RN_θ(fl(θ + u))`` = the expression above
computed in float32 (float64 for float64 parameters, momenta or gradients) and rounded once into
θ's dtype; ``u`` is returned in that compute dtype (see ``docs/jax.md``).

>>> import jax.numpy as jnp, optax
>>> from lionspec.impls.jax import lion
>>> params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
>>> opt = lion(learning_rate=0.1, weight_decay=0.5, mask={"w": True, "b": False})
>>> state = opt.init(params)
>>> grads = {"w": jnp.array([0.3, 0.0]), "b": jnp.array([-1.0])}
>>> updates, state = opt.update(grads, state, params)
>>> new = optax.apply_updates(params, updates)
>>> new["w"].tolist(), new["b"].tolist()
([0.8500000238418579, -1.899999976158142], [0.6000000238418579])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from lionspec.spec._validate import check_beta, check_weight_decay

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
    static_bool,
    zeros_like,
)

__all__ = ["lion", "signum"]

MaskOrFn = Any | Callable[[Any], Any] | None


def _sign_transform(who: str, learning_rate: ScalarOrSchedule, weight_decay: float,
                    mask: MaskOrFn, mu_dtype: Any, leaf: Callable[..., Any],
                    hyper: dict[str, float]) -> optax.GradientTransformation:
    lr = learning_rate_fn(learning_rate)
    wd = check_weight_decay(weight_decay)
    mu_dt = check_mu_dtype(mu_dtype)

    def init_fn(params: Any) -> SignState:
        return SignState(count=jax.numpy.zeros([], jax.numpy.int32), mu=zeros_like(params, mu_dt))

    def _update(updates: Any, state: SignState, params: Any) -> tuple[Any, SignState]:
        eta, may_be_zero = learning_rate_at(lr, state.count)
        treedef = jax.tree.structure(params)
        p_leaves = treedef.flatten_up_to(params)
        g_leaves = treedef.flatten_up_to(updates)
        m_leaves = treedef.flatten_up_to(state.mu)
        if mask is None:
            decays = [wd] * len(p_leaves)
        else:
            decays = [wd if static_bool(x, "mask") else 0.0
                      for x in broadcast_prefix(mask, params, "mask")]
        out_u, out_m = [], []
        for p, g, m, lam in zip(p_leaves, g_leaves, m_leaves, decays, strict=True):
            u, m_new = leaf(p, g, m, eta=eta, weight_decay=lam, mu_dtype=m.dtype,
                            eta_may_be_zero=may_be_zero, **hyper)
            out_u.append(u)
            out_m.append(m_new)
        return (treedef.unflatten(out_u),
                SignState(count=increment(state.count), mu=treedef.unflatten(out_m)))

    jitted = jax.jit(_update)

    def update_fn(updates: Any, state: SignState, params: Any = None) -> tuple[Any, SignState]:
        need_params(params, who)
        return jitted(updates, state, params)

    return optax.GradientTransformation(init_fn, update_fn)


def lion(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.99,
         weight_decay: float = 0.0, mask: MaskOrFn = None,
         mu_dtype: Any = None) -> optax.GradientTransformation:
    """Lion, with updates for ``optax.apply_updates``.

    Args:
        learning_rate: η >= 0, a float or an optax schedule (a callable of the step count).
        b1: β1 in [0, 1), the interpolation weight of the old momentum in the sign.
        b2: β2 in [0, 1), the momentum's decay.
        weight_decay: λ >= 0, decoupled: θ' = θ − η·(sign(c) + λθ).
        mask: a pytree prefix of the parameters with bool leaves (or a callable of the
            parameters returning one): True where weight decay applies (as ``optax.lion``).
        mu_dtype: dtype of the momentum (default: each parameter's dtype).

    Returns:
        An ``optax.GradientTransformation``; its ``update`` needs ``params``. Updates are in the
        compute dtype (float32, or float64 when a parameter, momentum or gradient is float64).

    Raises:
        ValueError: naming the hyperparameter and its allowed range.

    >>> import jax.numpy as jnp
    >>> opt = lion(1e-3)
    >>> state = opt.init(jnp.zeros(2))
    >>> u, state = opt.update(jnp.array([1.0, -1.0]), state, jnp.zeros(2))
    >>> u.tolist(), int(state.count)
    ([-0.0010000000474974513, 0.0010000000474974513], 1)
    """
    b1 = check_beta(b1, "b1")
    b2 = check_beta(b2, "b2")
    return _sign_transform("lion", learning_rate, weight_decay, mask, mu_dtype,
                           _math.lion_leaf, {"beta1": b1, "beta2": b2})


def signum(learning_rate: ScalarOrSchedule, beta: float = 0.9, weight_decay: float = 0.0,
           mask: MaskOrFn = None, mu_dtype: Any = None) -> optax.GradientTransformation:
    """SIGNUM (β = 0: signSGD), with updates for ``optax.apply_updates``.

    Args:
        learning_rate: η >= 0, a float or an optax schedule.
        beta: β in [0, 1).
        weight_decay: λ >= 0, decoupled: θ' = θ − η·(sign(m') + λθ).
        mask: as for :func:`lion`.
        mu_dtype: dtype of the momentum (default: each parameter's dtype).

    Raises:
        ValueError: naming the hyperparameter and its allowed range.

    >>> import jax.numpy as jnp
    >>> opt = signum(0.5, beta=0.0)
    >>> u, _ = opt.update(jnp.array([2.0, 0.0]), opt.init(jnp.ones(2)), jnp.ones(2))
    >>> u.tolist()
    [-0.5, -0.0]
    """
    beta = check_beta(beta, "beta")
    return _sign_transform("signum", learning_rate, weight_decay, mask, mu_dtype,
                           _math.signum_leaf, {"beta": beta})

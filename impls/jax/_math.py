"""The per-element math of Lion, SIGNUM and Tiger in JAX, as *additive* updates.

optax applies an update with ``optax.apply_updates(params, updates)``, i.e. ``θ + u`` rounded in
θ's dtype. Every function here therefore returns the increment ``u`` of the spec's expression
written as ``θ' = θ + u``, in the compute precision ``C`` (float32, or float64 when the parameter,
its momentum or its gradient is float64). With ``fl`` = round to nearest in ``C``:

* interpolation and momentum (mul+add; ``w = 1 − β`` formed in float64 on the host)::

      c = fl(fl(w·g) + fl(β·m))         # the β·m term is absent when β == 0: c = fl(w·g)

* sign: ``jnp.sign`` (``stablehlo.sign``: sign(NaN) = NaN, sign(±0) = ±0, sign(±Inf) = ±1);

* parameter update with decoupled decay, the spec's bracket ``θ − η·(s + λ·θ)``::

      u = −fl(η·fl(s + fl(λ·θ)))         # λ == 0: u = −η·s (exact)
      u = −η·s                           # where θ = ±Inf: (1 − ηλ)·∞ = ∞ as in the spec
      u = −0.0                           # where η == 0: θ untouched, even for a NaN s

  ``optax.apply_updates`` then forms ``fl(θ + u)`` in ``C`` (θ is converted exactly) and rounds
  once into θ's dtype, so the new parameter is ``RN_θ(fl(θ − fl(η·fl(s + fl(λθ)))))``: the
  spec's expression in ``C``, one storage rounding (``param_form="bracket"``,
  ``storage_roundings=1`` in :class:`lionspec.conformance.verdict.Arithmetic`). Inside one
  ``jax.jit`` XLA may contract ``θ + (−η·t)`` or ``β·m + w·g`` into a fused multiply-add, which
  removes a rounding; the bounds hold either way. ``θ + (−0.0)`` is ``θ`` bit for bit.

* Tiger's NaN shrink ``θ' = (θ − c)·s + c`` as ``u = fl(fl(θ − c)·fl(s − 1))`` (``s − 1``
  exact in float64), ``u = −0.0`` where θ = ±Inf.

Example (Lion, one float32 step; the NaN gradient element gives NaN, the zero one only decays)::

    >>> import jax.numpy as jnp
    >>> p = jnp.ones(3); g = jnp.array([2.0, jnp.nan, 0.0])
    >>> u, m = lion_leaf(p, g, jnp.zeros(3), eta=0.5, beta1=0.9, beta2=0.99, weight_decay=0.1,
    ...                  mu_dtype=jnp.float32)
    >>> (p + u).tolist()
    [0.44999998807907104, nan, 0.949999988079071]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "compute_dtype",
    "decoupled_update",
    "ema",
    "lion_leaf",
    "nan_flag",
    "rms",
    "shrink_update",
    "sign",
    "signum_leaf",
    "tiger_leaf",
]

Array = jax.Array


def compute_dtype(*dtypes: Any) -> np.dtype:
    """float64 if any of ``dtypes`` is float64, else float32.

    >>> compute_dtype(jnp.bfloat16, jnp.float32), compute_dtype(jnp.float32, np.float64)
    (dtype('float32'), dtype('float64'))
    """
    if any(np.dtype(d) == np.float64 for d in dtypes):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _const(x: float, dtype: Any) -> Array:
    """A float64 host value carried into ``dtype`` (one correctly rounded conversion)."""
    return jnp.asarray(np.asarray(x, dtype=np.float64).astype(dtype))


def sign(c: Array) -> Array:
    """sign(c): +1, −1, ±0, and NaN for NaN (``stablehlo.sign``; the tests check it)."""
    return jnp.sign(c)


def ema(m: Array, g: Array, beta: float | Array, w: float, *, beta_zero: bool) -> Array:
    """``fl(fl(w·g) + fl(β·m))`` in ``m``'s dtype; ``fl(w·g)`` when β is (statically) 0.

    ``beta`` may be a traced scalar (Tiger's ``b1``: β or 1); ``w`` is a float64 host value.
    """
    gw = g * _const(w, g.dtype)
    if beta_zero:
        return gw
    b = _const(beta, m.dtype) if isinstance(beta, float) else beta
    return gw + b * m  # optax's operand order: XLA contracts the same product into an FMA


def decoupled_update(theta: Array, s: Array, eta: float | Array, weight_decay: float,
                     *, eta_may_be_zero: bool) -> Array:
    """The increment ``u`` with ``θ + u = θ − η·(s + λ·θ)`` (see the module docstring).

    ``theta`` and ``s`` are in the compute dtype; ``eta`` a float64 host value or a traced
    array (scalar or broadcastable) in that dtype; ``weight_decay`` a float64 host value.
    """
    dtype = theta.dtype
    e = _const(eta, dtype) if isinstance(eta, float) else eta.astype(dtype)
    if weight_decay == 0.0:
        u = -(e * s)
    else:
        # s + λθ as optax writes it (XLA may contract it into an FMA, as it does for optax.lion);
        # (1 − ηλ)·±∞ = ±∞ in the spec: where θ = ±Inf, the θ term is left out (no ∞ − ∞)
        u = jnp.where(jnp.isinf(theta), -(e * s), -(e * (s + _const(weight_decay, dtype) * theta)))
    if eta_may_be_zero:
        u = jnp.where(e == 0, jnp.asarray(-0.0, dtype), u)
    return u


def lion_leaf(theta: Array, grad: Array, mu: Array, *, eta: float | Array, beta1: float,
              beta2: float, weight_decay: float, mu_dtype: Any,
              eta_may_be_zero: bool = True) -> tuple[Array, Array]:
    """One Lion step of one tensor: ``(u, m')`` with ``θ' = θ + u`` (see the module docstring).

    ``c = β1·m + (1 − β1)·g``; ``u = −η·(sign(c) + λθ)``; then ``m' = β2·m + (1 − β2)·g``.
    """
    c_dt = compute_dtype(theta.dtype, mu.dtype, grad.dtype)
    th, g, m = theta.astype(c_dt), grad.astype(c_dt), mu.astype(c_dt)
    s = sign(ema(m, g, beta1, 1.0 - beta1, beta_zero=beta1 == 0.0))
    u = decoupled_update(th, s, eta, weight_decay, eta_may_be_zero=eta_may_be_zero)
    m_new = ema(m, g, beta2, 1.0 - beta2, beta_zero=beta2 == 0.0)
    return u, m_new.astype(mu_dtype)


def signum_leaf(theta: Array, grad: Array, mu: Array, *, eta: float | Array, beta: float,
                weight_decay: float, mu_dtype: Any,
                eta_may_be_zero: bool = True) -> tuple[Array, Array]:
    """One SIGNUM step of one tensor: ``m' = β·m + (1 − β)·g``; ``u = −η·(sign(m') + λθ)``.

    The sign is taken of ``m'`` in compute precision, before it is rounded into ``mu_dtype``.
    """
    c_dt = compute_dtype(theta.dtype, mu.dtype, grad.dtype)
    th, g, m = theta.astype(c_dt), grad.astype(c_dt), mu.astype(c_dt)
    m_new = ema(m, g, beta, 1.0 - beta, beta_zero=beta == 0.0)
    u = decoupled_update(th, sign(m_new), eta, weight_decay, eta_may_be_zero=eta_may_be_zero)
    return u, m_new.astype(mu_dtype)


def nan_flag(grad: Array, nan_check: str) -> Array:
    """0-d bool: does ``grad`` hold a NaN (``"nan"``) or any non-finite value (``"nonfinite"``)?

    A reduction (``any``): exact and independent of the order, hence of sharding.
    """
    if nan_check == "nan":
        return jnp.any(jnp.isnan(grad))
    return jnp.logical_not(jnp.all(jnp.isfinite(grad)))


def rms(x: Array, *, per_row: bool) -> Array:
    """``sqrt(fl(fl(Σx²)/n))`` in ``x``'s dtype: over the whole tensor, or per row (last axis,
    kept as a size-1 axis) when ``per_row``; ``|x|`` for a 0-d tensor.

    ``n`` is exact in float32 up to 2**24 elements (per row, or per tensor).
    """
    if x.ndim == 0:
        return jnp.abs(x)
    axis = -1 if per_row else None
    n = x.shape[-1] if per_row else x.size
    ss = jnp.sum(jnp.square(x), axis=axis, keepdims=per_row)
    return jnp.sqrt(ss / _const(float(n), x.dtype))


def shrink_update(theta: Array, ratio: float, centre: int) -> Array:
    """The increment of Tiger's NaN shrink: ``θ + u = (θ − c)·s + c`` with
    ``u = fl(fl(θ − c)·fl(s − 1))``; ``−0.0`` where θ = ±Inf (∞·s = ∞) or when s == 1."""
    dtype = theta.dtype
    if ratio == 1.0:
        return jnp.full(theta.shape, -0.0, dtype)
    d = theta if centre == 0 else theta - _const(float(centre), dtype)
    u = d * _const(ratio - 1.0, dtype)
    return jnp.where(jnp.isinf(theta), jnp.asarray(-0.0, dtype), u)


def tiger_leaf(theta: Array, grad: Array, mu: Array, *, alpha: float | Array, role: str,
               beta: float, weight_decay: float, accumulation_steps: int, first: Any,
               last: Any, nan: Any, shrink_ratio: float, centre: int, mu_dtype: Any,
               alpha_may_be_zero: bool = True) -> tuple[Array, Array]:
    """One Tiger micro-step of one tensor: ``(u, m')`` with ``θ' = θ + u``.

    ``first``/``last`` (bools or traced 0-d bools): the micro-step opens / closes a window;
    ``nan``: the NaN rule's flag (bool or traced 0-d bool). With ``w = (1 − β)/k`` (float64)::

        NaN flag set:   m' = m,   u = (θ − c)·(s − 1)             (θ' = (θ − c)·s + c)
        else:           m' = w·g + b1·m,  b1 = β on a first micro-step, else 1
                        u = −η·(sign(m') + λ_r·θ) on a last micro-step, else −0.0

    η = α/2 for bias and scale (λ_r = 0), α·RMS(θ) for weight (whole tensor) and embedding
    (per row), λ_r = λ; θ untouched (u = −0.0) where η == 0.
    """
    c_dt = compute_dtype(theta.dtype, mu.dtype, grad.dtype)
    th, g, m = theta.astype(c_dt), grad.astype(c_dt), mu.astype(c_dt)
    k = accumulation_steps
    w = (1.0 - beta) / k
    if k == 1 or first is True:
        m_new = ema(m, g, beta, w, beta_zero=beta == 0.0)
    elif first is False:
        m_new = ema(m, g, 1.0, w, beta_zero=False)
    elif beta == 0.0:
        gw = g * _const(w, c_dt)
        m_new = jnp.where(first, gw, m + gw)
    else:
        b1 = jnp.where(first, _const(beta, c_dt), jnp.ones((), c_dt))
        m_new = ema(m, g, b1, w, beta_zero=False)
    a = _const(alpha, c_dt) if isinstance(alpha, float) else jnp.asarray(alpha).astype(c_dt)
    if role in ("bias", "scale"):
        eta, lam, eta_zero = a * _const(0.5, c_dt), 0.0, alpha_may_be_zero
    else:
        eta, lam, eta_zero = a * rms(th, per_row=role == "embedding"), weight_decay, True
    if last is False:
        u = jnp.full(th.shape, -0.0, c_dt)
    else:
        u = decoupled_update(th, sign(m_new), eta, lam, eta_may_be_zero=eta_zero)
        if last is not True:
            u = jnp.where(last, u, jnp.asarray(-0.0, c_dt))
    m_out = m_new.astype(mu_dtype)
    if nan is not False:
        u = jnp.where(nan, shrink_update(th, shrink_ratio, centre), u)
        m_out = jnp.where(nan, mu.astype(mu_dtype), m_out)
    return u, m_out

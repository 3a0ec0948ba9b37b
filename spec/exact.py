"""The second, independent exact oracle for Lion, SIGNUM and Tiger.

Every output element is computed in exact arithmetic from the exact values of the inputs: the
inputs are float64 numbers (every float16, bfloat16 and float32 value is one), the hyperparameters
are the exact rationals of the float64 numbers the caller passed (``Fraction(float(x))``), and each
output is a sum of terms ``coefficient × value`` evaluated with :class:`fractions.Fraction`. This
module shares no arithmetic with the float64 oracle (``lion.py``, ``signum.py``, ``tiger.py``); it
imports :mod:`lionspec.spec._validate` only, so the two oracles check each other.

Element types of the returned NumPy ``object`` arrays:

* :class:`fractions.Fraction` -- every finite value that is rational (all of Lion and SIGNUM, and
  Tiger except where an irrational RMS enters);
* :class:`mpmath.mpf` -- a finite Tiger ``weight``/``embedding`` parameter whose exact value
  ``θ − α·(λθ + sign(m))·RMS(θ)`` is irrational. The ``mpf`` is not the exact value (nobody can
  store that) but a 256-bit-or-better approximation chosen by Ziv's strategy so that it lies in
  the same open interval between consecutive float64 numbers *and midpoints* as the true value:
  rounding the ``mpf`` once, to nearest, to float64 or to any narrower binary format whose numbers
  and midpoints are float64 numbers (float32, float16, bfloat16) gives the correctly rounded true
  value, with no double-rounding error (see :func:`_theta_minus_a_root`);
* ``float`` ``nan``, ``inf`` or ``-inf`` -- a non-finite value.

The exact oracle has one zero: a zero result is ``Fraction(0)`` whatever IEEE code would give its
sign, so ±0 results compare equal.

Extended-real rules for non-finite inputs, element by element (the spec's decisions):

* a term whose coefficient is exactly 0 is absent (lr = 0 leaves θ unchanged even if g is NaN;
  β1 = 0 makes c = g even if m is infinite; λ = 0 means no decay term even if θ is infinite);
  a coefficient that is a product of hyperparameter-derived factors is exactly 0 when one factor is
  a hyperparameter equal to 0, even if another factor is infinite (Tiger: α = 0 gives η = 0 and
  λ = 0 gives η·λ = 0 when RMS(θ) is infinite or NaN);
* coefficient × (±inf) = ±inf for a non-zero coefficient (the sign is the product of the signs),
  anything × NaN = NaN, (±inf) × value = NaN where the *value* is 0 (e.g. η = inf times
  sign(c) = 0);
* inf + (−inf) = NaN, inf + finite = inf, NaN + anything = NaN;
* sign(NaN) = NaN, sign(±inf) = ±1, sign(±0) = 0.

Performance: one Python loop per element with Fractions (and mpmath for Tiger's RMS). Meant for
tests and golden vectors of a few hundred elements, not for training.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
from mpmath import libmp

from . import _validate

__all__ = [
    "Exact",
    "as_exact",
    "exact_sign",
    "lion_accumulated_step_exact",
    "lion_interp_exact",
    "lion_step_exact",
    "signum_step_exact",
    "tiger_step_exact",
    "to_float64",
]

#: The type of one element of an exact array.
Exact = Fraction | mpmath.mpf | float

# An extended real as used internally: a finite Fraction, or a float that is nan, inf or -inf.
_Ext = Fraction | float

_ZERO = Fraction(0)
_ONE = Fraction(1)
_NAN = math.nan
_INF = math.inf

#: Working precision (bits) of the first attempt at Tiger's irrational θ update. float64 needs
#: 53 bits plus a rounding decision; 256 bits leave ~200 guard bits, so a retry at doubled
#: precision is needed only when the true value lies within ~2^-200 (relative) of a float64
#: number or midpoint. Correctness never depends on this number, only speed: Ziv's loop doubles
#: the precision until the rounding is decided (it always is: the value is irrational).
_START_PREC = 256
_MAX_PREC = 1 << 16

# float64 as a format: precision, exponent of the smallest quantum, overflow threshold.
_F64_PREC = 53
_F64_QMIN = -1074
_F64_LIMIT = Fraction(2) ** 1024
# The "decision grid": float64 numbers and the midpoints between them (precision 54, quantum
# 2^-1075). An interval containing no grid point rounds the same way to float64, float32, float16
# and bfloat16 everywhere inside it.
_GRID_PREC = 54
_GRID_QMIN = -1075


# ----------------------------------------------------------------------------- conversions


def _is_nan(x: _Ext) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _raw_to_fraction(raw: tuple) -> Fraction:
    """Exact value of a finite mpmath raw mpf tuple ``(sign, man, exp, bc)``."""
    sign, man, exp, _ = raw
    man = int(man)
    value = Fraction(man << exp) if exp >= 0 else Fraction(man, 1 << -exp)
    return -value if sign else value


def _scalar_to_ext(x: Any, name: str) -> _Ext:
    """Convert one element of an object array exactly to an extended real."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, mpmath.mpf):
        if mpmath.isnan(x):
            return _NAN
        if mpmath.isinf(x):
            return _INF if x > 0 else -_INF
        return _raw_to_fraction(x._mpf_)
    if isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{name} must hold real numbers, got a boolean {x!r}")
    if isinstance(x, numbers.Integral):
        return Fraction(int(x))
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if isinstance(x, np.floating) and x.dtype.itemsize > 8 and np.longdouble(f) != x:
            raise ValueError(f"{name} has a value that float64 cannot represent exactly: {x!r}")
        return f if not math.isfinite(f) else Fraction(f)
    if isinstance(x, numbers.Rational):
        return Fraction(x.numerator, x.denominator)
    raise ValueError(f"{name} must hold real numbers, got {x!r} ({type(x).__name__})")


def _as_ext_array(value: Any, name: str) -> np.ndarray:
    """An object array of extended reals holding the exact values of ``value``.

    Numeric array-likes go through :func:`lionspec.spec._validate.as_float64` (exact conversion to
    float64, ValueError otherwise). Object arrays (e.g. the outputs of this module) are converted
    element by element, exactly: Fraction, int, float, and mpf at its exact binary value.
    """
    arr = value if isinstance(value, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be an array-like of real numbers: {exc}") from exc
    if arr.dtype != object:
        arr = _validate.as_float64(arr, name)
        flat = [Fraction(v) if math.isfinite(v) else v for v in arr.reshape(-1).tolist()]
    else:
        flat = [_scalar_to_ext(v, name) for v in arr.reshape(-1).tolist()]
    return _object_array(flat, arr.shape)


def _object_array(flat: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(flat), dtype=object)
    for i, v in enumerate(flat):
        out[i] = v
    return out.reshape(shape)


def as_exact(value: Any, name: str = "value") -> np.ndarray:
    """Return the exact values of an array-like as an object array (Fraction / nan / ±inf).

    >>> as_exact([0.1, -0.0, float("inf")])
    array([Fraction(3602879701896397, 36028797018963968), Fraction(0, 1), inf],
          dtype=object)
    """
    return _as_ext_array(value, name)


# ------------------------------------------------------------------- extended-real arithmetic


def _sgn(x: _Ext) -> int:
    """Sign of a non-NaN extended real as -1, 0, 1."""
    return (x > 0) - (x < 0)


def _sign(x: _Ext) -> _Ext:
    """sign(x): Fraction -1/0/1, NaN for NaN, ±1 for ±inf."""
    if _is_nan(x):
        return _NAN
    return Fraction(_sgn(x))


def _neg(x: _Ext) -> _Ext:
    return -x


def _mul(a: _Ext, b: _Ext) -> _Ext:
    """Product of extended reals: NaN absorbs, (±inf)·0 = NaN, (±inf)·(≠0) = ±inf."""
    if _is_nan(a) or _is_nan(b):
        return _NAN
    if isinstance(a, float) or isinstance(b, float):  # at least one is infinite
        sa, sb = _sgn(a), _sgn(b)
        if sa == 0 or sb == 0:
            return _NAN
        return _INF if sa * sb > 0 else -_INF
    return a * b


def _term(coefficient: _Ext, value: _Ext) -> _Ext | None:
    """coefficient × value, or ``None`` (absent) when the coefficient is exactly 0."""
    if isinstance(coefficient, Fraction) and coefficient == 0:
        return None
    return _mul(coefficient, value)


def _sum(terms: Sequence[_Ext | None]) -> _Ext:
    """Sum of the present terms: NaN absorbs, inf + (−inf) = NaN, inf + finite = inf."""
    total = _ZERO
    pos = neg = False
    for t in terms:
        if t is None:
            continue
        if isinstance(t, float):
            if math.isnan(t):
                return _NAN
            if t > 0:
                pos = True
            else:
                neg = True
        else:
            total += t
    if pos and neg:
        return _NAN
    if pos:
        return _INF
    if neg:
        return -_INF
    return total


def _coef_mul(a: _Ext, b: _Ext) -> _Ext:
    """Product of two coefficient factors: exactly 0 when either factor is exactly 0."""
    if (isinstance(a, Fraction) and a == 0) or (isinstance(b, Fraction) and b == 0):
        return _ZERO
    return _mul(a, b)


def _sign_step(theta: _Ext, s: _Ext, eta: _Ext, lam: _Ext) -> _Ext:
    """θ' = (1 − η·λ)·θ − η·s with the extended-real rules (η, λ coefficients, θ, s values)."""
    decay = _sum([_ONE, _neg(_coef_mul(eta, lam))])
    return _sum([_term(decay, theta), _term(_neg(eta), s)])


# --------------------------------------------------------------------------- correct rounding


def _floor_log2(a: Fraction) -> int:
    """floor(log2(a)) for a Fraction a > 0."""
    n, d = a.numerator, a.denominator
    e = n.bit_length() - d.bit_length()
    if (n << -e if e < 0 else n) < (d << e if e > 0 else d):
        e -= 1
    return e


def _pow2(e: int) -> Fraction:
    return Fraction(1 << e) if e >= 0 else Fraction(1, 1 << -e)


def _scaled(a: Fraction, qe: int) -> tuple[int, int]:
    """Numerator and denominator of a / 2^qe."""
    n, d = a.numerator, a.denominator
    if qe >= 0:
        d <<= qe
    else:
        n <<= -qe
    return n, d


def _round_nearest_even(x: Fraction, prec: int, qmin: int) -> Fraction:
    """x rounded to nearest, ties to even, to ``prec`` bits with smallest quantum 2^qmin.

    Unbounded exponent range above (overflow is the caller's business); the subnormal range below
    is modelled by the fixed smallest quantum.
    """
    if x == 0:
        return _ZERO
    a = abs(x)
    qe = max(_floor_log2(a) - prec + 1, qmin)
    n, d = _scaled(a, qe)
    k, rem = divmod(n, d)
    if 2 * rem > d or (2 * rem == d and k & 1):
        k += 1
    r = Fraction(k) * _pow2(qe)
    return r if x > 0 else -r


def _grid_cell(x: Fraction) -> tuple[int, int] | None:
    """The open interval between consecutive decision-grid points that holds x, or None if x is
    a grid point (a float64 number or a midpoint between two float64 numbers)."""
    if x == 0:
        return None
    qe = max(_floor_log2(abs(x)) - _GRID_PREC + 1, _GRID_QMIN)
    n, d = _scaled(x, qe)  # keeps the sign of x in n
    k, rem = divmod(n, d)  # floor
    if rem == 0:
        return None
    return qe, k


def _fraction_to_float64(x: Fraction) -> float:
    r = _round_nearest_even(x, _F64_PREC, _F64_QMIN)
    if abs(r) >= _F64_LIMIT:
        return _INF if r > 0 else -_INF
    f = float(r)  # exact: r is a float64 number
    return f


def _element_to_float64(x: Any) -> float:
    v = _scalar_to_ext(x, "value")
    if isinstance(v, float):
        return v
    return _fraction_to_float64(v)


def to_float64(exact_array: Any) -> np.ndarray:
    """Round every element of an exact array to float64: to nearest, ties to even.

    Correct rounding in one step from the exact value, including the subnormal range and overflow
    to ±inf (values ``≥ 2^1024·(1 − 2^-54)`` in magnitude, the midpoint above the largest float64,
    round to infinity). Fractions and ints are rounded from their exact value (``float(Fraction)``
    would raise OverflowError on huge values). An ``mpf`` is rounded from its exact binary value;
    the ``mpf`` values this module returns are chosen so that this is the correct rounding of the
    true irrational value too (module docstring). Zero results are ``+0.0``.

    >>> from fractions import Fraction
    >>> to_float64([Fraction(1, 3), Fraction(2) ** 1024, Fraction(1, 2**1075),
    ...             Fraction(3, 2**1076)])
    array([3.33333333e-001,             inf, 0.00000000e+000, 4.94065646e-324])
    """
    arr = np.asarray(exact_array, dtype=object)
    flat = [_element_to_float64(v) for v in arr.reshape(-1).tolist()]
    return np.array(flat, dtype=np.float64).reshape(arr.shape)


def exact_sign(exact_array: Any) -> np.ndarray:
    """The exact sign of every element as float64 −1.0 / 0.0 / +1.0 / nan.

    Exact even where the value rounds to 0 in float64 (a tiny non-zero Fraction keeps its sign).

    >>> from fractions import Fraction
    >>> exact_sign([Fraction(-1, 2**2000), Fraction(0), float("inf"), float("nan")])
    array([-1.,  0.,  1., nan])
    """
    arr = np.asarray(exact_array, dtype=object)
    flat = []
    for v in arr.reshape(-1).tolist():
        s = _sign(_scalar_to_ext(v, "value"))
        flat.append(_NAN if isinstance(s, float) else float(s))
    return np.array(flat, dtype=np.float64).reshape(arr.shape)


# ------------------------------------------------------------------------------ Tiger's RMS


def _is_rational_square(q: Fraction) -> Fraction | None:
    """sqrt(q) as a Fraction if q ≥ 0 is the square of a rational, else None."""
    n, d = q.numerator, q.denominator  # lowest terms
    rn, rd = math.isqrt(n), math.isqrt(d)
    if rn * rn == n and rd * rd == d:
        return Fraction(rn, rd)
    return None


def _theta_minus_a_root(theta: Fraction, a: Fraction, q: Fraction) -> mpmath.mpf:
    """θ − a·sqrt(q) for a ≠ 0 and q > 0 not a rational square, as an mpf in the right cell.

    The true value is irrational (a non-zero rational times an irrational, plus a rational), so it
    is never a float64 number or midpoint, and Ziv's loop terminates: bound sqrt(q) from below and
    above with directed rounding at ``prec`` bits, form the enclosing interval of θ − a·sqrt(q)
    *exactly* in Fractions, and accept once the whole interval lies inside one open cell of the
    decision grid (float64 numbers and midpoints). The returned mpf is the interval's midpoint
    rounded to ``prec`` bits and is checked to lie in the same cell. Otherwise double ``prec``.
    """
    num, den = libmp.from_int(q.numerator), libmp.from_int(q.denominator)  # exact
    prec = _START_PREC
    while prec <= _MAX_PREC:
        r_lo = _raw_to_fraction(libmp.mpf_sqrt(libmp.mpf_div(num, den, prec, "f"), prec, "f"))
        r_hi = _raw_to_fraction(libmp.mpf_sqrt(libmp.mpf_div(num, den, prec, "c"), prec, "c"))
        v1, v2 = theta - a * r_lo, theta - a * r_hi
        lo, hi = min(v1, v2), max(v1, v2)
        cell = _grid_cell(lo)
        if cell is not None and cell == _grid_cell(hi):
            mid = (lo + hi) / 2
            raw = libmp.from_rational(mid.numerator, mid.denominator, prec, "n")
            if _grid_cell(_raw_to_fraction(raw)) == cell:
                return mpmath.mp.make_mpf(raw)
        prec *= 2
    raise ArithmeticError(  # pragma: no cover - unreachable for irrational values
        f"could not decide the float64 rounding of θ − a·sqrt(q) within {_MAX_PREC} bits"
    )


# ------------------------------------------------------------------------------ algorithms


def _hyper(check: Callable[..., Any], value: Any, name: str) -> Fraction:
    return Fraction(check(value, name))


def _lion_core(
    theta: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    lr: Fraction,
    beta1: Fraction,
    beta2: Fraction,
    wd: Fraction,
) -> tuple[np.ndarray, np.ndarray]:
    shape = theta.shape
    new_theta, new_m = [], []
    for th, gi, mi in zip(theta.reshape(-1), g.reshape(-1), m.reshape(-1), strict=True):
        c = _sum([_term(beta1, mi), _term(1 - beta1, gi)])
        new_theta.append(_sign_step(th, _sign(c), lr, wd))
        new_m.append(_sum([_term(beta2, mi), _term(1 - beta2, gi)]))
    return _object_array(new_theta, shape), _object_array(new_m, shape)


def lion_interp_exact(grad: Any, exp_avg: Any, *, beta1: float) -> np.ndarray:
    """Lion's interpolation c = β1·m + (1−β1)·g, exactly (the value whose sign Lion applies).

    >>> lion_interp_exact([1.0, 4.0], [-1.0, 0.0], beta1=0.5)
    array([Fraction(0, 1), Fraction(2, 1)], dtype=object)
    """
    b1 = _hyper(_validate.check_beta, beta1, "beta1")
    g = _as_ext_array(grad, "grad")
    m = _as_ext_array(exp_avg, "exp_avg")
    if m.shape != g.shape:
        raise ValueError(f"exp_avg must have the same shape as grad {g.shape}, got {m.shape}")
    flat = [
        _sum([_term(b1, mi), _term(1 - b1, gi)])
        for gi, mi in zip(g.reshape(-1), m.reshape(-1), strict=True)
    ]
    return _object_array(flat, g.shape)


def lion_step_exact(
    param: Any,
    grad: Any,
    exp_avg: Any,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.99,
    weight_decay: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One Lion step in exact arithmetic; returns ``(param, exp_avg)`` as exact object arrays.

    Math (per element)::

        c  = β1·m + (1−β1)·g
        θ' = (1 − η·λ)·θ − η·sign(c)
        m' = β2·m + (1−β2)·g

    with the extended-real rules of the module docstring for non-finite inputs.

    >>> p, m = lion_step_exact([1.0, -2.0], [0.5, 0.0], [0.0, 0.0], lr=0.25, beta1=0.5, beta2=0.5)
    >>> p
    array([Fraction(3, 4), Fraction(-2, 1)], dtype=object)
    >>> m
    array([Fraction(1, 4), Fraction(0, 1)], dtype=object)
    """
    eta = _hyper(_validate.check_lr, lr, "lr")
    b1 = _hyper(_validate.check_beta, beta1, "beta1")
    b2 = _hyper(_validate.check_beta, beta2, "beta2")
    wd = _hyper(_validate.check_weight_decay, weight_decay, "weight_decay")
    theta = _as_ext_array(param, "param")
    g = _as_ext_array(grad, "grad")
    m = _as_ext_array(exp_avg, "exp_avg")
    _validate.check_same_shape(theta, grad=g, exp_avg=m)
    return _lion_core(theta, g, m, eta, b1, b2, wd)


def lion_accumulated_step_exact(
    param: Any,
    grads: Sequence[Any],
    exp_avg: Any,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.99,
    weight_decay: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Lion with k-step accumulation: one Lion step on the exact mean of the k micro-gradients.

    ``grads`` is a non-empty sequence of k arrays shaped like ``param`` (or an array whose first
    axis indexes the micro-batches). The mean ``ḡ = Σ (1/k)·g_i`` is exact (not a float64), with
    the extended-real rules (a NaN micro-gradient element gives a NaN mean element; +inf and −inf
    give NaN). Then :func:`lion_step_exact` with ``g = ḡ``.

    >>> p, m = lion_accumulated_step_exact([0.0], [[1.0], [-3.0]], [0.0], lr=1.0, beta2=0.5)
    >>> p, m
    (array([Fraction(1, 1)], dtype=object), array([Fraction(-1, 2)], dtype=object))
    """
    eta = _hyper(_validate.check_lr, lr, "lr")
    b1 = _hyper(_validate.check_beta, beta1, "beta1")
    b2 = _hyper(_validate.check_beta, beta2, "beta2")
    wd = _hyper(_validate.check_weight_decay, weight_decay, "weight_decay")
    theta = _as_ext_array(param, "param")
    m = _as_ext_array(exp_avg, "exp_avg")
    _validate.check_same_shape(theta, exp_avg=m)
    micro = list(grads)
    if not micro:
        raise ValueError("grads must hold at least one micro-gradient, got none")
    arrays = []
    for i, gi in enumerate(micro):
        name = f"grads[{i}]"
        arr = _as_ext_array(gi, name)
        _validate.check_same_shape(theta, **{name: arr})
        arrays.append(arr.reshape(-1))
    w = Fraction(1, len(arrays))
    mean = [_sum([_term(w, arr[j]) for arr in arrays]) for j in range(theta.size)]
    return _lion_core(theta, _object_array(mean, theta.shape), m, eta, b1, b2, wd)


def signum_step_exact(
    param: Any,
    grad: Any,
    exp_avg: Any,
    *,
    lr: float,
    beta: float = 0.9,
    weight_decay: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One SIGNUM step in exact arithmetic; returns ``(param, exp_avg)`` as exact object arrays.

    Math (per element)::

        m' = β·m + (1−β)·g
        θ' = (1 − η·λ)·θ − η·sign(m')

    >>> p, m = signum_step_exact([1.0], [-3.0], [1.0], lr=0.5, beta=0.5)
    >>> p, m
    (array([Fraction(3, 2)], dtype=object), array([Fraction(-1, 1)], dtype=object))
    """
    eta = _hyper(_validate.check_lr, lr, "lr")
    b = _hyper(_validate.check_beta, beta, "beta")
    wd = _hyper(_validate.check_weight_decay, weight_decay, "weight_decay")
    theta = _as_ext_array(param, "param")
    g = _as_ext_array(grad, "grad")
    m = _as_ext_array(exp_avg, "exp_avg")
    _validate.check_same_shape(theta, grad=g, exp_avg=m)
    new_theta, new_m = [], []
    for th, gi, mi in zip(theta.reshape(-1), g.reshape(-1), m.reshape(-1), strict=True):
        mn = _sum([_term(b, mi), _term(1 - b, gi)])
        new_m.append(mn)
        new_theta.append(_sign_step(th, _sign(mn), eta, wd))
    return _object_array(new_theta, theta.shape), _object_array(new_m, theta.shape)


def _rms_groups(shape: tuple[int, ...], role: str) -> list[range]:
    """Flat index groups sharing one RMS: the whole tensor (weight) or each last-axis row."""
    size = math.prod(shape)
    if role == "weight" or len(shape) == 0:
        return [range(size)]
    n = shape[-1]
    return [range(r * n, (r + 1) * n) for r in range(size // n)]


def _tiger_rms_update(
    theta: list[_Ext],
    signs: list[_Ext],
    group: range,
    alpha: Fraction,
    lam: Fraction,
) -> list[Exact]:
    """θ' for one RMS group: η = α·RMS(θ_group), θ' = (1 − η·λ)·θ − η·sign(m')."""
    values = [theta[i] for i in group]
    if any(_is_nan(v) for v in values):
        rms: _Ext | None = _NAN
    elif any(isinstance(v, float) for v in values):
        rms = _INF
    else:
        q = sum((v * v for v in values), _ZERO) / len(values)
        rms = _is_rational_square(q)
        if rms is None:  # irrational RMS: η·(…) goes through mpmath
            out: list[Exact] = []
            for i in group:
                s = signs[i]
                if alpha == 0:
                    out.append(theta[i])
                elif _is_nan(s):
                    out.append(_NAN)  # η > 0 since q > 0
                else:
                    a = alpha * (lam * theta[i] + s)
                    out.append(theta[i] if a == 0 else _theta_minus_a_root(theta[i], a, q))
            return out
    eta = _coef_mul(alpha, rms)
    return [_sign_step(theta[i], signs[i], eta, lam) for i in group]


def tiger_step_exact(
    param: Any,
    grad: Any,
    exp_avg: Any,
    *,
    step: int,
    lr: float,
    beta: float = 0.965,
    weight_decay: float = 0.01,
    accumulation_steps: int = 1,
    role: str = "weight",
    shrink_ratio: float = 0.99,
) -> tuple[np.ndarray, np.ndarray]:
    """One Tiger micro-step (per tensor) in exact arithmetic; returns ``(param, exp_avg)``.

    ``step`` is the 0-based micro-step counter t, k = ``accumulation_steps``, s = ``shrink_ratio``,
    α = ``lr``. Math:

    * NaN rule: if any element of g is NaN (±inf is not caught): m' = m and
      θ' = (θ − c)·s + c for the whole tensor, c = 1 for role ``"scale"`` else 0.
    * otherwise b1 = β if t mod k == 0 else 1, and m' = b1·m + ((1−β)/k)·g (exact (1−β)/k);
      if (t+1) mod k == 0: θ' = (1 − η·λ_r)·θ − η·sign(m'), else θ' = θ.
    * bias, scale: η = α/2, λ_r = 0. weight: η = α·RMS(θ) over the tensor, λ_r = λ.
      embedding: η = α·RMS(θ) per row over the last axis (0-d: |θ|), λ_r = λ.
      RMS(θ) = sqrt(mean(θ²)) of the pre-update θ; non-finite θ gives η = inf or NaN and the
      extended-real rules apply (α = 0 gives η = 0 all the same).

    Where RMS(θ) is irrational the new θ element is an ``mpf`` (module docstring); m' and every
    sign decision are exact Fractions (m' does not depend on η). Empty tensors are copied.

    >>> p, m = tiger_step_exact([3.0, 4.0], [1.0, -1.0], [0.0, 0.0], step=0, lr=0.5, beta=0.5,
    ...                         weight_decay=0.0, role="bias")
    >>> p
    array([Fraction(11, 4), Fraction(17, 4)], dtype=object)
    >>> m
    array([Fraction(1, 2), Fraction(-1, 2)], dtype=object)
    >>> p, _ = tiger_step_exact([1.0, 2.0], [1.0, 1.0], [0.0, 0.0], step=0, lr=0.5, beta=0.5,
    ...                         weight_decay=0.0)
    >>> to_float64(p)  # RMS = sqrt(5/2) is irrational: η·sign(m') = 0.5·1.5811…
    array([0.20943058, 1.20943058])
    """
    t = _validate.check_step(step, "step")
    alpha = _hyper(_validate.check_lr, lr, "lr")
    b = _hyper(_validate.check_beta, beta, "beta")
    lam = _hyper(_validate.check_weight_decay, weight_decay, "weight_decay")
    k = _validate.check_accumulation_steps(accumulation_steps, "accumulation_steps")
    role = _validate.check_role(role, "role")
    s = _hyper(_validate.check_shrink_ratio, shrink_ratio, "shrink_ratio")
    theta_a = _as_ext_array(param, "param")
    g_a = _as_ext_array(grad, "grad")
    m_a = _as_ext_array(exp_avg, "exp_avg")
    _validate.check_same_shape(theta_a, grad=g_a, exp_avg=m_a)
    shape = theta_a.shape
    if theta_a.size == 0:
        return theta_a.copy(), m_a.copy()
    theta = list(theta_a.reshape(-1))
    g = list(g_a.reshape(-1))
    m = list(m_a.reshape(-1))

    if any(_is_nan(x) for x in g):
        c = Fraction(_validate.SHRINK_CENTRE[role])
        shrunk = [_sum([_term(s, th), _term(1 - s, c)]) for th in theta]
        return _object_array(shrunk, shape), _object_array(m, shape)

    b1 = b if t % k == 0 else _ONE
    w = (1 - b) / k
    new_m = [_sum([_term(b1, mi), _term(w, gi)]) for mi, gi in zip(m, g, strict=True)]
    if (t + 1) % k != 0:
        return _object_array(theta, shape), _object_array(new_m, shape)

    signs = [_sign(x) for x in new_m]
    if role in ("bias", "scale"):
        eta = alpha / 2
        new_theta: list[Exact] = [
            _sign_step(th, si, eta, _ZERO) for th, si in zip(theta, signs, strict=True)
        ]
    else:
        new_theta = [_ZERO] * len(theta)
        for group in _rms_groups(shape, role):
            for i, v in zip(group, _tiger_rms_update(theta, signs, group, alpha, lam), strict=True):
                new_theta[i] = v
    return _object_array(new_theta, shape), _object_array(new_m, shape)

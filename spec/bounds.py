"""Rigorous forward-error bounds and exact low-precision predicates for Lion, Tiger and SIGNUM.

The conformance suite runs an implementation and the exact oracle on the *same* inputs (values of
the implementation's storage format, held exactly in float64) and asks, per element, whether the
implementation's result is within the rounding error that its declared evaluation order and
precision allow. This module supplies those allowances. Every bound is derived in
``docs/bounds.md`` from the standard model (Higham, *Accuracy and Stability of Numerical
Algorithms*, §2.2) in the *compute* format with unit roundoff ``u`` and smallest normal ``λmin``:

* ``fl(x ± y) = (x ± y)(1 + δ)``, ``|δ| <= u`` (sums landing in the subnormal range are exact),
* ``fl(x · y) = x·y(1 + δ) + ε`` and ``fl(x / y) = (x/y)(1 + δ) + ε``, ``|ε| <= u·λmin``.

Hyperparameters (β, η, λ) are the float64 numbers the user passed; the bounds are on the distance to
the exact result *with those float64 values*, so the representation error of each coefficient in
the compute format is part of every bound (``coefficient_error``).

Every bound is evaluated in float64 from non-negative terms only and then rounded upward
(``_up``: multiply by ``1 + 2**-40`` and add ``2**-1060``): each of the fewer than 1000 float64
operations has relative error at most ``2**-53`` or absolute error at most ``2**-1075`` (underflow),
so the returned float64 number is never below the exact value of the derived expression.

>>> b = c_error_bound(np.array([1.0]), np.array([-9.0]), 0.9, form="muladd", compute="float32")
>>> bool(0.0 < b[0] < 1e-6)
True
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ._accurate import two_prod, two_sum
from .formats import (
    FORMATS,
    Format,
    gap_down,
    get_format,
    is_representable,
    round_to,
    significand_is_even,
    ulp,
)

__all__ = [
    "ACCUMULATION_ORDERS",
    "C_FORMS",
    "PARAM_FORMS",
    "SIGN_AGREE",
    "SIGN_AMBIGUOUS",
    "SIGN_CODE_NAMES",
    "SIGN_FAILURE",
    "VALUE_EXACT",
    "VALUE_FAILURE",
    "VALUE_WITHIN",
    "BetaRepresentation",
    "accumulation_bound",
    "axpby_error_bound",
    "beta_representation",
    "c_error_bound",
    "classify_sign",
    "classify_value",
    "coefficient_error",
    "decay_noop",
    "ema_underflow",
    "gamma",
    "lost_step",
    "momentum_update_bound",
    "param_update_bound",
    "rms_relative_error",
    "shrink_error_bound",
    "summarize_signs",
    "unit_roundoff",
    "weight_error",
]

#: Evaluation forms of c = β·m + (1 − β)·g (see :func:`c_error_bound`).
C_FORMS: tuple[str, ...] = ("muladd", "muladd_one_minus_beta", "lerp", "diff", "universal")
#: Evaluation forms of θ − η·(s + λ·θ) (see :func:`param_update_bound`).
PARAM_FORMS: tuple[str, ...] = ("decay_first", "bracket", "separate", "universal")
#: Orders of Tiger-style k-step accumulation (see :func:`accumulation_bound`).
ACCUMULATION_ORDERS: tuple[str, ...] = ("direct", "tiger", "running_mean", "universal")

#: Sign verdicts (:func:`classify_sign`).
SIGN_AGREE, SIGN_AMBIGUOUS, SIGN_FAILURE = 0, 1, 2
SIGN_CODE_NAMES: dict[int, str] = {0: "agree", 1: "ambiguous", 2: "failure"}
#: Value verdicts (:func:`classify_value`).
VALUE_EXACT, VALUE_WITHIN, VALUE_FAILURE = 0, 1, 2

_F32 = FORMATS["float32"]
_U64 = 2.0**-53
_INFLATE = 1.0 + 2.0**-40
_FLOOR = 2.0**-1060
_MARGIN = 2.0**-50  # relative margin for float64 evaluations of signed quantities (see _abs_upper)


# --------------------------------------------------------------------------------------------
# basic constants


def unit_roundoff(fmt: Any) -> float:
    """Unit roundoff ``u = 2**-p`` of ``fmt``.

    >>> unit_roundoff("bfloat16"), unit_roundoff("float32") == 2.0**-24
    (0.00390625, True)
    """
    return get_format(fmt, "fmt").u


def gamma(n: int, fmt: Any) -> float:
    """Higham's ``γ_n = n·u/(1 − n·u)``, rounded upward; ``ValueError`` if ``n·u >= 1``.

    ``n·u`` and ``1 − n·u`` are exact in float64 for ``n < 2**20`` and ``u >= 2**-53``; the single
    division is rounded up with ``nextafter``.

    >>> gamma(3, "float32") > 3 * 2.0**-24, gamma(3, "bfloat16")
    (True, 0.011857707509881424)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    u = unit_roundoff(fmt)
    nu = int(n) * u
    if nu >= 1.0:
        raise ValueError(f"gamma(n={n}) needs n·u < 1; n·u = {nu} for {get_format(fmt).name}")
    if n == 0:
        return 0.0
    return float(np.nextafter(nu / (1.0 - nu), np.inf))


# --------------------------------------------------------------------------------------------
# error-free transformations (float64) and small helpers


def _cmp_prod_pow2(a: np.ndarray, b: np.ndarray, k: int | np.ndarray) -> np.ndarray:
    """Exact sign of ``a·b − 2**k`` for finite ``a, b >= 0`` (−1, 0 or +1), by splitting off the
    exponents with ``frexp`` so that Dekker's product of the significands is exact."""
    ma, ea = np.frexp(a)
    mb, eb = np.frexp(b)
    p, e = two_prod(ma, mb)  # ma·mb in [0.25, 1), exact as p + e
    s = np.asarray(k) - ea.astype(np.int64) - eb.astype(np.int64)
    t = np.ldexp(1.0, np.clip(s, -4, 4))
    cmp = np.where(p > t, 1, np.where(p < t, -1, np.sign(e).astype(np.int64)))
    cmp = np.where(s > 0, -1, np.where(s < -2, 1, cmp))
    return np.where((a == 0) | (b == 0), -1, cmp)


def _eff(f: Format) -> tuple[float, float]:
    """(u, ε) used in the bounds for compute format ``f``.

    For formats narrower than float32 (bf16, fp16) an operation may be evaluated in float32 and then
    rounded to ``f`` (torch's "opmath", XLA on CPU, ml_dtypes), with a float32 coefficient as an
    operand; that double rounding has error <= (u + u32·(1 + u))|x| + ε + (1 + u)·ε32, so we use
    those slightly larger constants (relative change 2**-16 for bf16, 2**-13 for fp16).
    """
    if f.p < _F32.p and _F32.contains(f):
        return f.u + _F32.u * (1 + f.u), f.underflow_error + (1 + f.u) * _F32.underflow_error
    return f.u, f.underflow_error


def _up(b: np.ndarray) -> np.ndarray:
    """Round a float64 evaluation of a bound (non-negative terms, < 1000 operations) upward."""
    return b * _INFLATE + _FLOOR


def _abs_upper(value64: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Upper bound on |v| from a float64 evaluation ``value64`` of a short signed expression whose
    exact terms have absolute sum ``scale`` (error of <= 4 float64 operations <= 2**-51·scale)."""
    return np.abs(value64) + _MARGIN * scale


def _f64(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _check_in_format(name: str, x: np.ndarray, fmt: Format, role: str = "compute") -> None:
    fin = np.isfinite(x)
    if not np.all(is_representable(x[fin], fmt)):
        raise ValueError(
            f"{name} must hold values of the {role} format {fmt.name} (the implementation's exact "
            f"inputs); round them first"
        )


def _check_beta(name: str, beta: np.ndarray) -> None:
    if not np.all((beta >= 0.0) & (beta < 1.0)):
        raise ValueError(f"{name} must be in [0, 1), got values outside that range")


def _check_nonneg(name: str, x: np.ndarray) -> None:
    if not np.all(np.isfinite(x) & (x >= 0.0)):
        raise ValueError(f"{name} must be finite and >= 0")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# coefficient representation


def coefficient_error(h: ArrayLike, fmt: Any) -> np.ndarray:
    """Bound ρ on ``|ĥ − h|`` for a float64 coefficient ``h`` carried into ``fmt``.

    ``ĥ`` may be ``RN_fmt(h)``, the double rounding ``RN_fmt(RN_fp32(h))`` (what ml_dtypes' cast
    of a float64 to bfloat16 does, and any conversion through float32), or ``h`` rounded to
    nearest in any format that contains ``fmt`` (e.g. float32 "opmath" scalars in bf16 kernels):
    a finer grid has a nearer nearest point. Returns the exact
    ``max(|RN(h) − h|, |RN(RN_fp32(h)) − h|)`` (each difference is exact in float64 by Sterbenz's
    lemma).

    >>> float(coefficient_error(0.99, "bfloat16"))  # 0.99 − 0.98828125
    0.0017187499999999911
    """
    f = get_format(fmt, "fmt")
    ha = _f64(h)
    e1 = np.abs(round_to(ha, f) - ha)
    if f.p < _F32.p and _F32.contains(f):
        e2 = np.abs(round_to(round_to(ha, _F32), f) - ha)
        e1 = np.maximum(e1, e2)
    return e1


def weight_error(beta: ArrayLike, fmt: Any) -> np.ndarray:
    """Bound on ``|ŵ − (1 − β)|`` for the weight ``ŵ`` of g formed outside the compute format.

    Covered pipelines: the float64 expression ``1 - beta`` (``w64``) carried into ``fmt`` as in
    :func:`coefficient_error` (``RN(w64)``, ``RN(RN_fp32(w64))``, or a finer format), and, for
    formats narrower than float32, ``1 − β`` formed in float32 from ``RN_fp32(β)`` and then used as
    is or rounded to ``fmt``. Returns the exact maximum of ``|ŵ − w64|`` over these candidates plus
    the exact ``|w64 − (1 − β)|`` (TwoSum; zero for β >= 1/2).

    >>> float(weight_error(0.99, "bfloat16"))  # bf16(0.01) = 0.010009765625
    9.765624999991118e-06
    """
    f = get_format(fmt, "fmt")
    b = _f64(beta)
    w64, e = two_sum(np.ones_like(b), -b)
    err = coefficient_error(w64, f)
    if f.p < _F32.p and _F32.contains(f):
        w32 = round_to(1.0 - round_to(b, _F32), _F32)  # Figueroa: fl64 then RN32 = RN32
        err = np.maximum(err, np.abs(w32 - w64))
        err = np.maximum(err, np.abs(round_to(w32, f) - w64))
    return err + np.abs(e)


# --------------------------------------------------------------------------------------------
# c = β·m + (1 − β)·g


def _c_parts(
    m: np.ndarray, g: np.ndarray, beta: np.ndarray, f: Format
) -> dict[str, np.ndarray]:
    w = 1.0 - beta  # used only in non-negative bound terms: relative error <= 2**-53
    am, ag = np.abs(m), np.abs(g)
    scale = beta * am + w * ag
    c64 = beta * m + w * g
    return {
        "rb": coefficient_error(beta, f),
        "rw": weight_error(beta, f),
        "w": w,
        "am": am,
        "ag": ag,
        "abs_c": _abs_upper(c64, scale),
        "abs_m_minus_g": np.abs(m - g),
    }


def _form_bound(
    form: str,
    parts: dict[str, np.ndarray],
    beta: np.ndarray,
    f: Format,
    e_g: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Unrounded bound on |ĉ − c| for one form; ``e_g`` bounds an error already present in g."""
    u, eps = _eff(f)
    w, am, ag, abs_c, amg = (parts[k] for k in ("w", "am", "ag", "abs_c", "abs_m_minus_g"))
    rb, rw = parts["rb"], parts["rw"]
    agh = ag + e_g  # |ĝ| <= |g| + e_g
    if form == "muladd":
        r = rb * am + rw * agh + w * e_g
        s_hat = (beta + rb) * am + (w + rw) * agh
        return (1 + u) * r + u * abs_c + (1 + u) * (u * s_hat + 2 * eps)
    if form == "muladd_one_minus_beta":
        # ŵ = fl(1 − β̂): exact for β̂ >= 1/2 (Sterbenz), error <= u/2 otherwise (1 − β̂ in (1/2, 1]).
        tau = np.where(beta >= 0.5, 0.0, u / 2)
        r = rb * (amg + e_g) + tau * agh + w * e_g
        s_hat = (beta + rb) * am + (w + rb + tau) * agh
        return (1 + u) * r + u * abs_c + (1 + u) * (u * s_hat + 2 * eps)
    if form == "lerp":
        d = amg + e_g
        r = rw * d + w * e_g
        return (1 + u) * r + u * abs_c + (1 + u) * ((2 * u + u * u) * (w + rw) * d + eps)
    if form == "diff":
        d = amg + e_g
        r = rb * d + w * e_g
        return (1 + u) * r + u * abs_c + (1 + u) * ((2 * u + u * u) * (beta + rb) * d + eps)
    if form == "universal":
        return np.maximum.reduce(
            [_form_bound(x, parts, beta, f, e_g) for x in C_FORMS if x != "universal"]
        )
    raise ValueError(f"form must be one of {', '.join(map(repr, C_FORMS))}, got {form!r}")


def c_error_bound(
    m: ArrayLike,
    g: ArrayLike,
    beta: ArrayLike,
    *,
    form: str = "universal",
    compute: Any = "float32",
) -> np.ndarray:
    """Bound on ``|ĉ − c|`` for ``c = β·m + (1 − β)·g`` evaluated in ``compute`` precision.

    ``m`` and ``g`` are float64 arrays holding values of the compute format (the implementation's
    exact inputs); ``β`` is the user's float64 value (scalar or array), and ``c`` uses that exact
    float64 β and the exact real ``1 − β``. With ``u``, ``ε = u·λmin`` of ``compute``,
    ``ρβ = coefficient_error(β)``, ``ρw = weight_error(β)``, ``w = 1 − β``:

    * ``muladd``: ``fl(fl(β̂·m) + fl(ŵ·g))`` with ``ŵ`` the float64 ``1 - beta`` carried into
      the compute format: ``(1+u)R + u|c| + (1+u)(u·Ŝ + 2ε)``, ``R = ρβ|m| + ρw|g|``,
      ``Ŝ = (β+ρβ)|m| + (w+ρw)|g|``;
    * ``muladd_one_minus_beta``: the same with ``ŵ = fl(1 − β̂)`` formed in the compute format:
      ``R = ρβ|m − g| + τ|g|``, ``τ = u/2`` if β < 1/2 else 0, ``Ŝ = (β+ρβ)|m| + (w+ρβ+τ)|g|``;
    * ``lerp`` (torch.lerp, both of its branches): ``fl(m + fl(ŵ·fl(g − m)))``, and for ŵ >= 1/2
      ``fl(g − fl(fl(g − m)·(1 − ŵ)))``:
      ``(1+u)ρw|g−m| + u|c| + (1+u)((2u+u²)(w+ρw)|g−m| + ε)``;
    * ``diff``: ``fl(fl(fl(m − g)·β̂) + g)``:
      ``(1+u)ρβ|m−g| + u|c| + (1+u)((2u+u²)(β+ρβ)|m−g| + ε)``;
    * ``universal``: the maximum of the four.

    Contracting a product and a sum into an FMA removes a rounding, so each bound also holds with
    FMA. Flush-to-zero arithmetic is not covered (ε assumes gradual underflow). Overflow is not
    covered (the bound is then meaningless; non-finite inputs give non-finite bounds).

    >>> m = np.array([1.0, 0.5]); g = np.array([-9.0, 2.0])
    >>> b = c_error_bound(m, g, 0.99, form="muladd", compute="bfloat16")
    >>> bool(b[0] > 0.0017)  # contains |bf16(0.99) − 0.99|·|m|
    True
    """
    f = get_format(compute, "compute")
    _choice("form", form, C_FORMS)
    ma, ga, b = np.broadcast_arrays(_f64(m), _f64(g), _f64(beta))
    _check_beta("beta", b)
    _check_in_format("m", ma, f)
    _check_in_format("g", ga, f)
    return _up(_form_bound(form, _c_parts(ma, ga, b, f), b, f))


def _store_term(f: Format, s: Format, magnitude: np.ndarray) -> np.ndarray | float:
    """Error of rounding a compute-format value of size <= ``magnitude`` into ``s``: zero if
    ``s ⊇ f``, else ``u_s·magnitude + ε_s`` (max(u_s|x|, ε_s) <= the sum)."""
    if s.contains(f):
        return 0.0
    return s.u * magnitude + s.underflow_error


def momentum_update_bound(
    m: ArrayLike,
    g: ArrayLike,
    beta: ArrayLike,
    *,
    form: str = "universal",
    compute: Any = "float32",
    storage: Any = None,
) -> np.ndarray:
    """Bound on ``|m̂_new − m_new|``, ``m_new = β·m + (1 − β)·g`` computed as in
    :func:`c_error_bound` and then stored into ``storage`` (default: the compute format).

    ``B = Bc + [storage ⊉ compute]·(u_s·(|m_new| + Bc) + ε_s)``: one extra round-to-nearest into the
    storage format (absolute error <= ε_s in its subnormal range).

    >>> m = np.array([0.5]); g = np.array([0.25])
    >>> b32 = momentum_update_bound(m, g, 0.9, compute="float32", storage="bfloat16")
    >>> bool(b32[0] >= 2.0**-8 * 0.475)  # a bf16 store of 0.475 may cost u_bf16·0.475
    True
    """
    f = get_format(compute, "compute")
    s = f if storage is None else get_format(storage, "storage")
    _choice("form", form, C_FORMS)
    ma, ga, b = np.broadcast_arrays(_f64(m), _f64(g), _f64(beta))
    _check_beta("beta", b)
    _check_in_format("m", ma, f)
    _check_in_format("g", ga, f)
    parts = _c_parts(ma, ga, b, f)
    bc = _form_bound(form, parts, b, f)
    return _up(bc + _store_term(f, s, parts["abs_c"] + bc))


def axpby_error_bound(
    a: ArrayLike,
    x: ArrayLike,
    b: ArrayLike,
    y: ArrayLike,
    *,
    compute: Any = "float32",
    storage: Any = None,
    a_err: ArrayLike = 0.0,
    b_err: ArrayLike = 0.0,
) -> np.ndarray:
    """Bound on ``|r̂ − r|`` for ``r = a·x + b·y`` evaluated as ``fl(fl(â·x) + fl(b̂·y))`` in
    ``compute`` and stored into ``storage`` (default: the compute format).

    The general two-term form of the muladd bound, for coefficients that are not ``β`` and
    ``1 − β`` — e.g. Tiger's momentum inside an accumulation window, ``1·m + ((1 − β)/k)·g``.
    ``a`` and ``b`` are the float64 coefficients the implementation starts from; ``a_err`` and
    ``b_err`` bound their distance to the exact coefficients (e.g. 2**-52·(1 − β)/k for the float64
    expression ``(1 - beta) / k``). With ``ρa = coefficient_error(a) + a_err`` (likewise ρb),
    ``R = ρa|x| + ρb|y|`` and ``Ŝ = (|a| + ρa)|x| + (|b| + ρb)|y|``:
    ``Bc = (1 + u)R + u|r| + (1 + u)(u·Ŝ + 2ε)``, then the storage term of
    :func:`momentum_update_bound`. ``a = 1`` is exact in every format, so a window's middle steps
    pay only for ``b``.

    >>> b = axpby_error_bound(1.0, np.array([0.5]), 0.035 / 3, np.array([1.0]), compute="float32")
    >>> bool(b[0] < 1e-7)
    True
    """
    f = get_format(compute, "compute")
    st = f if storage is None else get_format(storage, "storage")
    aa, xa, ba, ya, ea, eb = np.broadcast_arrays(
        _f64(a), _f64(x), _f64(b), _f64(y), _f64(a_err), _f64(b_err)
    )
    _check_in_format("x", xa, f)
    _check_in_format("y", ya, f)
    _check_nonneg("a_err", ea)
    _check_nonneg("b_err", eb)
    u, eps = _eff(f)
    ra = coefficient_error(aa, f) + ea
    rb = coefficient_error(ba, f) + eb
    ax, ay = np.abs(xa), np.abs(ya)
    scale = np.abs(aa) * ax + np.abs(ba) * ay
    abs_r = _abs_upper(aa * xa + ba * ya, scale) + ea * ax + eb * ay
    r = ra * ax + rb * ay
    s_hat = (np.abs(aa) + ra) * ax + (np.abs(ba) + rb) * ay
    bc = (1 + u) * r + u * abs_r + (1 + u) * (u * s_hat + 2 * eps)
    return _up(bc + _store_term(f, st, abs_r + bc))


def shrink_error_bound(
    theta: ArrayLike,
    shrink_ratio: float,
    centre: float,
    *,
    compute: Any = "float32",
    storage: Any = None,
) -> np.ndarray:
    """Bound on ``|θ̂' − θ'|`` for Tiger's NaN rule ``θ' = (θ − c)·s + c`` evaluated in ``compute``
    in any of its usual orders — ``fl(fl(fl(θ − c)·ŝ) + c)``, ``fl(fl(ŝ·θ) + fl((1 − ŝ)·c))`` or
    ``fl(ŝ·θ)`` for c = 0 — and stored into ``storage``.

    Each order is a sum of the terms ``s·θ``, ``s·c`` and ``c`` (or ``(1 − s)·c``) with at most
    three roundings on any term's path, so ``Bc = γ3·(|sθ| + |sc| + |c|) + (1 + γ3)·ρs·(|θ| + |c|)
    + 2ε`` (ρs the representation error of s, counted once for θ and once for c), then the storage
    term. With c = 0 it reduces to the single product's error.

    >>> b = shrink_error_bound(np.array([2.0]), 0.99, 0.0, compute="float32")
    >>> bool(b[0] <= 4 * 2.0**-24 * 2.0)
    True
    """
    f = get_format(compute, "compute")
    st = f if storage is None else get_format(storage, "storage")
    th = _f64(theta)
    _check_in_format("theta", th, f)
    if not 0.0 < shrink_ratio <= 1.0:
        raise ValueError(f"shrink_ratio must be in (0, 1], got {shrink_ratio!r}")
    u, eps = _eff(f)
    g3 = 3 * u / (1 - 3 * u)
    rs = float(coefficient_error(shrink_ratio, f))
    at, ac = np.abs(th), abs(centre)
    value = _abs_upper(shrink_ratio * (th - centre) + centre, shrink_ratio * (at + ac) + ac)
    bc = g3 * (shrink_ratio * (at + ac) + ac) + (1 + g3) * rs * (at + ac) + 2 * eps
    return _up(bc + _store_term(f, st, value + bc))


def rms_relative_error(n: int, *, compute: Any = "float32", summation_depth: int | None = None
                       ) -> float:
    """Bound on the relative error of an implementation's ``sqrt(mean(θ²))`` over ``n`` elements
    of the compute format (before any underflow of the squares: ``|θ| >= 2**(emin/2 + p)``).

    The squares and their sum are a dot product of non-negative terms, so
    ``|Ŝ − S| <= γ_d·S`` with ``d = n`` for any summation order (recursive worst case), or
    ``d = summation_depth + 1`` when the implementation declares the depth of its summation tree
    (pairwise/cascade summation: ⌈log2 n⌉ plus the block length). The division by n and the square
    root round once each: ``rms^ = rms·sqrt((1 + γ_d)(1 + u))·(1 + u)``, so the relative error is
    at most ``(γ_d + u + γ_d·u)/2 + u + u·(γ_d + u + γ_d·u)/2``.

    >>> rms_relative_error(768, compute="float32") < 768 * 2.0**-24
    True
    """
    f = get_format(compute, "compute")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    u, _ = _eff(f)
    d = int(n) if summation_depth is None else int(summation_depth) + 1
    if d * u >= 1:
        raise ValueError(f"gamma_{d} is undefined in {f.name}: n·u >= 1, no bound")
    gd = d * u / (1 - d * u)
    half = (gd + u + gd * u) / 2
    return float(_up(np.float64(half + u + u * half)))


# --------------------------------------------------------------------------------------------
# θ_new = θ − η·(s + λ·θ)


def param_update_bound(
    theta: ArrayLike,
    eta: ArrayLike,
    weight_decay: ArrayLike,
    direction: ArrayLike,
    *,
    compute: Any = "float32",
    storage: Any = None,
    storage_roundings: int = 1,
    form: str = "universal",
) -> np.ndarray:
    """Bound on ``|θ̂_new − θ_new|`` for ``θ_new = θ − η·(s + λ·θ)`` with the sign ``s`` given.

    ``θ`` holds values of ``storage`` (default: ``compute``) that are also values of ``compute``;
    ``η = eta`` and ``λ = weight_decay`` are the user's float64 values (carried into the compute
    format with errors ρη, ρλ, see :func:`coefficient_error`); ``s = direction`` ∈ {−1, 0, +1}.
    ``a = η·λ`` reaches the compute format either as the float64 product or as ``fl(η̂·λ̂)``
    (error ρa), the decay factor ``f = 1 − a`` either as the float64 ``1 - eta*wd`` or as
    ``fl(1 − â)`` (error ef). The decay stage ``t ≈ θ·(1 − ηλ)`` is ``fl(θ·f)`` or
    ``fl(θ − fl(â·θ))``, with error ``Et`` (exactly 0 where η·λ = 0).

    ``storage_roundings=1``: one expression in compute precision, rounded once into storage:

    * ``decay_first``: ``fl(t − η̂·s)``: ``Br = u|θ_new| + (1+u)(Et + ρη|s|)``;
    * ``bracket`` (Tiger): ``fl(θ − fl(η̂·fl(s + fl(λ̂·θ))))``;
    * ``separate``: ``fl(fl(θ − η̂·s) − fl(â·θ))``;
    * ``universal``: the maximum of the three;

    then ``B = Br + [storage ⊉ compute]·(u_s(|θ_new| + Br) + ε_s)``.

    ``storage_roundings=2`` (the authors' code: ``θ.mul_(1 − η·λ)`` then
    ``θ.add_(sign, alpha=−η)``, each stored): ``E1 = Et + store(|θ(1−ηλ)| + Et)``,
    ``Br = E1 + ρη|s| + u(|θ_new| + E1 + ρη|s|)``, ``B = Br + store(|θ_new| + Br)``; ``form``
    must be ``decay_first`` or ``universal``.
    Full derivations in ``docs/bounds.md``.

    >>> th, s = np.array([1.0, -0.5]), np.array([1.0, -1.0])
    >>> [(param_update_bound(th, 1e-3, 0.1, s, compute="float32", storage="bfloat16",
    ...                      storage_roundings=r) / 2.0**-8).round(3).tolist() for r in (1, 2)]
    [[0.999, 0.499], [2.003, 1.001]]
    """
    f = get_format(compute, "compute")
    st = f if storage is None else get_format(storage, "storage")
    _choice("form", form, PARAM_FORMS)
    if storage_roundings not in (1, 2):
        raise ValueError(f"storage_roundings must be 1 or 2, got {storage_roundings!r}")
    if storage_roundings == 2 and form not in ("decay_first", "universal"):
        raise ValueError(
            "storage_roundings=2 is the decay-then-step order; form must be 'decay_first' or "
            f"'universal', got {form!r}"
        )
    th, eta_a, lam, s = np.broadcast_arrays(
        _f64(theta), _f64(eta), _f64(weight_decay), _f64(direction)
    )
    _check_nonneg("eta", eta_a)
    _check_nonneg("weight_decay", lam)
    if not np.all((s == -1.0) | (s == 0.0) | (s == 1.0)):
        raise ValueError("direction must hold -1, 0 or +1")
    _check_in_format("theta", th, f)
    _check_in_format("theta", th, st, "storage")
    u, eps = _eff(f)

    at, a_s = np.abs(th), np.abs(s)
    r_eta = coefficient_error(eta_a, f)
    r_lam = coefficient_error(lam, f)
    # a = η·λ exactly = x64 + e2
    x64, e2 = two_prod(eta_a, lam)
    a = x64 + np.abs(e2)
    zero_a = (eta_a == 0.0) | (lam == 0.0)
    rho_a_i = coefficient_error(x64, f) + np.abs(e2)
    rho_a_ii = r_eta * lam + eta_a * r_lam + r_eta * r_lam + u * (eta_a + r_eta) * (lam + r_lam)
    rho_a = np.where(zero_a, 0.0, np.maximum(rho_a_i, rho_a_ii + eps))
    # f = 1 − a: (i) float64 1 − x64 carried into fmt; (ii) fl(1 − â)
    f64v, e1 = two_sum(np.ones_like(x64), -x64)
    one_minus_a = np.abs(f64v) + np.abs(e1) + np.abs(e2)  # >= |1 − ηλ|
    ef_i = coefficient_error(f64v, f) + np.abs(e1) + np.abs(e2)
    tau_f = np.where(a + rho_a <= 0.5, u / 2, u * (one_minus_a + rho_a))
    ef = np.where(zero_a, 0.0, np.maximum(ef_i, rho_a + tau_f))
    et_mul = at * ef + u * at * (one_minus_a + ef) + eps
    et_sub = (1 + u) * (rho_a * at + u * (a + rho_a) * at + eps) + u * at * (one_minus_a + rho_a)
    et = np.where(zero_a, 0.0, np.maximum(et_mul, et_sub))

    theta_new = th - eta_a * s - x64 * th
    scale_new = at + eta_a * a_s + a * at
    abs_new = _abs_upper(theta_new, scale_new)

    if storage_roundings == 2:
        abs_decay = _abs_upper(th - x64 * th, at + a * at)
        e_1 = np.where(zero_a, 0.0, et + _store_term(f, st, abs_decay + et))
        br = e_1 + r_eta * a_s + u * (abs_new + e_1 + r_eta * a_s)
        return _up(br + _store_term(f, st, abs_new + br))

    cands = []
    if form in ("decay_first", "universal"):
        cands.append(u * abs_new + (1 + u) * (et + r_eta * a_s))
    if form in ("bracket", "universal"):
        abs_v = _abs_upper(s + lam * th, a_s + lam * at)
        e_q = u * (lam + r_lam) * at + eps
        e_v = (1 + u) * (r_lam * at + e_q) + u * abs_v
        e_p = r_eta * (abs_v + e_v) + eta_a * e_v + u * (eta_a + r_eta) * (abs_v + e_v) + eps
        cands.append(u * abs_new + (1 + u) * e_p)
    if form in ("separate", "universal"):
        abs_y = _abs_upper(th - eta_a * s, at + eta_a * a_s)
        e_y = r_eta * a_s + u * (abs_y + r_eta * a_s)
        e_p2 = np.where(zero_a, 0.0, rho_a * at + u * (a + rho_a) * at + eps)
        cands.append(u * abs_new + (1 + u) * (e_y + e_p2))
    br = np.maximum.reduce(cands)
    return _up(br + _store_term(f, st, abs_new + br))


# --------------------------------------------------------------------------------------------
# k-step accumulation


def accumulation_bound(
    m0: ArrayLike,
    grads: ArrayLike,
    beta: ArrayLike,
    k: int,
    *,
    compute: Any = "float32",
    order: str = "universal",
) -> np.ndarray:
    """Bound on ``|m̂ − m*|``, ``m* = β·m0 + (1 − β)·mean(g_1..g_k)``, for three evaluation orders.

    ``grads`` has shape ``(k, *m0.shape)`` and holds compute-format values, as does ``m0``.

    * ``direct``: ``ŝ`` = recursive sum of the g_i, ``ḡ = fl(ŝ/k)``, then the ``muladd`` form
      ``fl(fl(β̂·m0) + fl(ŵ·ḡ))``;
    * ``tiger`` (Tiger's built-in accumulation): ``m ← fl(fl(β̂·m0) + fl(â·g_1))``, then
      ``m ← fl(m + fl(â·g_i))`` for i = 2..k, with ``â`` the float64 ``(1 - beta)/k`` carried into
      the compute format;
    * ``running_mean`` (Welford, optax.MultiSteps): ``ḡ_i = fl(ḡ_{i−1} + fl(fl(g_i − ḡ_{i−1})/i))``,
      then the ``muladd`` form with ḡ_k;
    * ``universal``: the maximum of the three.

    The bounds are running-error bounds (Wilkinson): each is a recursion over the k steps driven by
    float64 upper bounds of the exact partial sums, so they are sharper than, and imply, the
    a-priori form ``γ_{k+1}·(β|m0| + (1−β)/k·Σ|g_i|) + ρ-terms + (k+1)(1+γ_k)ε`` (docs/bounds.md).

    >>> g = np.array([[1.0], [-1.0], [0.5]])
    >>> b = accumulation_bound(np.array([0.25]), g, 0.9, 3, compute="bfloat16", order="tiger")
    >>> bool(0.0 < b[0] < 0.01)
    True
    """
    f = get_format(compute, "compute")
    _choice("order", order, ACCUMULATION_ORDERS)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = int(k)
    gs = _f64(grads)
    if gs.ndim == 0 or gs.shape[0] != k:
        raise ValueError(f"grads must have shape (k, ...) with k = {k}, got shape {gs.shape}")
    m0a = _f64(m0)
    b = _f64(beta)
    m0a, b = np.broadcast_arrays(m0a, b)
    gs = np.broadcast_to(gs, (k, *m0a.shape))
    _check_beta("beta", b)
    _check_in_format("m0", m0a, f)
    _check_in_format("grads", gs, f)
    if order == "universal":
        return np.maximum.reduce(
            [
                accumulation_bound(m0a, gs, b, k, compute=f, order=o)
                for o in ACCUMULATION_ORDERS
                if o != "universal"
            ]
        )
    u, eps = _eff(f)
    w = 1.0 - b
    ag = np.abs(gs)
    big_g = ag.sum(axis=0)
    # float64 partial sums P_j = Σ_{i<=j} g_i, each within j·2**-53·Σ|g| of the exact one
    mk = (k + 8) * _U64
    psum = np.cumsum(gs, axis=0)
    abs_p = [np.abs(psum[j]) + mk * big_g for j in range(k)]
    mean64 = psum[-1] / k
    am0 = np.abs(m0a)

    if order in ("direct", "running_mean"):
        if order == "direct":
            fk = np.zeros_like(big_g)
            for j in range(1, k):  # adding g_{j+1}: the sum of the first j+1 terms
                fk = fk + u * (abs_p[j] + fk)
            if k & (k - 1) == 0:  # dividing by a power of two is exact unless it underflows
                e_g = fk / k + (eps if k > 1 else 0.0)
            else:
                e_g = fk / k + u * (abs_p[-1] / k + fk / k) + eps
        else:
            e_i = np.zeros_like(big_g)
            for i in range(2, k + 1):
                mu_prev = abs_p[i - 2] / (i - 1)
                d_i = np.abs(gs[i - 1]) + mu_prev + e_i  # >= |g_i − ḡ_{i−1}|
                nu = (2 * u + u * u) * d_i / i + eps
                carried = ((i - 1) / i) * e_i
                e_i = carried + nu + u * (abs_p[i - 1] / i + carried + nu)
            e_g = e_i
        am = np.abs(mean64)
        c64 = b * m0a + w * mean64
        parts = {
            "rb": coefficient_error(b, f),
            "rw": weight_error(b, f),
            "w": w,
            "am": am0,
            "ag": am + mk * big_g,
            "abs_c": np.abs(c64) + mk * (b * am0 + w * (am + big_g)),
            "abs_m_minus_g": am0 + am + mk * big_g,
        }
        return _up(_form_bound("muladd", parts, b, f, e_g))

    # tiger
    w64, ew = two_sum(np.ones_like(b), -b)
    x64 = w64 / k
    rho_a = coefficient_error(x64, f) + _U64 * x64 + np.abs(ew) / k
    coef = x64 * (1 + _U64) + np.abs(ew) / k + rho_a  # >= â
    rb = coefficient_error(b, f)
    err = u * (b + rb) * am0 + eps  # E_0: rounding of β̂·m0
    for j in range(k):
        abs_t = np.abs(b * m0a + (w / k) * psum[j]) + mk * (b * am0 + big_g)
        abs_t = abs_t + rb * am0 + rho_a * big_g
        e_j = u * coef * ag[j] + eps
        err = err + e_j + u * (abs_t + err + e_j)
    return _up(err + rb * am0 + rho_a * big_g)


# --------------------------------------------------------------------------------------------
# sign and value verdicts


def classify_sign(observed: ArrayLike, exact_c: ArrayLike, bound: ArrayLike) -> np.ndarray:
    """Per-element verdict on a sign decision, as int8 codes.

    ``SIGN_AGREE`` (0) if ``sign(observed) == sign(c)``; otherwise ``SIGN_AMBIGUOUS`` (1) if
    ``|c| <= bound`` (a flip the declared rounding allows) and ``SIGN_FAILURE`` (2) if
    ``|c| > bound``. ``observed`` may be the implementation's ĉ or its sign (±0 both mean 0);
    ``exact_c`` must have the exact sign (the oracle settles |c| near 0 with rationals). A NaN on
    one side only is a failure; NaN on both sides agrees.

    >>> classify_sign([1.0, -1.0, -1.0, 0.0], [2.0, 1e-9, 1.0, 1e-9], [1e-6] * 4).tolist()
    [0, 1, 2, 1]
    """
    o, c, b = np.broadcast_arrays(_f64(observed), _f64(exact_c), _f64(bound))
    so, sc = np.sign(o), np.sign(c)
    no, nc = np.isnan(o), np.isnan(c)
    agree = (so == sc) | (no & nc)
    with np.errstate(invalid="ignore"):
        amb = ~agree & ~no & ~nc & (np.abs(c) <= b)
    out = np.full(o.shape, SIGN_FAILURE, dtype=np.int8)
    out[amb] = SIGN_AMBIGUOUS
    out[agree] = SIGN_AGREE
    return out


def summarize_signs(
    codes: ArrayLike, observed: ArrayLike | None = None, exact_c: ArrayLike | None = None
) -> dict[str, float]:
    """Counts of the :func:`classify_sign` codes, and the direction of the ambiguous flips.

    With ``observed`` and ``exact_c`` the result also has ``flips_up`` (observed sign above the
    exact one), ``flips_down`` and ``flip_bias_z = (up − down)/sqrt(up + down)``: round-to-nearest
    flips are symmetric, so ``|z|`` of several units betrays a directed rounding (truncation).

    >>> summarize_signs(np.array([0, 0, 1, 2], dtype=np.int8))
    {'total': 4, 'agree': 2, 'ambiguous': 1, 'failure': 1}
    """
    cd = np.asarray(codes)
    out: dict[str, float] = {"total": int(cd.size)}
    for code, name in SIGN_CODE_NAMES.items():
        out[name] = int(np.count_nonzero(cd == code))
    if observed is not None and exact_c is not None:
        o, c = np.broadcast_arrays(_f64(observed), _f64(exact_c))
        amb = cd == SIGN_AMBIGUOUS
        up = int(np.count_nonzero(amb & (np.sign(o) > np.sign(c))))
        down = int(np.count_nonzero(amb & (np.sign(o) < np.sign(c))))
        out["flips_up"], out["flips_down"] = up, down
        out["flip_bias_z"] = (up - down) / math.sqrt(up + down) if up + down else 0.0
    return out


def classify_value(observed: ArrayLike, exact: ArrayLike, bound: ArrayLike) -> np.ndarray:
    """Per-element verdict on a value, as int8 codes: ``VALUE_EXACT`` (0) if equal (±0 equal, NaN
    equal NaN), ``VALUE_WITHIN`` (1) if ``|observed − exact| <= bound`` and ``VALUE_FAILURE`` (2)
    otherwise. The difference is compared exactly (TwoSum), so float64 rounding of the difference
    cannot hide a violation; ``exact`` must be the exact value (or the caller widens ``bound``).

    >>> classify_value([1.0, 1.0 + 2**-20, 2.0], [1.0, 1.0, 1.0], [1e-6] * 3).tolist()
    [0, 1, 2]
    """
    o, e, b = np.broadcast_arrays(_f64(observed), _f64(exact), _f64(bound))
    with np.errstate(invalid="ignore", over="ignore"):
        hi, lo = two_sum(o, -e)
        ahi = np.abs(hi)
        exceeds = (ahi > b) | ((ahi == b) & (lo * np.sign(hi) > 0))
        exceeds |= ~np.isfinite(hi)
    eq = (o == e) | (np.isnan(o) & np.isnan(e))
    out = np.where(exceeds, VALUE_FAILURE, VALUE_WITHIN).astype(np.int8)
    out[eq] = VALUE_EXACT
    return out


# --------------------------------------------------------------------------------------------
# exact low-precision predicates


def lost_step(theta: ArrayLike, eta: ArrayLike, direction: ArrayLike, fmt: Any) -> np.ndarray:
    """True where ``RN_fmt(θ − η·s) == θ``; θ in ``fmt``, float64 ``η >= 0``, ``s`` ∈ {−1, 0, 1}.

    Exact: the step moves θ toward the adjacent value at distance ``gap`` (``ulp(θ)`` away from
    zero, :func:`~lionspec.spec.formats.gap_down` toward zero: half as large at a power of two; the
    subnormal spacing at 0). It is lost iff ``η < gap/2``, or ``η == gap/2`` and θ's significand
    is even (ties to even). Away from zero at ``max`` the tie overflows (max is odd), as IEEE says.
    For fp16 θ in [1, 2): lost iff η < 2**-11 ≈ 4.88e-4 (η <= 2**-12 for a downward step from 1.0).

    >>> lost_step([1.0, 1.0, 1.5], [2.0**-12, 2.0**-12, 4.8e-4], [1, -1, 1], "float16").tolist()
    [True, True, True]
    >>> lost_step([1.0, 1.5], [2.0**-11, 4.9e-4], [-1, 1], "float16").tolist()
    [True, False]
    """
    f = get_format(fmt, "fmt")
    th, e, s = np.broadcast_arrays(_f64(theta), _f64(eta), _f64(direction))
    _check_nonneg("eta", e)
    if not np.all((s == -1.0) | (s == 0.0) | (s == 1.0)):
        raise ValueError("direction must hold -1, 0 or +1")
    _check_in_format("theta", th, f, "given")
    away = (th * s < 0) | (th == 0)
    gap = np.where(away, ulp(th, f), gap_down(th, f))
    half = gap / 2
    even = significand_is_even(th, f)
    lost = (e < half) | ((e == half) & even)
    lost = lost | (s == 0) | (e == 0)
    return np.where(np.isnan(th), False, lost | np.isinf(th))


def decay_noop(eta: ArrayLike, weight_decay: ArrayLike, fmt: Any) -> np.ndarray:
    """True where ``RN_fmt(1 − η·λ) == 1`` with the exact product of the float64 η, λ >= 0.

    ``1 − x`` (0 <= x) rounds to 1 iff ``x <= 2**-(p+1) = u/2`` (the tie goes to the even 1): for
    bfloat16 iff ``η·λ <= 2**-9``. Decided exactly (significand product by Dekker's TwoProduct).

    >>> decay_noop([1e-4, 2.0**-9, 2.0**-9], [0.1, 1.0, 1.0 + 2**-52], "bfloat16").tolist()
    [True, True, False]
    """
    f = get_format(fmt, "fmt")
    e, lam = np.broadcast_arrays(_f64(eta), _f64(weight_decay))
    _check_nonneg("eta", e)
    _check_nonneg("weight_decay", lam)
    return _cmp_prod_pow2(e, lam, -(f.p + 1)) <= 0


class BetaRepresentation(NamedTuple):
    """What a momentum coefficient becomes in a format (arrays, broadcast like ``beta``)."""

    beta: np.ndarray  #: the user's float64 β
    represented: np.ndarray  #: β̂ = RN_fmt(β)
    relative_error: np.ndarray  #: (β̂ − β)/β (0 where β = 0)
    weight_relative_error: np.ndarray  #: ((1 − β̂) − (1 − β))/(1 − β): g's weight if 1 − β̂ is used
    horizon: np.ndarray  #: 1/(1 − β̂), the EMA's effective window (inf if frozen)
    frozen: np.ndarray  #: β̂ == 1: the EMA never moves


def beta_representation(beta: ArrayLike, fmt: Any) -> BetaRepresentation:
    """Report how a float64 β is represented in ``fmt`` (round to nearest, ties to even).

    >>> r = beta_representation([0.99, 0.999], "bfloat16")
    >>> r.represented.tolist(), r.frozen.tolist(), round(float(r.horizon[0]), 2)
    ([0.98828125, 1.0], [False, True], 85.33)
    >>> round(float(r.weight_relative_error[0]), 4)
    0.1719
    """
    f = get_format(fmt, "fmt")
    b = _f64(beta)
    _check_beta("beta", b)
    bh = round_to(b, f)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(b == 0, 0.0, (bh - b) / np.where(b == 0, 1.0, b))
        wrel = (b - bh) / (1.0 - b)
        horizon = np.where(bh == 1.0, np.inf, 1.0 / (1.0 - bh))
    return BetaRepresentation(b, bh, rel, wrel, horizon, bh == 1.0)


def ema_underflow(g: ArrayLike, beta: ArrayLike, fmt: Any) -> np.ndarray:
    """True where ``RN_fmt(ŵ·g) == 0``, ``ŵ = RN_fmt(1 − β)`` (the float64 ``1 - beta``): the
    gradient term of the EMA ``β·m + (1 − β)·g`` vanishes in ``fmt``, so an m that is 0 stays 0
    (muladd and lerp forms). Exact: ``|ŵ·g| <= subnormal_min/2`` (the tie rounds to the even 0).

    >>> ema_underflow([1e-6, 1e-5], 0.99, "float16").tolist()
    [True, False]
    """
    f = get_format(fmt, "fmt")
    ga, b = np.broadcast_arrays(_f64(g), _f64(beta))
    _check_beta("beta", b)
    w_hat = round_to(1.0 - b, f)
    return _cmp_prod_pow2(w_hat, np.abs(ga), f.emin - f.p) <= 0

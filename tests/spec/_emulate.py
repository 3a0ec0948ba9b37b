"""Test-only emulation of low-precision arithmetic and exact references (float64 error-free
transforms and fractions). Independent of ``lionspec.spec.formats.round_to`` where it matters:
``rn_bits`` and ``rn_fraction`` re-implement round-to-nearest-even with integers, and the
emulator's rounding is cross-checked against NumPy/ml_dtypes arithmetic in test_formats.py.

Exactness argument for the references (docs/bounds.md, "Meta-tests"):

* ``two_sum``/``two_prod`` are error-free (Knuth, Dekker) for the magnitudes used here (no overflow,
  products far above 2**-969).
* ``exact_sum`` applies two error-free VecSum passes (Ogita, Rump and Oishi 2005), which leave the
  exact sum unchanged, and returns ``hi + lo`` with ``|hi + lo − Σ| <= 2**-90·Σ|t_i|`` (about
  ``γ_{n-1}²·Σ|t_i|`` + ``2**-104·|Σ|``) for up to 40 terms; the bounds being checked are at least
  ``2**-30·Σ|t_i|``-ish whenever Σ|t_i| matters, so the reference is exact to ~2**-60 relative to
  the bound. The worst cases of every run are re-verified with fractions.
* One rounding of an exact value ``hi + lo`` to a format with p <= 51 bits is done through
  round-to-odd in float64 (``round_dd``), which is exact for p + 2 <= 53 (Boldo and Melquiond).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from lionspec.spec._accurate import two_prod, two_sum
from lionspec.spec.formats import FORMATS, Format, get_format, round_to

F32, F16, BF16, F64 = (FORMATS[n] for n in ("float32", "float16", "bfloat16", "float64"))


# ---------------------------------------------------------------- error-free transforms
# TwoSum and TwoProduct are the spec's own (checked against the exact oracle in test_agreement).


def fast_two_sum(a, b):  # |a| >= |b|
    s = a + b
    return s, b - (s - a)


def exact_sum(terms):
    """(hi, lo) with hi + lo the sum of ``terms`` (a list of float64 arrays) to ~2**-100·Σ|t|."""
    p = [np.asarray(t, dtype=np.float64) for t in terms]
    n = len(p)
    for _ in range(2):
        for i in range(1, n):
            p[i], p[i - 1] = two_sum(p[i], p[i - 1])
    lo = np.zeros_like(p[-1])
    for i in range(n - 1):
        lo = lo + p[i]
    hi, lo = two_sum(p[-1], lo)
    return hi, lo


def dd_abs_diff(x, hi, lo):
    """|x − (hi + lo)| evaluated with relative error <= 2**-52 (x, hi, lo float64)."""
    d1, d2 = two_sum(x, -hi)
    return np.abs(d1 + (d2 - lo))


def dd_div_int(hi, lo, k: int):
    """(hi + lo)/k as a double-double, relative error ~2**-104."""
    q = hi / k
    ph, pl = two_prod(q, np.float64(k))
    r = (((hi - ph) - pl) + lo) / k
    return fast_two_sum(q, r)


# ---------------------------------------------------------------- rounding


def round_to_odd(hi, lo):
    """Round-to-odd (53 bits) of the exact hi + lo (hi = fl(hi + lo))."""
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    odd = (hi.view(np.uint64) & np.uint64(1)) == 1
    nudged = np.nextafter(hi, np.where(lo > 0, np.inf, -np.inf))
    return np.where((lo == 0) | odd | ~np.isfinite(hi), hi, nudged)


def round_dd(hi, lo, fmt, mode: str = "rn"):
    """Round the exact hi + lo once to ``fmt``: "rn" (nearest even), "rz" (toward zero, the wrong
    emulation), "rd" (toward −inf)."""
    f = get_format(fmt)
    ro = round_to_odd(hi, lo)
    if mode == "rn":
        return round_to(ro, f)
    return directed(ro, f, mode)


def directed(x, f: Format, mode: str):
    """Directed rounding of float64 x (already rounded to odd) to f; no overflow handling needed."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.where(np.isfinite(x) & (x != 0), np.abs(x), 1.0)
    _, e2 = np.frexp(ax)
    qe = np.clip(e2.astype(np.int64) - 1, f.emin, f.emax) - (f.p - 1)
    y = np.ldexp(x, -qe)
    if mode == "rz":
        r = np.trunc(y)
    elif mode == "rd":
        r = np.floor(y)
    else:  # pragma: no cover
        raise ValueError(mode)
    out = np.ldexp(r, qe)
    return np.where(np.isfinite(x) & (x != 0), out, x)


def rn_bits(x, p: int, emin: int, emax: int):
    """Independent round-to-nearest-even of float64 ``x`` via integer arithmetic on the bits."""
    x = np.asarray(x, dtype=np.float64)
    bits = x.view(np.uint64)
    sign = (bits >> np.uint64(63)).astype(bool)
    bexp = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    frac = bits & np.uint64((1 << 52) - 1)
    normal = bexp > 0
    mant = np.where(normal, frac | np.uint64(1 << 52), frac)
    xexp = np.where(normal, bexp - 1075, -1074)  # x = mant·2**xexp
    # floor(log2|x|)
    nbits = np.zeros(x.shape, dtype=np.int64)
    mm = mant.copy()
    for sh in (32, 16, 8, 4, 2, 1):
        big = mm >= np.uint64(1 << sh)
        nbits += np.where(big, sh, 0)
        mm = np.where(big, mm >> np.uint64(sh), mm)
    e = nbits + xexp
    qe = np.clip(e, emin, emax) - (p - 1)
    sh = qe - xexp
    shc = np.clip(sh, 1, 63).astype(np.uint64)
    q = np.where(sh >= 64, np.uint64(0), mant >> shc)
    r = np.where(sh >= 64, mant, mant & ((np.uint64(1) << shc) - np.uint64(1)))
    half = np.where(sh >= 64, np.uint64(1 << 62), np.uint64(1) << (shc - np.uint64(1)))
    # for sh >= 64, |x| < 2**53·2**xexp <= half quantum, so it rounds to 0 (r < half)
    half = np.where(sh >= 64, np.uint64(1 << 63), half)
    up = (r > half) | ((r == half) & ((q & np.uint64(1)) == 1))
    q = q + up.astype(np.uint64)
    with np.errstate(over="ignore"):
        val = np.where(sh <= 0, np.ldexp(mant.astype(np.float64), xexp),
                       np.ldexp(q.astype(np.float64), qe))  # fmt: skip
    fmax = np.ldexp(2.0 - np.ldexp(1.0, 1 - p), emax)
    val = np.where(val > fmax, np.inf, val)
    val = np.where(sign, -val, val)
    return np.where(np.isfinite(x), val, x)


def rn_fraction(q: Fraction, fmt) -> float:
    """Round the exact rational q to nearest-even in fmt (independent reference); ±0 → 0.0."""
    f = get_format(fmt)
    if q == 0:
        return 0.0
    sign = -1.0 if q < 0 else 1.0
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    e = max(e, f.emin)
    quantum = Fraction(2) ** (e - f.p + 1)
    n = a / quantum
    fl = n.numerator // n.denominator
    rem = n - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1):
        fl += 1
    v = fl * quantum
    if v > Fraction(f.max):
        return sign * np.inf
    return sign * float(v)


# ---------------------------------------------------------------- per-operation arithmetic


class Arith:
    """Correctly rounded (or deliberately wrong) arithmetic of a format, on float64 arrays holding
    values of that format (or, for coefficients, of float32). ``mode``: "rn" (IEEE), "rz"
    (truncation), "rd" (toward −inf); ``via32=True`` rounds each exact result to float32 first
    (torch "opmath"-style double rounding).

    Fast path (mode "rn", ``exact=False``): +, −, × and ÷ are evaluated in float64 and rounded
    once more. That equals the correctly rounded result because the operands have at most 24
    significant bits and 53 >= 2·24 + 2 (double rounding is innocuous for the basic operations,
    Figueroa 1995); the exact path (error-free transform, round-to-odd, one rounding) is
    cross-checked against it in test_formats.py. FMA always takes the exact path.
    """

    def __init__(self, fmt, mode: str = "rn", via32: bool = False, exact: bool = False):
        self.f = get_format(fmt)
        self.mode = mode
        self.via32 = via32
        self.fast = mode == "rn" and not exact

    def _round(self, hi, lo):
        if self.via32:
            hi, lo = round_dd(hi, lo, F32), 0.0
        return round_dd(hi, lo, self.f, self.mode)

    def _round64(self, x):
        if self.via32:
            x = round_to(x, F32)
        return round_to(x, self.f)

    def add(self, a, b):
        if self.fast:
            return self._round64(np.add(a, b))
        return self._round(*two_sum(a, b))

    def sub(self, a, b):
        if self.fast:
            return self._round64(np.subtract(a, b))
        return self._round(*two_sum(a, -b))

    def mul(self, a, b):
        if self.fast:
            return self._round64(np.multiply(a, b))
        return self._round(*two_prod(a, b))

    def div(self, a, k: int):
        if self.fast:
            return self._round64(np.divide(a, k))
        q = a / k  # a/k rounded in float64; the remainder is exact
        ph, pl = two_prod(q, np.float64(k))
        r = ((a - ph) - pl) / k
        hi, lo = fast_two_sum(q, r)
        return self._round(np.where(a == 0, q, hi), lo)  # keep the sign of a zero quotient

    def fma(self, a, b, c):
        p, pe = two_prod(a, b)
        hi, lo = exact_sum([pe, c, p])
        return self._round(hi, lo)


def coefficient(h, fmt, variant: str = "rn"):
    """A float64 hyperparameter carried into ``fmt``: "rn" = RN_fmt(h), "via32" = RN(RN_fp32(h))
    (ml_dtypes/torch conversions), "f32" = RN_fp32(h) (a finer opmath scalar)."""
    h = np.asarray(h, dtype=np.float64)
    if variant == "rn":
        return round_to(h, fmt)
    if variant == "via32":
        return round_to(round_to(h, F32), fmt)
    if variant == "f32":
        return round_to(h, F32)
    raise ValueError(variant)  # pragma: no cover


# ---------------------------------------------------------------- sampling


def log_uniform_values(rng, n, fmt, lo_exp=None, hi_exp=None):
    """Values of fmt with random sign and exponent uniform in [lo_exp, hi_exp] (defaults: the
    whole range including subnormals), significand uniform."""
    f = get_format(fmt)
    lo_exp = f.emin - f.p + 1 if lo_exp is None else lo_exp
    hi_exp = f.emax if hi_exp is None else hi_exp
    e = rng.integers(lo_exp, hi_exp + 1, n)
    x = np.ldexp(1.0 + rng.random(n), e) * rng.choice([-1.0, 1.0], n)
    return round_to(x, f)


def ulps_shift(x, k, fmt):
    """x moved by k (integer array) quanta of its binade, then rounded to fmt."""
    f = get_format(fmt)
    ax = np.where(x == 0, f.subnormal_min, np.abs(x))
    _, e2 = np.frexp(ax)
    q = np.ldexp(1.0, np.clip(e2.astype(np.int64) - 1, f.emin, f.emax) - (f.p - 1))
    return round_to(x + k * q, f)

"""Tests of lionspec.spec.formats: the format table and the exact rounding emulator."""

from __future__ import annotations

import doctest
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lionspec.spec import formats
from lionspec.spec.formats import (
    FORMATS,
    Format,
    gap_down,
    get_format,
    is_representable,
    next_away_from_zero,
    next_toward_zero,
    round_to,
    significand_is_even,
    ulp,
)

from ._emulate import F16, F32, Arith, rn_bits, rn_fraction

BF16 = ml_dtypes.bfloat16
NAMES = ("float32", "float16", "bfloat16")


def bits(x):
    return np.asarray(x, dtype=np.float64).view(np.uint64)


def differs(a, b):
    """Elementwise: do the float64 values differ in their bits (NaNs, any payload, equal)?"""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return ~((bits(a) == bits(b)) | (np.isnan(a) & np.isnan(b)))


def same(a, b):
    """Bit-for-bit equality of float64 arrays, NaNs (any payload) equal."""
    return not np.any(differs(a, b))


def test_doctests():
    assert doctest.testmod(formats, raise_on_error=False).failed == 0


@pytest.mark.parametrize(
    ("name", "p", "emin", "emax", "tiny", "smin", "fmax"),
    [
        ("float64", 53, -1022, 1023, 2.0**-1022, 2.0**-1074, np.finfo(np.float64).max),
        ("float32", 24, -126, 127, 2.0**-126, 2.0**-149, float(np.finfo(np.float32).max)),
        ("float16", 11, -14, 15, 2.0**-14, 2.0**-24, 65504.0),
        ("bfloat16", 8, -126, 127, 2.0**-126, 2.0**-133, float(ml_dtypes.finfo(BF16).max)),
    ],
)
def test_format_table(name, p, emin, emax, tiny, smin, fmax):
    f = FORMATS[name]
    assert (f.p, f.emin, f.emax) == (p, emin, emax)
    assert f.u == 2.0**-p
    assert (f.tiny, f.subnormal_min, f.max) == (tiny, smin, fmax)
    if name != "float64":
        fi = ml_dtypes.finfo(BF16) if name == "bfloat16" else np.finfo(np.dtype(name))
        assert float(fi.smallest_normal) == tiny
        assert float(fi.smallest_subnormal) == smin
        assert float(fi.eps) == 2 * f.u


def test_get_format_accepts_dtypes_and_names():
    assert get_format(np.float32) is FORMATS["float32"]
    assert get_format(np.dtype("float16")) is FORMATS["float16"]
    assert get_format(BF16) is FORMATS["bfloat16"]
    assert get_format(np.dtype(BF16)) is FORMATS["bfloat16"]
    for alias in ("bf16", "BFloat16", "torch.bfloat16", "fp32", "half", "double"):
        get_format(alias)

    class TorchLike:
        def __str__(self):
            return "torch.float16"

    assert get_format(TorchLike()) is FORMATS["float16"]
    f = FORMATS["float16"]
    assert get_format(f) is f


@pytest.mark.parametrize("bad", ["float8", "int32", 3, None, np.int16])
def test_get_format_rejects_unknown(bad):
    with pytest.raises(ValueError, match="compute"):
        get_format(bad, "compute")


def test_format_validation_and_containment():
    with pytest.raises(ValueError, match="unsupported"):
        Format("bad", 60, -10, 10)
    f32, f16, bf = FORMATS["float32"], FORMATS["float16"], FORMATS["bfloat16"]
    assert f32.contains(f16) and f32.contains(bf) and f32.contains(f32)
    assert not f16.contains(bf) and not bf.contains(f16) and not f16.contains(f32)
    assert FORMATS["float64"].underflow_error == 2.0**-1074
    assert f16.underflow_error == 2.0**-25


# ------------------------------------------------------------------------ round_to


def _samples(rng, n):
    """Adversarial float64 inputs: wide magnitudes, subnormals of every format, exact ties and
    ties ± 1 float64 ulp for every format, overflow boundaries, specials."""
    parts = [
        rng.standard_normal(n) * np.exp2(rng.integers(-160, 140, n)),
        np.ldexp(rng.random(n // 4), rng.integers(-1074, -1000, n // 4)),  # float64 subnormals
    ]
    for f in (FORMATS[k] for k in NAMES):
        # midpoints between adjacent values of f, across its whole range, and their neighbours
        e = rng.integers(f.emin - 1, f.emax + 1, n // 4)
        sig = rng.integers(2 ** (f.p - 1), 2**f.p, n // 4).astype(np.float64)
        mid = np.ldexp(sig + 0.5, np.maximum(e, f.emin) - f.p + 1)
        sub = np.ldexp(rng.integers(0, 2 ** (f.p - 1), n // 8) + 0.5, f.emin - f.p + 1)
        for base in (mid, sub):
            parts += [base, np.nextafter(base, np.inf), np.nextafter(base, -np.inf)]
        top = f.max + ulp(f.max, f) / 2
        parts.append(
            np.array([top, np.nextafter(top, 0), np.nextafter(top, np.inf), f.max, f.tiny,
                      f.subnormal_min / 2, np.nextafter(f.subnormal_min / 2, 1),
                      f.subnormal_min, f.tiny - f.subnormal_min / 2])
        )
    parts.append(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1.7e308]))
    x = np.concatenate(parts)
    return np.concatenate([x, -x])


@pytest.mark.slow
def test_round_to_matches_numpy_and_integer_reference():
    rng = np.random.default_rng(20240611)
    x = _samples(rng, 250_000)
    assert x.size >= 1_000_000
    with np.errstate(over="ignore"):
        np32 = x.astype(np.float32).astype(np.float64)
        np16 = x.astype(np.float16).astype(np.float64)
    assert same(round_to(x, "float32"), np32)
    assert same(round_to(x, "float16"), np16)
    for name in NAMES:
        f = FORMATS[name]
        assert same(round_to(x, f), rn_bits(x, f.p, f.emin, f.emax)), name
    assert same(round_to(x, "float64"), x)


@pytest.mark.slow
def test_round_to_bfloat16_vs_ml_dtypes():
    """ml_dtypes up to 0.6 casts float64→bfloat16 as RN_bf16(RN_fp32(x)) (a double rounding);
    0.7 rounds once. On float32 inputs every version agrees with round_to bit-for-bit; on general
    float64 inputs each element of the installed version's cast is either round_to's (correct)
    value or the double-rounded one, and the samples do reach inputs where the two differ (so
    the comparison would see a double-rounding round_to)."""
    rng = np.random.default_rng(7)
    x = _samples(rng, 250_000)
    assert x.size >= 1_000_000
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32).astype(np.float64)
        ml = x32.astype(BF16).astype(np.float64)
        ml64 = x.astype(BF16).astype(np.float64)
    assert same(round_to(x32, "bfloat16"), ml)
    ours = round_to(x, "bfloat16")
    double = round_to(round_to(x, "float32"), "bfloat16")
    assert np.count_nonzero(differs(ours, double)) > 0  # bf16 midpoints minus one float64 ulp
    diff = differs(ours, ml64)
    assert same(ml64[diff], double[diff])
    witness = np.array([1.0 + 2.0**-8 + 2.0**-40])
    assert round_to(witness, "bfloat16")[0] == 1.0 + 2.0**-7  # correct rounding
    assert rn_fraction(Fraction(witness[0]), "bfloat16") == 1.0 + 2.0**-7


def test_round_to_specials():
    for name in NAMES:
        f = FORMATS[name]
        r = round_to([0.0, -0.0, np.inf, -np.inf, np.nan, -f.subnormal_min / 2, f.max], f)
        assert bits(r[:4]).tolist() == bits([0.0, -0.0, np.inf, -np.inf]).tolist()
        assert np.isnan(r[4])
        assert bits(r[5]) == bits(-0.0)  # tie to even at the smallest subnormal, sign kept
        assert r[6] == f.max
        top = f.max + ulp(f.max, f) / 2
        assert round_to([top, np.nextafter(top, 0)], f).tolist() == [np.inf, f.max]
    assert round_to(np.float32(0.1), "float16").shape == ()
    assert round_to([[1.0, 2.0]], "bfloat16").shape == (1, 2)


def _fmt_value_strategy(name):
    if name == "float16":
        return st.floats(width=16, allow_nan=False, allow_infinity=False)
    if name == "float32":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    return st.integers(0, 0xFFFF).map(
        lambda b: float(np.array([b], np.uint16).view(BF16)[0])
    ).filter(np.isfinite)


@given(data=st.data())
def test_round_to_equals_exact_rational_rounding(data):
    name = data.draw(st.sampled_from(NAMES), label="format")
    x = data.draw(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.floats(min_value=-1e-36, max_value=1e-36),
            st.floats(min_value=-1e-4, max_value=1e-4),
        ),
        label="x",
    )
    assert round_to(x, name) == rn_fraction(Fraction(x), name)


@given(data=st.data())
def test_ulp_and_neighbours(data):
    name = data.draw(st.sampled_from(NAMES), label="format")
    f = FORMATS[name]
    x = data.draw(_fmt_value_strategy(name), label="x")
    assert is_representable(x, f)
    up, down = float(ulp(x, f)), float(gap_down(x, f))
    away, toward = float(next_away_from_zero(x, f)), float(next_toward_zero(x, f))
    ax = abs(x)
    if ax < f.max:
        assert abs(away) - ax == up
        assert is_representable(away, f)
        # nothing of f strictly between |x| and |x| + ulp: the midpoint rounds to one of them
        mid = Fraction(ax) + Fraction(up) / 2
        assert rn_fraction(mid, f) in (ax, ax + up)
    if x != 0:
        assert ax - abs(toward) == down
        assert is_representable(toward, f)
        mid = Fraction(ax) - Fraction(down) / 2
        assert rn_fraction(mid, f) in (ax, ax - down)
        even = bool(significand_is_even(x, f))
        assert (rn_fraction(mid, f) == ax) == even
    else:
        assert down == 0.0 and toward == 0.0


def test_ulp_boundaries():
    f16 = FORMATS["float16"]
    assert ulp([2.0**-14, 2.0**-15, 2.0**-24], f16).tolist() == [2.0**-24] * 3
    assert gap_down([2.0**-14, 2.0**-13], f16).tolist() == [2.0**-24, 2.0**-24]
    assert gap_down(65504.0, f16) == 32.0 and gap_down(32768.0, f16) == 16.0
    assert np.isnan(ulp([np.inf, np.nan], f16)).all()
    assert next_away_from_zero(-65504.0, f16) == -np.inf
    assert not significand_is_even(65504.0, f16)


@pytest.mark.slow
def test_emulator_matches_native_arithmetic():
    """The test emulator (tests/spec/_emulate.Arith) is bit-for-bit NumPy float32/float16 and
    ml_dtypes bfloat16 arithmetic (all correctly rounded per operation) on 300k pairs each."""
    rng = np.random.default_rng(3)
    n = 300_000
    for name, dt in (("float32", np.float32), ("float16", np.float16), ("bfloat16", BF16)):
        f = FORMATS[name]
        lo = f.emin - f.p + 1
        a = round_to(rng.standard_normal(n) * np.exp2(rng.integers(lo, f.emax - 2, n)), f)
        b = round_to(rng.standard_normal(n) * np.exp2(rng.integers(lo, f.emax - 2, n)), f)
        b[: n // 3] = round_to(-a[: n // 3] * (1 + rng.standard_normal(n // 3) * 1e-3), f)
        ar = Arith(f)
        na, nb = a.astype(dt), b.astype(dt)
        with np.errstate(over="ignore", under="ignore"):
            assert same(ar.add(a, b), (na + nb).astype(np.float64)), name
            assert same(ar.sub(a, b), (na - nb).astype(np.float64)), name
            assert same(ar.mul(a, b), (na * nb).astype(np.float64)), name
    # float32 fused multiply-add against float64 evaluation (exact product) for small exponents
    a = round_to(rng.standard_normal(n), F32)
    b = round_to(rng.standard_normal(n), F32)
    c = round_to(rng.standard_normal(n), F32)
    ref = np.array([rn_fraction(Fraction(x) * Fraction(y) + Fraction(z), F32)
                    for x, y, z in zip(a[:2000], b[:2000], c[:2000], strict=True)])  # fmt: skip
    assert same(Arith(F32).fma(a[:2000], b[:2000], c[:2000]), ref)
    # the fast path (float64 op, then one rounding) equals the exact path, also with float32
    # operands in a 16-bit format (opmath coefficients) and for division by small integers
    for name in ("float16", "bfloat16"):
        f = FORMATS[name]
        x = round_to(rng.standard_normal(n) * np.exp2(rng.integers(-28, 8, n)), f)
        y = round_to(rng.standard_normal(n) * np.exp2(rng.integers(-30, 30, n)), F32)
        y[: n // 2] = round_to(-x[: n // 2] * (1 + rng.standard_normal(n // 2) * 1e-4), F32)
        for via32 in (False, True):
            fast, ex = Arith(f, via32=via32), Arith(f, via32=via32, exact=True)
            for op in ("add", "sub", "mul"):
                assert same(getattr(fast, op)(x, y), getattr(ex, op)(x, y)), (name, op, via32)
            for k in (3, 5, 7):
                assert same(fast.div(x, k), ex.div(x, k)), (name, k)
    assert F16.p == 11

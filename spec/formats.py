"""Binary floating-point formats and an exact round-to-nearest emulator (pure NumPy).

A format with precision ``p`` (significand bits, implicit bit included) and exponent range
``[emin, emax]`` holds the numbers ``±M·2**(e − p + 1)`` with integer ``0 <= M < 2**p`` and
``emin <= e <= emax`` (``M >= 2**(p−1)`` for normal numbers, any ``M`` at ``e = emin`` for the
subnormals). Its constants:

* unit roundoff ``u = 2**−p`` (round-to-nearest error bound relative to the result),
* ``tiny = λmin = 2**emin`` (smallest normal),
* ``subnormal_min = 2**(emin − p + 1)`` (smallest positive subnormal),
* ``max = (2 − 2**(1−p))·2**emax``.

:func:`round_to` rounds float64 values to the nearest value of a format, ties to even, with gradual
underflow and IEEE overflow. Every value of the four formats in :data:`FORMATS` is a float64, so
the emulator works entirely in float64: it scales ``x`` by an exact power of two so that the quantum
of ``x``'s binade becomes 1, rounds with :func:`numpy.rint` (ties to even) and scales back. Both
scalings are exact (they never leave float64's normal range for these formats), so the only
rounding is the one we want.

``round_to`` rounds *the float64 value it is given*. A real number that was first rounded to
float64 and is then rounded to a narrower format is rounded twice, which can differ from rounding
the real number once (e.g. ``1 + 2**-8 + 2**-60`` is above the bfloat16 midpoint ``1 + 2**-8``, but
its float64 rounding is the midpoint itself, which rounds to 1.0). Note also that ml_dtypes up to
0.6 converts float64 to bfloat16 *through float32*, i.e. ``RN_bf16(RN_fp32(x))``, a double
rounding: ``round_to(x, "bfloat16")`` is the correctly rounded value and differs from those
versions' cast on float64 inputs that lie within a float32 half-ulp of a bfloat16 midpoint
(ml_dtypes 0.7 rounds once, as ``round_to`` does).

>>> round_to([1.0 + 2.0**-8, 0.99, 0.999, 1e-40], "bfloat16").tolist()
[1.0, 0.98828125, 1.0, 9.183549615799121e-41]
>>> float(ulp(1.0, "float16")), float(gap_down(1.0, "float16"))
(0.0009765625, 0.00048828125)
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "FORMATS",
    "Format",
    "gap_down",
    "get_format",
    "is_representable",
    "next_away_from_zero",
    "next_toward_zero",
    "round_to",
    "significand_is_even",
    "ulp",
]


@dataclass(frozen=True)
class Format:
    """An IEEE-754-style binary format with gradual underflow.

    ``p`` counts the significand bits including the implicit one; ``emin``/``emax`` are the
    exponents of the smallest and largest normal binades. Derived constants are computed exactly
    (they are powers of two or ``(2 − 2**(1−p))·2**emax``, all float64 numbers).

    >>> f = Format("float16", 11, -14, 15)
    >>> f.u, f.tiny, f.subnormal_min, f.max
    (0.00048828125, 6.103515625e-05, 5.960464477539063e-08, 65504.0)
    """

    name: str
    p: int
    emin: int
    emax: int
    u: float = field(init=False)
    tiny: float = field(init=False)
    subnormal_min: float = field(init=False)
    max: float = field(init=False)

    def __post_init__(self) -> None:
        if not (2 <= self.p <= 53 and -1022 <= self.emin < 0 < self.emax <= 1023):
            raise ValueError(f"unsupported format parameters for {self.name!r}")
        object.__setattr__(self, "u", math.ldexp(1.0, -self.p))
        object.__setattr__(self, "tiny", math.ldexp(1.0, self.emin))
        object.__setattr__(self, "subnormal_min", math.ldexp(1.0, self.emin - self.p + 1))
        object.__setattr__(
            self, "max", math.ldexp(2.0 - math.ldexp(1.0, 1 - self.p), self.emax)
        )

    @property
    def underflow_error(self) -> float:
        """ε = u·λmin = subnormal_min/2: the absolute error of a product rounded into the
        subnormal range. For float64 (2**-1075 is not a float64) this is rounded up to 2**-1074.

        >>> get_format("float16").underflow_error == 2.0**-25
        True
        """
        return max(math.ldexp(1.0, self.emin - self.p), math.ldexp(1.0, -1074))

    def contains(self, other: Format) -> bool:
        """True if every value of ``other`` is a value of this format (``other ⊆ self``).

        >>> FORMATS["float32"].contains(FORMATS["bfloat16"]), FORMATS["float16"].contains(
        ...     FORMATS["bfloat16"])
        (True, False)
        """
        return (
            other.p <= self.p
            and other.emax <= self.emax
            and other.emin >= self.emin
            and other.emin - other.p >= self.emin - self.p
        )


#: The formats lionspec judges implementations in.
FORMATS: dict[str, Format] = {
    "float64": Format("float64", 53, -1022, 1023),
    "float32": Format("float32", 24, -126, 127),
    "float16": Format("float16", 11, -14, 15),
    "bfloat16": Format("bfloat16", 8, -126, 127),
}

_ALIASES: dict[str, str] = {
    "float64": "float64", "f64": "float64", "fp64": "float64", "double": "float64",
    "f8": "float64", "<f8": "float64",
    "float32": "float32", "f32": "float32", "fp32": "float32", "single": "float32",
    "float": "float32", "f4": "float32", "<f4": "float32",
    "float16": "float16", "f16": "float16", "fp16": "float16", "half": "float16",
    "f2": "float16", "<f2": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}  # fmt: skip


def get_format(dtype: Any, name: str = "dtype") -> Format:
    """Look up a :class:`Format` by name, NumPy dtype, or any dtype-like object.

    Accepts a :class:`Format`, a string (``"float32"``, ``"fp16"``, ``"bf16"``, …), a NumPy dtype
    or scalar type, or an object whose ``str()`` or ``name`` names one (ml_dtypes' ``bfloat16``,
    ``torch.bfloat16``, jax dtypes). Unknown values raise ``ValueError`` naming ``name``.

    >>> get_format("bf16").p, get_format(np.float16).emax, get_format("torch.float32").name
    (8, 15, 'float32')
    """
    if isinstance(dtype, Format):
        return dtype
    candidates: list[str] = []
    if dtype is None:
        pass  # np.dtype(None) would silently mean float64
    elif isinstance(dtype, str):
        candidates.append(dtype)
    else:
        with contextlib.suppress(TypeError):
            candidates.append(np.dtype(dtype).name)
        for attr in ("name", "__name__"):
            value = getattr(dtype, attr, None)
            if isinstance(value, str):
                candidates.append(value)
        candidates.append(str(dtype))
    for cand in candidates:
        key = cand.strip().lower()
        for prefix in ("torch.", "jnp.", "numpy.", "np.", "dtype(", "<class '"):
            if key.startswith(prefix):
                key = key[len(prefix):]
        key = key.rstrip(")'>\"").strip("'\"")
        if key in _ALIASES:
            return FORMATS[_ALIASES[key]]
    raise ValueError(
        f"{name} must name one of the formats {', '.join(FORMATS)} (or a dtype of one), "
        f"got {dtype!r}"
    )


def _as_f64(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _quantum_exponent(ax: np.ndarray, fmt: Format) -> np.ndarray:
    """Exponent q with 2**q the spacing of ``fmt`` in the binade of |x| (|x| > 0 finite)."""
    _, e2 = np.frexp(ax)  # |x| in [2**(e2-1), 2**e2)
    e = np.clip(e2.astype(np.int64) - 1, fmt.emin, fmt.emax)
    return e - (fmt.p - 1)


def round_to(x: ArrayLike, fmt: Any) -> np.ndarray:
    """Round float64 values to the nearest value of ``fmt``, ties to even (IEEE roundTiesToEven).

    Let ``e = max(floor(log2|x|), emin)`` and ``q = 2**(e − p + 1)`` (the spacing of ``fmt`` at
    ``|x|``; at ``e = emin`` this is the subnormal spacing). The result is ``rint(x/q)·q``; results
    beyond ``max`` become ``±inf`` (``|x| ≥ max + q/2`` rounds to infinity, the tie included,
    because ``max`` has an odd significand). NaN, ±inf and signed zeros are returned unchanged; a
    value that rounds to zero keeps its sign. Returns a new float64 array.

    >>> round_to([65519.0, 65520.0, -2.0**-25, 2.0**-25 * 1.5], "float16").tolist()
    [65504.0, inf, -0.0, 5.960464477539063e-08]
    """
    f = get_format(fmt, "fmt")
    xa = _as_f64(x)
    if f.p == 53:
        return np.array(xa, dtype=np.float64, copy=True)
    # The biased exponent field gives floor(log2|x|) = bexp − 1023 for normal x; the quantum
    # exponent is that − (p − 1), but not below the subnormal quantum emin − p + 1 (float64
    # subnormals and zeros have bexp = 0 and land on the clamp). Both scale factors 2**±q are
    # normal float64 numbers for these formats, so multiplying by them is exact (scaling up a
    # float64 subnormal is exact too). Zeros, infinities and NaNs pass through with their signs;
    # binades above emax overflow below.
    bexp = (xa.view(np.uint64) >> np.uint64(52)).astype(np.int64) & 0x7FF
    qexp = np.maximum(bexp - (1022 + f.p), f.emin - f.p + 1)
    up = ((1023 - qexp) << 52).view(np.float64)
    down = ((1023 + qexp) << 52).view(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.rint(xa * up) * down
        over = np.abs(out) > f.max
    if np.any(over):
        out = np.where(over, np.copysign(np.inf, out), out)
    return np.asarray(out, dtype=np.float64)


def is_representable(x: ArrayLike, fmt: Any) -> np.ndarray:
    """True where ``x`` is a value of ``fmt`` (±inf and ±0 included, NaN excluded).

    >>> is_representable([0.1, 0.5, np.inf, 2.0**-24], "float16").tolist()
    [False, True, True, True]
    """
    xa = _as_f64(x)
    with np.errstate(invalid="ignore"):
        return round_to(xa, fmt) == xa


def ulp(x: ArrayLike, fmt: Any) -> np.ndarray:
    """Spacing of ``fmt`` at ``|x|``: the gap from ``|x|`` to the next larger magnitude.

    ``ulp(x) = 2**(max(e, emin) − p + 1)`` with ``e = floor(log2|x|)`` clamped to ``emax``;
    ``ulp(0) = subnormal_min``; NaN for non-finite ``x``. Round-to-nearest has error
    ``<= ulp(x)/2`` for any ``x`` that does not overflow.

    >>> ulp([1.0, 1.5, 0.75, 0.0, 65504.0], "float16").tolist()
    [0.0009765625, 0.0009765625, 0.00048828125, 5.960464477539063e-08, 32.0]
    """
    f = get_format(fmt, "fmt")
    xa = _as_f64(x)
    ax = np.abs(xa)
    pos = np.isfinite(ax) & (ax > 0)
    qexp = _quantum_exponent(np.where(pos, ax, 1.0), f)
    out = np.ldexp(np.ones_like(ax), qexp)
    out = np.where(ax == 0.0, f.subnormal_min, out)
    return np.where(np.isfinite(ax), out, np.nan)


def gap_down(x: ArrayLike, fmt: Any) -> np.ndarray:
    """Gap from ``|x|`` down to the next smaller magnitude of ``fmt``, for ``x`` in ``fmt``.

    Equal to :func:`ulp` except at a power of two ``2**e`` with ``e > emin``, where the binade below
    is twice as fine (``ulp/2``). ``gap_down(0) = 0`` (there is no smaller magnitude).

    >>> gap_down([1.0, 1.5, 2.0**-14, 2.0**-15, 0.0], "float16").tolist()
    [0.00048828125, 0.0009765625, 5.960464477539063e-08, 5.960464477539063e-08, 0.0]
    """
    f = get_format(fmt, "fmt")
    xa = _as_f64(x)
    ax = np.abs(xa)
    up = ulp(xa, f)
    mant, _ = np.frexp(np.where(np.isfinite(ax), ax, 1.0))
    pow2 = (mant == 0.5) & (ax > f.tiny)
    out = np.where(pow2, up / 2, up)
    return np.where(ax == 0.0, 0.0, out)


def next_toward_zero(x: ArrayLike, fmt: Any) -> np.ndarray:
    """The value of ``fmt`` adjacent to ``x`` (a value of ``fmt``) on the side of zero.

    ``next_toward_zero(±0) = ±0``.

    >>> next_toward_zero([1.0, -1.0, 2.0**-24], "float16").tolist()
    [0.99951171875, -0.99951171875, 0.0]
    """
    xa = _as_f64(x)
    return xa - np.sign(xa) * gap_down(xa, fmt)


def next_away_from_zero(x: ArrayLike, fmt: Any) -> np.ndarray:
    """The value of ``fmt`` adjacent to ``x`` (a value of ``fmt``) away from zero; ``±inf`` past
    ``max``. For ``x = ±0`` this is ``±subnormal_min``.

    >>> next_away_from_zero([1.0, -65504.0, -0.0], "float16").tolist()
    [1.0009765625, -inf, -5.960464477539063e-08]
    """
    f = get_format(fmt, "fmt")
    xa = _as_f64(x)
    step = np.copysign(ulp(xa, f), xa)
    out = xa + step
    return np.where(np.abs(out) > f.max, np.copysign(np.inf, xa), out)


def significand_is_even(x: ArrayLike, fmt: Any) -> np.ndarray:
    """True where ``x`` (a value of ``fmt``) has an even integer significand ``|x|/ulp(x)``.

    Zero and powers of two are even; ``max`` is odd. This is the tie-break of round-to-nearest-even.

    >>> significand_is_even([1.0, 1.0 + 2.0**-10, 0.0, 65504.0], "float16").tolist()
    [True, False, True, False]
    """
    xa = _as_f64(x)
    ax = np.abs(xa)
    with np.errstate(invalid="ignore"):
        m = ax / ulp(xa, fmt)
        return np.fmod(m, 2.0) == 0.0

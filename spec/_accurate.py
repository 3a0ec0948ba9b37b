"""Accurate float64 evaluation of short sums of products, with an exact rational fallback.

Every output of the spec (Lion's interpolation c, a new momentum, a new parameter) is a short sum
of products ``r = Σ_i a_i · x_i`` where the ``a_i`` are hyperparameter coefficients known exactly as
rationals and the ``x_i`` are float64 arrays. :func:`sum_of_products` evaluates such sums

* with the compensated dot product Dot2 (Ogita, Rump and Oishi, "Accurate sum and dot product",
  SIAM J. Sci. Comput. 26(6), 2005), built from the error-free transformations TwoSum (Knuth) and
  TwoProduct (Dekker, with Veltkamp splitting, so no FMA is needed). Its result satisfies
  ``|r̂ − r| ≤ u·|r| + γ_n²·Σ|a_i x_i|`` (u = 2**-53, n the number of products) as long as no
  product underflows or overflows;
* and *accepts* that result only where ``γ_n²·Σ|a_i x_i| + (coefficient error) ≤ u·|r̂|``, so every
  accepted value is within ``2u·|r| + 2**-1074`` of the exact value (fewer than two ulps) and has
  the exact sign;
* and recomputes every other element — exact or near cancellation, possible underflow or overflow
  in a product — in exact rational arithmetic (:class:`fractions.Fraction`) and rounds it once
  (Python's ``float(Fraction)`` is correctly rounded).

Elements with a non-finite input are evaluated in IEEE float64 as written, one logical term at a
time, which is the spec's NaN/Inf semantics (terms whose coefficient is exactly zero are absent).

The sign of every result is returned separately and is always the exact sign, including for values
whose magnitude is below half the smallest subnormal (which round to zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = [
    "ORACLE_ABS_ERR",
    "ORACLE_REL_ERR",
    "Coef",
    "Term",
    "accurate_sum",
    "sum_of_products",
    "two_prod",
    "two_sum",
]

_U = 2.0**-53
#: Relative error of every value the float64 oracle returns, against the exact value: 2u (plus a
#: margin of one part in 2**50 for the second-order terms of the Dot2 bound).
ORACLE_REL_ERR = 2.0 * _U * (1.0 + 2.0**-50)
#: Absolute error floor of the float64 oracle: one subnormal spacing (the final rounding of a result
#: that lands in the subnormal range is absolute, not relative).
ORACLE_ABS_ERR = 2.0**-1074

_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's constant for float64
_SPLIT_MAX = 2.0**995  # above this, SPLITTER*a can overflow
_PROD_MIN = 2.0**-969  # below this, the rounding error of a product may not be representable
_CHUNK = 1 << 16  # elements per block: keeps the ~40 temporaries of a block in cache


def _split(a: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum: ``s = fl(a + b)`` and ``e`` with ``a + b = s + e`` exactly (no overflow)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def two_prod(a: np.ndarray | float, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker's TwoProduct: ``p = fl(a·b)`` and ``e`` with ``a·b = p + e`` exactly, for
    ``|a|, |b| <= 2**995`` and ``|a·b| >= 2**-969`` (else ``e`` is only approximate)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, al * bl - (((p - ah * bh) - al * bh) - ah * bl)


def _gamma(n: int) -> float:
    return n * _U / (1.0 - n * _U)


@dataclass(frozen=True)
class Coef:
    """A coefficient ``a`` held as a float64 expansion ``a ≈ Σ parts``.

    ``exact`` is the coefficient as a rational (scalar coefficients); ``None`` means the parts sum
    to the coefficient exactly (per-element coefficients, e.g. Tiger's per-row learning rate).
    ``rel_err`` bounds ``|Σ parts − a| / |a|`` (0 when the expansion is exact).
    """

    parts: tuple[np.ndarray | float, ...]
    exact: Fraction | None = None
    rel_err: float = 0.0

    @classmethod
    def of(cls, value: Fraction | float | int, max_parts: int = 3) -> Coef:
        """Expand an exact rational into at most ``max_parts`` non-overlapping float64 parts."""
        q = Fraction(value)
        parts: list[float] = []
        rest = q
        for _ in range(max_parts):
            if rest == 0:
                break
            head = float(rest)
            if head == 0.0:  # the rest lies below the smallest subnormal
                break
            parts.append(head)
            rest -= Fraction(head)
        rel = float(abs(rest) / abs(q)) if q else 0.0
        return cls(tuple(parts), q, rel * (1.0 + 2.0**-50))

    @property
    def is_zero(self) -> bool:
        if self.exact is not None:
            return self.exact == 0
        return all(np.all(np.asarray(p) == 0) for p in self.parts)

    def value(self) -> np.ndarray | float:
        """The coefficient rounded to float64 (the head of the expansion; IEEE path only)."""
        total: np.ndarray | float = 0.0
        for p in self.parts:
            total = total + p
        return total


@dataclass(frozen=True)
class Term:
    """One product ``coef · x``. ``unit`` marks an ``x`` whose elements are all in {−1, 0, +1} (a
    sign), whose products with the coefficient parts are exact."""

    coef: Coef
    x: np.ndarray
    unit: bool = False


def _fraction_to_float(q: Fraction) -> float:
    try:
        return float(q)
    except OverflowError:
        return float("inf") if q > 0 else float("-inf")


def _exact_element(terms: Sequence[Term], flat: Sequence[np.ndarray], parts_flat: list,
                   idx: int) -> Fraction:
    total = Fraction(0)
    for t, x, parts in zip(terms, flat, parts_flat, strict=True):
        xv = x[idx]
        if xv == 0:
            continue
        if t.coef.exact is not None:
            a = t.coef.exact
        else:
            a = sum((Fraction(float(p[idx] if isinstance(p, np.ndarray) else p)) for p in parts),
                    Fraction(0))
        total += a * Fraction(float(xv))
    return total


def sum_of_products(terms: Sequence[Term], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate ``Σ coef_i · x_i`` elementwise; return ``(value, sign)`` as new float64 arrays.

    ``value`` is within ``ORACLE_REL_ERR·|r| + ORACLE_ABS_ERR`` of the exact result ``r`` for finite
    inputs; ``sign`` is the exact sign of ``r`` (−1, 0, +1), or NaN where ``value`` is NaN. Terms
    with an exactly zero coefficient are dropped before evaluation. All ``x`` (and array coefficient
    parts) must already have ``shape``.

    >>> import numpy as np
    >>> x = np.array([1.0, 1e-17, 3.0])
    >>> v, s = sum_of_products([Term(Coef.of(1), x), Term(Coef.of(-1), np.ones(3))], (3,))
    >>> v.tolist(), s.tolist()
    ([0.0, -1.0, 2.0], [0.0, -1.0, 1.0])
    """
    terms = [t for t in terms if not t.coef.is_zero]
    size = int(np.prod(shape, dtype=np.int64))
    value = np.zeros(size, dtype=np.float64)
    sign = np.zeros(size, dtype=np.float64)
    if not terms or size == 0:
        return value.reshape(shape), sign.reshape(shape)
    flat = [np.ascontiguousarray(t.x, dtype=np.float64).reshape(-1) for t in terms]
    parts_flat = [
        tuple(np.ascontiguousarray(p).reshape(-1) if isinstance(p, np.ndarray) else float(p)
              for p in t.coef.parts)
        for t in terms
    ]
    n_products = sum(len(p) for p in parts_flat)
    g2 = _gamma(n_products + 1) ** 2
    coef_err = max(t.coef.rel_err for t in terms)
    slow: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        for start in range(0, size, _CHUNK):
            sl = slice(start, min(start + _CHUNK, size))
            xs = [x[sl] for x in flat]
            finite = np.ones(sl.stop - sl.start, dtype=bool)
            for x in xs:
                finite &= np.isfinite(x)
            for parts in parts_flat:  # per-element coefficients (Tiger's η per row) may be Inf/NaN
                for p in parts:
                    if isinstance(p, np.ndarray):
                        finite &= np.isfinite(p[sl])
            bad = np.zeros_like(finite)
            total = None
            comp = None
            abs_sum = np.zeros_like(xs[0])
            naive = np.zeros_like(xs[0])
            for t, x, parts in zip(terms, xs, parts_flat, strict=True):
                head = 0.0
                for p in parts:
                    a = p[sl] if isinstance(p, np.ndarray) else p
                    head = head + a
                    if t.unit or (not isinstance(a, np.ndarray) and abs(a) == 1.0):
                        prod, err = a * x, None
                    else:
                        prod, err = two_prod(a, x)
                        bad |= (np.abs(x) > _SPLIT_MAX) | (np.abs(a) > _SPLIT_MAX)
                        bad |= (np.abs(prod) < _PROD_MIN) & (x != 0) & (a != 0)
                    abs_sum += np.abs(prod)
                    if total is None:
                        total = prod
                        comp = err if err is not None else np.zeros_like(prod)
                    else:
                        total, q = two_sum(total, prod)
                        comp = comp + (q if err is None else q + err)
                naive = naive + head * x
            result = total + comp
            bound = (g2 + coef_err) * abs_sum
            ok = finite & ~bad & np.isfinite(result) & np.isfinite(abs_sum)
            ok &= (bound <= _U * np.abs(result)) & ((result != 0) | (abs_sum == 0))
            out = value[sl]
            out[:] = np.where(finite, result, naive)
            sign[sl] = np.where(np.isnan(out), np.nan, np.sign(out))
            redo = np.flatnonzero(finite & ~ok)
            if redo.size:
                slow.append(redo + start)
    for idx in np.concatenate(slow) if slow else ():
        q = _exact_element(terms, flat, parts_flat, int(idx))
        value[idx] = _fraction_to_float(q)
        sign[idx] = (q > 0) - (q < 0)
    return value.reshape(shape), sign.reshape(shape)


def accurate_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sum along ``axis`` with a pairwise TwoSum tree; the result is within ``u·|S| + γ_L·u·Σ|x|``
    (L = ⌈log2 n⌉ + 1) of the exact sum S — for non-negative inputs, within ``(1 + γ_L)·u``
    relative, i.e. essentially correctly rounded.

    >>> float(accurate_sum(np.array([1.0, 1e-16, 1e-16, -1.0])))
    2e-16
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    errors = np.zeros(x.shape[:-1])
    while x.shape[-1] > 1:
        if x.shape[-1] % 2:
            x = np.concatenate([x, np.zeros((*x.shape[:-1], 1))], axis=-1)
        s, e = two_sum(x[..., 0::2], x[..., 1::2])
        errors = errors + e.sum(axis=-1)
        x = s
    head = x[..., 0] if x.shape[-1] else np.zeros(x.shape[:-1])
    return head + errors


def exact_square_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x² = hi + lo`` exactly (TwoProduct), valid while ``|x|`` is in [2**-485, 2**497]."""
    return two_prod(x, x)

"""Generate the golden vectors ``lion.json``, ``signum.json``, ``tiger.json`` from the exact oracle.

Usage::

    python -m lionspec.conformance.vectors.generate            # rewrite the committed files
    python -m lionspec.conformance.vectors.generate --out DIR  # write elsewhere
    python -m lionspec.conformance.vectors.generate --check    # exit 1 if the files are stale
    python conformance/vectors/generate.py ...                 # the same, from a checkout

Deterministic and offline: every random draw comes from :class:`random.Random` seeded with
:data:`SEED` and the case family's name, and only its ``random()`` method is used (the one method
whose sequence Python guarantees across versions); values are built from random bits with exact
operations, never with libm. Expected outputs come from :mod:`lionspec.spec.exact`, correctly
rounded to float64, so they do not depend on the platform, NumPy or mpmath versions. The only
environment-dependent field is the header's ``lionspec_version`` (``--lionspec-version`` pins it).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import struct
import sys
import zlib
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lionspec.conformance.vectors import encode_hex
from lionspec.spec import exact, formats

#: Master seed; each case family draws from ``Random(SEED ^ crc32(family name))``.
SEED = 0x1A5EC
SCHEMA_VERSION = "1.0.0"
GENERATOR = "lionspec.conformance.vectors.generate"
ALGORITHMS = ("lion", "signum", "tiger")
DTYPES = ("float64", "float32", "float16", "bfloat16")


_SEMANTICS = {
    "lion": (
        "Lion (canonical): c = beta1*m + (1-beta1)*g; param' = (1 - lr*weight_decay)*param - "
        "lr*sign(c); exp_avg' = beta2*m + (1-beta2)*g. Exact arithmetic on the exact float64 "
        "values of inputs and hyperparameters, then one rounding to nearest-even float64. "
        "direction = exact sign of c. Non-finite values follow the extended-real rules of "
        "SCHEMA.md (a term with an exactly zero coefficient is absent)."
    ),
    "signum": (
        "SIGNUM: exp_avg' = beta*m + (1-beta)*g; param' = (1 - lr*weight_decay)*param - "
        "lr*sign(exp_avg'). Exact arithmetic, one rounding to nearest-even float64. "
        "direction = exact sign of exp_avg'. Non-finite values: extended-real rules of SCHEMA.md."
    ),
    "tiger": (
        "Tiger per tensor, 0-based micro-step counter `step`, k = accumulation_steps: NaN rule "
        "(any NaN in grad: exp_avg kept, param' = (param - c)*shrink_ratio + c, c = 1 for role "
        "scale else 0); else exp_avg' = b1*m + ((1-beta)/k)*g with b1 = beta at step mod k == 0 "
        "else 1, and on (step+1) mod k == 0 param' = (1 - eta*lambda_r)*param - "
        "eta*sign(exp_avg'), else param' = param. bias/scale: eta = lr/2, lambda_r = 0; weight: "
        "eta = lr*RMS(param) over the tensor; embedding: per last-axis row; lambda_r = "
        "weight_decay. The state is carried EXACTLY from step to step of a case; each step's "
        "expected values are the exact state rounded to nearest-even float64 (irrational RMS "
        "values are resolved by Ziv's strategy, so the rounding is correct). direction = exact "
        "sign of exp_avg' after the step."
    ),
}


# ----------------------------------------------------------------------------- formats


def round_to(dtype: str, x: float) -> float:
    """x (a float64) rounded to ``dtype`` to nearest-even, returned as the float64 it equals."""
    return float(formats.round_to(x, dtype))


def _bits(dtype: str, x: float) -> tuple[int, int]:
    """(bit pattern, width) of x in dtype."""
    if dtype == "float64":
        return struct.unpack("<Q", struct.pack("<d", x))[0], 64
    if dtype == "float32":
        return struct.unpack("<I", struct.pack("<f", x))[0], 32
    if dtype == "float16":
        return struct.unpack("<H", struct.pack("<e", x))[0], 16
    return struct.unpack("<I", struct.pack("<f", x))[0] >> 16, 16


def _from_bits(dtype: str, b: int) -> float:
    if dtype == "float64":
        return struct.unpack("<d", struct.pack("<Q", b))[0]
    if dtype == "float32":
        return struct.unpack("<f", struct.pack("<I", b))[0]
    if dtype == "float16":
        return struct.unpack("<e", struct.pack("<H", b))[0]
    return struct.unpack("<f", struct.pack("<I", b << 16))[0]


def next_toward(dtype: str, x: float, up: bool) -> float:
    """The neighbour of x (a finite dtype value) in dtype, above (``up``) or below."""
    b, width = _bits(dtype, x)
    sign, mag = b >> (width - 1), b & ((1 << (width - 1)) - 1)
    if mag == 0:
        sign, mag = (0 if up else 1), 1
    elif (sign == 0) == up:
        mag += 1
    else:
        mag -= 1
    return _from_bits(dtype, (sign << (width - 1)) | mag)


def fmt_max(dtype: str) -> float:
    return float(formats.get_format(dtype).max)


def fmt_min_sub(dtype: str) -> float:
    return float(formats.get_format(dtype).subnormal_min)


def fmt_min_normal(dtype: str) -> float:
    return float(formats.get_format(dtype).tiny)


# ------------------------------------------------------------------------------ randomness


class Rng:
    """Deterministic draws built on ``random.Random.random()`` only (stable across Pythons)."""

    def __init__(self, family: str) -> None:
        self._r = random.Random(SEED ^ zlib.crc32(family.encode("ascii")))

    def below(self, n: int) -> int:
        return min(int(self._r.random() * n), n - 1)

    def bits(self, k: int) -> int:
        out, have = 0, 0
        while have < k:
            out = (out << 32) | int(self._r.random() * 2**32)
            have += 32
        return out >> (have - k)

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.below(len(seq))]

    def sign(self) -> int:
        return 1 if self.below(2) else -1

    def value(self, dtype: str, e_lo: int, e_hi: int, sign: int | None = None) -> float:
        """A dtype value ±(1 + f)·2^e, e uniform in [e_lo, e_hi], f with 52 random bits."""
        e = e_lo + self.below(e_hi - e_lo + 1)
        x = math.ldexp(1.0 + self.bits(52) / 2**52, e)
        return round_to(dtype, x * (sign if sign is not None else self.sign()))

    def values(self, dtype: str, n: int, e_lo: int, e_hi: int) -> list[float]:
        return [self.value(dtype, e_lo, e_hi) for _ in range(n)]

    def with_zeros(self, dtype: str, n: int, e_lo: int, e_hi: int, one_in: int) -> list[float]:
        """n values, each +0 or -0 unless a draw below ``one_in`` comes out 0."""
        return [
            self.choice([0.0, -0.0]) if self.below(one_in) else self.value(dtype, e_lo, e_hi)
            for _ in range(n)
        ]

    def subnormal(self, dtype: str) -> float:
        p = formats.get_format(dtype).p
        j = 1 + self.below(2 ** (p - 1) - 1)
        return self.sign() * j * fmt_min_sub(dtype)


def _size(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _to_f64(x: Fraction) -> float:
    return float(exact.to_float64([x])[0])


# ------------------------------------------------------------------------------ encoding


def _hp(x: float) -> dict[str, str]:
    x = float(x)
    return {"hex": encode_hex(x), "decimal": repr(x)}


def _enc_exact(arr: Any) -> list[str]:
    return [encode_hex(v) for v in exact.to_float64(arr).reshape(-1).tolist()]


def _enc_direction(arr: Any) -> list[int | str]:
    return ["nan" if math.isnan(s) else int(s) for s in exact.exact_sign(arr).reshape(-1).tolist()]


def _check_dtype(dtype: str, values: Iterable[float], what: str) -> None:
    for v in values:
        if not math.isnan(v) and round_to(dtype, v) != v:
            raise AssertionError(f"{what}: {v!r} is not a {dtype} value")


# ------------------------------------------------------------------------- case specifications
# A spec is a dict: edge_class, dtype, description, hp (floats/ints/strings), shape, param,
# exp_avg, and grad (Lion/SIGNUM) or steps = [(step, grad), ...] (Tiger); arrays are flat lists.

_SHAPES = [(), (1,), (5,), (2, 3), (4, 4), (3, 1, 2), (7,)]
_LRS = [1e-4, 3e-4, 1e-3, 1e-2, 0.1]


def _sign_weights(algorithm: str, hp: dict[str, Any], step: int = 0) -> tuple[Fraction, Fraction]:
    """(P, Q) with the sign-deciding quantity = P·m + Q·g."""
    if algorithm == "lion":
        b = Fraction(hp["beta1"])
        return b, 1 - b
    b = Fraction(hp["beta"])
    if algorithm == "signum":
        return b, 1 - b
    k = hp["accumulation_steps"]
    return (b if step % k == 0 else Fraction(1)), (1 - b) / k


def _default_hp(algorithm: str, rng: Rng, **over: Any) -> dict[str, Any]:
    if algorithm == "lion":
        hp: dict[str, Any] = {
            "lr": rng.choice(_LRS),
            "beta1": rng.choice([0.9, 0.95, 0.8]),
            "beta2": rng.choice([0.99, 0.98, 0.999]),
            "weight_decay": rng.choice([0.0, 0.0, 0.01, 0.1, 1.0]),
        }
    elif algorithm == "signum":
        hp = {
            "lr": rng.choice(_LRS),
            "beta": rng.choice([0.9, 0.95, 0.99]),
            "weight_decay": rng.choice([0.0, 0.0, 0.01, 0.1]),
        }
    else:
        hp = {
            "lr": rng.choice([1e-3, 3e-4, 1e-2, 0.1]),
            "beta": rng.choice([0.965, 0.945, 0.9]),
            "weight_decay": rng.choice([0.01, 0.1, 0.0]),
            "accumulation_steps": 1,
            "role": "weight",
            "shrink_ratio": 0.99,
        }
    hp.update(over)
    return hp


def _spec(
    algorithm: str,
    edge_class: str,
    dtype: str,
    description: str,
    hp: dict[str, Any],
    shape: Sequence[int],
    param: list[float],
    grad: list[float] | None,
    exp_avg: list[float],
    steps: list[tuple[int, list[float]]] | None = None,
) -> dict[str, Any]:
    """A case specification (see the comment above)."""
    if algorithm == "tiger":
        return {
            "edge_class": edge_class,
            "dtype": dtype,
            "description": description,
            "hp": hp,
            "shape": tuple(shape),
            "param": param,
            "exp_avg": exp_avg,
            "steps": steps,
        }
    return {
        "edge_class": edge_class,
        "dtype": dtype,
        "description": description,
        "hp": hp,
        "shape": tuple(shape),
        "param": param,
        "grad": grad,
        "exp_avg": exp_avg,
    }


def _near_cancel_m(dtype: str, g: float, p: Fraction, q: Fraction, offset: int) -> float:
    """A dtype value m next to −q·g/p (offset neighbours away), so that p·m + q·g ≈ 0."""
    m = round_to(dtype, _to_f64(-q * Fraction(g) / p))
    for _ in range(abs(offset)):
        m = next_toward(dtype, m, offset > 0)
    return m


def _specs_single(algorithm: str) -> list[dict[str, Any]]:
    """Cases for Lion or SIGNUM (single steps)."""
    a = algorithm
    beta_keys = ("beta1", "beta2") if a == "lion" else ("beta",)
    out: list[dict[str, Any]] = []

    def add(*args: Any, **kw: Any) -> None:
        out.append(_spec(a, *args, **kw))

    for dt in DTYPES:
        rng = Rng(f"{a}/{dt}")
        small = -10 if dt != "float16" else -8
        # random
        for i in range(16):
            shape = _SHAPES[i % len(_SHAPES)]
            n = _size(shape)
            hp = _default_hp(a, rng)
            add(
                "random",
                dt,
                "random values and typical hyperparameters",
                hp,
                shape,
                rng.values(dt, n, -6, 1),
                rng.values(dt, n, small, 2),
                rng.values(dt, n, small, 0),
            )
        # near cancellation: the sign argument within a few dtype ulps of 0
        for i in range(6):
            hp = _default_hp(a, rng, weight_decay=0.0 if i % 2 else 0.1)
            p, q = _sign_weights(a, hp)
            if a == "signum":
                hp["lr"] = 1e-3
            n = 7
            g = rng.values(dt, n, -6, 0)
            m = [_near_cancel_m(dt, gi, p, q, j - 3) for j, gi in enumerate(g)]
            what = "c" if a == "lion" else "m'"
            add(
                "near_cancellation",
                dt,
                f"exp_avg is the {dt} neighbours (-3..+3 ulps) of -(1-beta)*g/beta: {what} is "
                f"within a few ulps of 0 and its exact sign decides the step",
                hp,
                (n,),
                rng.values(dt, n, -3, 1),
                g,
                m,
            )
        # exact cancellation: beta = 1 - 2^-j, g = -(2^j - 1)*m
        for j in (1, 2, 3, 4):
            beta = 1 - 2.0**-j
            hp = _default_hp(a, rng, weight_decay=0.1, lr=0.01, **{beta_keys[0]: beta})
            n = 6
            m = [rng.sign() * (1 + 2 * rng.below(4)) * 2.0 ** (rng.below(6) - 8) for _ in range(n)]
            m[0] = 0.0
            g = [-(2**j - 1) * x for x in m]
            what = "c" if a == "lion" else "m'"
            add(
                "exact_cancellation",
                dt,
                f"beta = 1 - 2^-{j} and g = -(2^{j} - 1)*m: {what} is exactly 0, sign 0, so "
                f"param only decays",
                hp,
                (n,),
                rng.values(dt, n, -4, 1),
                g,
                m,
            )
        # zero grad
        for i in range(3):
            n = 6
            hp = _default_hp(a, rng, weight_decay=0.1 if i else 0.0)
            m = rng.values(dt, n, -6, 0)
            m[1] = 0.0
            m[2] = -0.0
            g = [(-0.0 if rng.below(2) else 0.0) for _ in range(n)]
            add(
                "zero_grad",
                dt,
                "grad is all +-0: the step follows sign(m), 0 where m is 0",
                hp,
                (n,),
                rng.values(dt, n, -4, 1),
                g,
                m,
            )
        # signed zeros
        for i in range(3):
            n = 8
            hp = _default_hp(a, rng, weight_decay=[0.0, 0.1, 1.0][i])

            add(
                "signed_zero",
                dt,
                "+0 and -0 mixed into param, grad and exp_avg (sign(+-0) = 0)",
                hp,
                (n,),
                rng.with_zeros(dt, n, -4, 0, 3),
                rng.with_zeros(dt, n, -6, 0, 3),
                rng.with_zeros(dt, n, -6, 0, 3),
            )
        # subnormal
        for i in range(4):
            n = 6
            hp = _default_hp(a, rng, weight_decay=[0.0, 0.1, 0.5, 0.0][i])
            desc = "grad and exp_avg subnormal in the input dtype"
            param = rng.values(dt, n, -4, 0)
            if i >= 2:
                param = [rng.subnormal(dt) for _ in range(n)]
                desc += "; param subnormal too"
                if i == 3:
                    hp["lr"] = 4 * fmt_min_sub(dt)
                    desc += "; lr = 4 * the smallest subnormal of the dtype"
            g = [rng.subnormal(dt) for _ in range(n)]
            m = [rng.subnormal(dt) for _ in range(n)]
            if i == 0:
                g[0], m[0], g[1], m[1] = fmt_min_sub(dt), 0.0, -fmt_min_sub(dt), -0.0
                desc += (
                    "; elements 0 and 1: g = +-(smallest subnormal), m = 0, so the sign "
                    "argument is (1-beta)*g (it rounds to 0 in float64 for float64 inputs)"
                )
            if i == 1:
                m[0] = _near_cancel_m(dt, g[0], *_sign_weights(a, hp), 0)
            add("subnormal", dt, desc, hp, (n,), param, g, m)
        # NaN
        nan = math.nan
        for i in range(4):
            n = 5
            param = rng.values(dt, n, -4, 0)
            g = rng.values(dt, n, -6, 0)
            m = rng.values(dt, n, -6, 0)
            if i == 0:
                hp = _default_hp(a, rng, weight_decay=0.1)
                g[1] = nan
                desc = "NaN grad element: that param and exp_avg element become NaN, others not"
            elif i == 1:
                hp = _default_hp(a, rng, lr=0.0, weight_decay=0.1)
                g[0] = g[3] = nan
                desc = "NaN grad with lr = 0: param unchanged (the lr term is absent)"
            elif i == 2:
                hp = _default_hp(a, rng, **{beta_keys[0]: 0.0})
                m[2] = nan
                desc = (
                    "NaN exp_avg with beta1 = 0: c = g (the m term is absent); exp_avg' is NaN"
                    if a == "lion"
                    else "NaN exp_avg with beta = 0 (signSGD): the m term is absent"
                )
            else:
                hp = _default_hp(a, rng, lr=0.5, weight_decay=2.0)
                param[0] = nan
                param[4] = nan
                g[4] = nan
                desc = (
                    "NaN param with lr*weight_decay = 1: the param term is absent, "
                    "param' = -lr*sign"
                )
            add("nan", dt, desc, hp, (n,), param, g, m)
        # inf
        inf = math.inf
        for i in range(4):
            n = 5
            param = rng.values(dt, n, -4, 0)
            g = rng.values(dt, n, -6, 0)
            m = rng.values(dt, n, -6, 0)
            if i == 0:
                hp = _default_hp(a, rng)
                g[0], g[1], m[2], m[3], g[3] = inf, -inf, inf, inf, -inf
                desc = "infinite grad / exp_avg; +inf and -inf together give NaN"
            elif i == 1:
                hp = _default_hp(a, rng, **{beta_keys[0]: 0.0})
                m[0], m[1] = inf, -inf
                desc = "infinite exp_avg with beta(1) = 0: the m term is absent"
            elif i == 2:
                hp = _default_hp(a, rng, weight_decay=0.0)
                param[0], param[1] = inf, -inf
                desc = "infinite param, weight_decay = 0: param stays infinite"
            else:
                hp = _default_hp(a, rng, lr=1.0, weight_decay=1.5)
                param[0], param[1], param[2] = inf, -inf, inf
                g[2] = nan
                desc = (
                    "infinite param with lr*weight_decay > 1: the sign of infinity flips; "
                    "a NaN grad element too"
                )
            add("inf", dt, desc, hp, (n,), param, g, m)
        # large magnitude
        big = fmt_max(dt)
        for i in range(3):
            n = 4
            hp = _default_hp(a, rng)
            param = [big, -big, next_toward(dt, big, False), rng.value(dt, 0, 2)]
            g = [big, -big, big, -big]
            m = [-big, big, big, next_toward(dt, -big, True)]
            desc = "values at the largest finite value of the dtype"
            if dt == "float64" and i > 0:
                hp["lr"] = [2.0**1023, 1e300][i - 1]
                hp["weight_decay"] = [0.0, 1e-10][i - 1]
                desc += f"; lr = {hp['lr']!r}: the exact result overflows float64 to +-inf"
            add("large_magnitude", dt, desc, hp, (n,), param, g, m)
        # update order
        for i in range(4):
            n = 6
            hp = _default_hp(a, rng, weight_decay=0.0)
            if a == "lion":
                hp.update(beta1=0.9, beta2=0.99)
                ks = [20 + 60 * rng.below(1000) / 1000 for _ in range(n)]
                desc = "g = -K*m with 9 < K < 99: sign(c) differs from sign(beta2*m + (1-beta2)*g)"
            else:
                hp.update(beta=0.9)
                lo, hi = (12, 60) if i % 2 == 0 else (1.5, 7)
                ks = [lo + (hi - lo) * rng.below(1000) / 1000 for _ in range(n)]
                desc = (
                    "g = -K*m with K > beta/(1-beta): sign(m') = sign(g) != sign(m)"
                    if i % 2 == 0
                    else "g = -K*m with K < beta/(1-beta): sign(m') = sign(m) != sign(g)"
                )
            m = rng.values(dt, n, -6, 0)
            g = [round_to(dt, -k * x) for k, x in zip(ks, m, strict=True)]
            add("update_order", dt, desc, hp, (n,), rng.values(dt, n, -4, 1), g, m)
        # decoupled decay
        for lr, wd in ((1e-3, 0.1), (0.1, 1.0), (0.5, 2.0), (1.0, 3.0)):
            n = 5
            hp = _default_hp(a, rng, lr=lr, weight_decay=wd)
            add(
                "decay_lambda_positive",
                dt,
                f"weight_decay > 0, lr*weight_decay = {lr * wd!r} (1 makes the param term absent, "
                f"> 1 flips the sign of param)",
                hp,
                (n,),
                rng.values(dt, n, -4, 2),
                rng.values(dt, n, -6, 0),
                rng.values(dt, n, -6, 0),
            )
        # lr = 0
        for wd in (0.0, 0.1):
            n = 4
            hp = _default_hp(a, rng, lr=0.0, weight_decay=wd)
            add(
                "lr_zero",
                dt,
                "lr = 0: param unchanged, exp_avg still updated",
                hp,
                (n,),
                rng.values(dt, n, -4, 1),
                rng.values(dt, n, -6, 0),
                rng.values(dt, n, -6, 0),
            )
        # beta edges
        edge_betas = (
            [{"beta1": 0.0, "beta2": 0.0}, {"beta1": 0.999999, "beta2": 2.0**-30}]
            if a == "lion"
            else [{"beta": 0.0}, {"beta": 0.999999}]
        )
        for over in edge_betas:
            n = 5
            hp = _default_hp(a, rng, **over)
            add(
                "beta_edge",
                dt,
                f"extreme momentum coefficients {over}",
                hp,
                (n,),
                rng.values(dt, n, -4, 1),
                rng.values(dt, n, -6, 0),
                rng.values(dt, n, -6, 0),
            )
    # shape edges (float64 only)
    rng = Rng(f"{a}/shape_edge")
    for shape in ((0,), (2, 0), ()):
        n = _size(shape)
        hp = _default_hp(a, rng)
        add(
            "shape_edge",
            "float64",
            f"shape {list(shape)}",
            hp,
            shape,
            rng.values("float64", n, -4, 0),
            rng.values("float64", n, -6, 0),
            rng.values("float64", n, -6, 0),
        )
    return out


def _specs_tiger() -> list[dict[str, Any]]:
    a = "tiger"
    out: list[dict[str, Any]] = []
    roles = ("weight", "embedding", "bias", "scale")
    nan, inf = math.nan, math.inf

    def add(
        edge_class: str,
        dt: str,
        desc: str,
        hp: dict[str, Any],
        shape: Sequence[int],
        param: list[float],
        exp_avg: list[float],
        steps: list[tuple[int, list[float]]],
    ) -> None:
        out.append(_spec(a, edge_class, dt, desc, hp, shape, param, None, exp_avg, steps))

    def window(rng: Rng, dt: str, k: int, n: int, start: int) -> list[tuple[int, list[float]]]:
        return [(start + j, rng.values(dt, n, -8, 1)) for j in range(k)]

    for dt in DTYPES:
        rng = Rng(f"{a}/{dt}")
        v = rng.values
        # random single steps
        for i in range(6):
            role = roles[i % 4]
            shape = [(5,), (2, 3), (3, 4), (4,), (2, 2, 3), (6,)][i]
            n = _size(shape)
            hp = _default_hp(a, rng, role=role)
            param = (
                v(dt, n, -3, 0)
                if role != "scale"
                else [round_to(dt, 1 + x / 8) for x in v(dt, n, -4, 0)]
            )
            add(
                "random",
                dt,
                f"random single step, role {role}",
                hp,
                shape,
                param,
                v(dt, n, -8, -1),
                [(rng.below(1000), v(dt, n, -8, 1))],
            )
        # roles
        for role in roles:
            for i in range(3):
                if role == "embedding":
                    shape = [(3, 4), (2, 2, 3), (5,)][i]
                elif role == "weight":
                    shape = [(6,), (2, 3), ()][i]
                else:
                    shape = [(4,), (6,), ()][i]
                n = _size(shape)
                hp = _default_hp(a, rng, role=role, weight_decay=[0.01, 0.1, 0.0][i])
                param = v(dt, n, -4, 1)
                if role == "scale":
                    param = [round_to(dt, 1 + x / 4) for x in param]
                desc = {
                    "weight": "eta = lr*RMS(param) over the whole tensor, decay inside",
                    "embedding": "eta = lr*RMS(param) per last-axis row (1-D: one row)",
                    "bias": "eta = lr/2, no weight decay",
                    "scale": "eta = lr/2, no weight decay (param near 1)",
                }[role]
                if role == "embedding" and i == 0:
                    param[4:8] = [0.0, -0.0, 0.0, 0.0]
                    desc += "; row 1 is all zeros: RMS 0, that row does not move"
                add(
                    f"role_{role}",
                    dt,
                    desc,
                    hp,
                    shape,
                    param,
                    v(dt, n, -8, -1),
                    [(rng.below(100), v(dt, n, -8, 1))],
                )
        # accumulation windows (state carried exactly)
        for i, k in enumerate((2, 3, 3, 4)):
            n = 5
            role = roles[i]
            hp = _default_hp(a, rng, role=role, accumulation_steps=k)
            if k == 3:
                hp["beta"] = (0.965, 0.945)[i - 1]
            start = k * rng.below(50)
            steps = window(rng, dt, k, n, start)
            desc = (
                f"one window of k = {k} micro-steps from step {start}: param moves only on the last"
            )
            share = (1 - Fraction(hp["beta"])) / k
            if share.denominator & (share.denominator - 1):
                desc += f"; (1-beta)/{k} is not a binary fraction"
            if i == 3:
                steps += window(rng, dt, k, n, start + k)
                desc += "; then a second window"
            add("accumulation_window", dt, desc, hp, (n,), v(dt, n, -3, 0), v(dt, n, -8, -1), steps)
        # NaN on a non-update micro-step
        for i, (k, at, role) in enumerate(((3, 1, "weight"), (3, 0, "scale"), (2, 0, "bias"))):
            n = 4
            hp = _default_hp(a, rng, role=role, accumulation_steps=k)
            start = k * rng.below(50)
            steps = window(rng, dt, k, n, start)
            steps[at][1][i % n] = nan
            param = v(dt, n, -3, 0)
            if role == "scale":
                param = [round_to(dt, 1 + x / 4) for x in param]
            desc = (
                f"NaN grad on micro-step {at} of a k = {k} window: param shrinks toward "
                f"{1 if role == 'scale' else 0}, exp_avg is kept"
            )
            if at == 0:
                desc += "; at the window's first micro-step, so beta never decays this window"
            add("nan_non_update_step", dt, desc, hp, (n,), param, v(dt, n, -8, -1), steps)
        # NaN on update steps
        for i, (role, s) in enumerate(
            (("weight", 0.99), ("scale", 0.99), ("bias", 1.0), ("weight", 0.99))
        ):
            n = 4
            hp = _default_hp(a, rng, role=role, shrink_ratio=s)
            param = v(dt, n, -3, 0)
            g = v(dt, n, -8, 1)
            if i == 3:
                param[1] = nan
                desc = "NaN param (no NaN grad), role weight: RMS is NaN, the whole tensor is NaN"
            else:
                g[2] = nan
                desc = f"NaN grad on an update step, role {role}, shrink_ratio {s}: shrink only"
            if role == "scale":
                param = [round_to(dt, 1 + x / 4) for x in param]
            add("nan", dt, desc, hp, (n,), param, v(dt, n, -8, -1), [(rng.below(100), g)])
        # inf
        for i in range(3):
            n = 4
            role = ("weight", "weight", "bias")[i]
            hp = _default_hp(a, rng, role=role, weight_decay=0.01)
            param = v(dt, n, -3, 0)
            g = v(dt, n, -8, 1)
            m = v(dt, n, -8, -1)
            if i == 0:
                g[0], g[1] = inf, -inf
                desc = "infinite grad is not caught by the NaN rule: exp_avg' is infinite"
            elif i == 1:
                param[0] = inf
                param[2] = 0.0
                desc = (
                    "infinite param, role weight: RMS and eta are infinite; decay coefficient "
                    "-inf, 0*inf = NaN where param or sign is 0"
                )
            else:
                param[0], param[1] = inf, -inf
                m[3], g[3] = inf, -inf
                desc = "infinite param, role bias: stays infinite; inf - inf in m' gives NaN"
            add("inf", dt, desc, hp, (n,), param, m, [(rng.below(100), g)])
        # near cancellation of m'
        for i in range(3):
            n = 7
            k = 1 if i < 2 else 2
            hp = _default_hp(a, rng, role=roles[i], accumulation_steps=k, weight_decay=0.0)
            t = k - 1 + k * rng.below(20)
            p, q = _sign_weights(a, hp, t)
            g = v(dt, n, -6, 0)
            m = [_near_cancel_m(dt, gi, p, q, j - 3) for j, gi in enumerate(g)]
            add(
                "near_cancellation",
                dt,
                f"exp_avg next to -(weight of g)/(weight of m)*g: m' within a few ulps of 0 "
                f"(k = {k}, step {t})",
                hp,
                (n,),
                v(dt, n, -3, 0),
                m,
                [(t, g)],
            )
        # exact cancellation
        for beta, k, role in ((0.5, 1, "weight"), (0.25, 3, "bias")):
            n = 5
            hp = _default_hp(a, rng, role=role, beta=beta, accumulation_steps=k, weight_decay=0.1)
            t = k - 1
            p, q = _sign_weights(a, hp, t)
            m = [rng.sign() * (1 + 2 * rng.below(4)) * 2.0 ** (rng.below(6) - 8) for _ in range(n)]
            g = [float(-p * Fraction(x) / q) for x in m]
            add(
                "exact_cancellation",
                dt,
                f"beta = {beta}, k = {k}, step {t}: m' is exactly 0, so param only decays "
                f"(weight) or stays (bias)",
                hp,
                (n,),
                v(dt, n, -3, 0),
                m,
                [(t, g)],
            )
        # zero grad, signed zero
        for i in range(2):
            n = 6
            hp = _default_hp(a, rng, role=roles[i])
            m = v(dt, n, -8, -1)
            m[0] = -0.0
            add(
                "zero_grad",
                dt,
                "grad all zero: m' = beta*m",
                hp,
                (n,),
                v(dt, n, -3, 0),
                m,
                [(0, [(-0.0 if rng.below(2) else 0.0) for _ in range(n)])],
            )
        for i in range(2):
            n = 6
            hp = _default_hp(a, rng, role=roles[2 + i])

            add(
                "signed_zero",
                dt,
                "+0 and -0 in param, grad and exp_avg",
                hp,
                (n,),
                rng.with_zeros(dt, n, -3, 0, 2),
                rng.with_zeros(dt, n, -8, -1, 2),
                [(0, rng.with_zeros(dt, n, -8, 0, 2))],
            )
        # subnormal
        for i in range(2):
            n = 5
            hp = _default_hp(a, rng, role=("bias", "weight")[i])
            param = v(dt, n, -3, 0) if i == 0 else [rng.subnormal(dt) for _ in range(n)]
            add(
                "subnormal",
                dt,
                "grad and exp_avg subnormal in the input dtype"
                + ("; param subnormal too (tiny RMS)" if i else ""),
                hp,
                (n,),
                param,
                [rng.subnormal(dt) for _ in range(n)],
                [(0, [rng.subnormal(dt) for _ in range(n)])],
            )
        # large magnitude
        big = fmt_max(dt)
        for i in range(2):
            n = 4
            hp = _default_hp(a, rng, role=roles[i * 2], weight_decay=0.1)
            add(
                "large_magnitude",
                dt,
                "values at the largest finite value of the dtype",
                hp,
                (n,),
                [big, -big, rng.value(dt, 0, 2), next_toward(dt, big, False)],
                [-big, big, big, -big],
                [(0, [big, -big, -big, big])],
            )
        # decay
        for lr, wd in ((0.1, 1.0), (1.0, 10.0)):
            n = 5
            hp = _default_hp(a, rng, lr=lr, weight_decay=wd)
            add(
                "decay_lambda_positive",
                dt,
                f"weight role with lr = {lr}, weight_decay = {wd}: the decay is scaled by "
                f"eta = lr*RMS (inside the bracket)",
                hp,
                (n,),
                v(dt, n, -3, 1),
                v(dt, n, -8, -1),
                [(0, v(dt, n, -8, 1))],
            )
        # update order
        for i in range(2):
            n = 6
            hp = _default_hp(a, rng, role=roles[i], beta=0.965, weight_decay=0.0)
            lo, hi = (35, 100) if i == 0 else (2, 20)
            m = v(dt, n, -8, -1)
            g = [round_to(dt, -(lo + (hi - lo) * rng.below(1000) / 1000) * x) for x in m]
            add(
                "update_order",
                dt,
                "g = -K*m with K "
                + ("> " if i == 0 else "< ")
                + "beta/(1-beta): sign(m') = "
                + ("sign(g) != sign(m)" if i == 0 else "sign(m) != sign(g)"),
                hp,
                (n,),
                v(dt, n, -3, 0),
                m,
                [(0, g)],
            )
        # lr = 0, zero RMS
        n = 4
        hp = _default_hp(a, rng, lr=0.0, weight_decay=0.1)
        add(
            "lr_zero",
            dt,
            "lr = 0: param unchanged, exp_avg updated",
            hp,
            (n,),
            v(dt, n, -3, 0),
            v(dt, n, -8, -1),
            [(0, v(dt, n, -8, 1))],
        )
        hp = _default_hp(a, rng, weight_decay=0.1)
        add(
            "zero_rms",
            dt,
            "role weight with param all zero: RMS = 0, eta = 0, param stays 0",
            hp,
            (n,),
            [0.0, -0.0, 0.0, 0.0],
            v(dt, n, -8, -1),
            [(0, v(dt, n, -8, 1))],
        )
    rng = Rng("tiger/shape_edge")
    for shape, role in (((0,), "weight"), ((3, 0), "embedding"), ((), "weight"), ((), "embedding")):
        n = _size(shape)
        hp = _default_hp(a, rng, role=role)
        add(
            "shape_edge",
            "float64",
            f"shape {list(shape)}, role {role}",
            hp,
            shape,
            rng.values("float64", n, -3, 0),
            rng.values("float64", n, -8, -1),
            [(0, rng.values("float64", n, -8, 1))],
        )
    return out


# ------------------------------------------------------------------------------ evaluation


def _hyper_json(hp: dict[str, Any]) -> dict[str, Any]:
    return {k: (_hp(x) if isinstance(x, float) else x) for k, x in hp.items()}


def _kwargs(hp: dict[str, Any]) -> dict[str, Any]:
    return dict(hp)


def _evaluate_single(algorithm: str, spec: dict[str, Any]) -> dict[str, Any]:
    shape, hp = spec["shape"], spec["hp"]
    param, grad, m = (
        np.array(spec[k], dtype=np.float64).reshape(shape) for k in ("param", "grad", "exp_avg")
    )
    if algorithm == "lion":
        p1, m1 = exact.lion_step_exact(param, grad, m, **_kwargs(hp))
        direction = exact.lion_interp_exact(grad, m, beta1=hp["beta1"])
    else:
        p1, m1 = exact.signum_step_exact(param, grad, m, **_kwargs(hp))
        direction = m1
    return {
        "inputs": {k: [encode_hex(x) for x in spec[k]] for k in ("param", "grad", "exp_avg")},
        "expected": {
            "param": _enc_exact(p1),
            "exp_avg": _enc_exact(m1),
            "direction": _enc_direction(direction),
        },
    }


def _evaluate_tiger(spec: dict[str, Any]) -> dict[str, Any]:
    shape, hp = spec["shape"], dict(spec["hp"])
    theta: Any = np.array(spec["param"], dtype=np.float64).reshape(shape)
    m: Any = np.array(spec["exp_avg"], dtype=np.float64).reshape(shape)
    k = hp["accumulation_steps"]
    steps = []
    for t, grad in spec["steps"]:
        g = np.array(grad, dtype=np.float64).reshape(shape)
        theta, m = exact.tiger_step_exact(theta, g, m, step=t, **_kwargs(hp))
        nan_rule = any(math.isnan(x) for x in grad)
        steps.append(
            {
                "step": t,
                "grad": [encode_hex(x) for x in grad],
                "nan_rule": nan_rule,
                "updates_param": (not nan_rule) and (t + 1) % k == 0,
                "expected": {
                    "param": _enc_exact(theta),
                    "exp_avg": _enc_exact(m),
                    "direction": _enc_direction(m),
                },
            }
        )
    return {
        "inputs": {k2: [encode_hex(x) for x in spec[k2]] for k2 in ("param", "exp_avg")},
        "steps": steps,
    }


def _case(algorithm: str, spec: dict[str, Any], index: int) -> dict[str, Any]:
    dt = spec["dtype"]
    arrays = [spec["param"], spec["exp_avg"]]
    arrays += [g for _, g in spec["steps"]] if algorithm == "tiger" else [spec["grad"]]
    for arr in arrays:
        if len(arr) != _size(spec["shape"]):
            raise AssertionError(f"{algorithm} {spec['edge_class']}: wrong number of values")
        _check_dtype(dt, arr, f"{algorithm} {spec['edge_class']}")
    body = _evaluate_tiger(spec) if algorithm == "tiger" else _evaluate_single(algorithm, spec)
    case: dict[str, Any] = {
        "id": f"{algorithm}-{spec['edge_class']}-{dt}-{index:02d}",
        "edge_class": spec["edge_class"],
        "input_dtype": dt,
        "description": spec["description"],
        "hyperparameters": _hyper_json(spec["hp"]),
        "shape": list(spec["shape"]),
    }
    case.update(body)
    return case


def _version(override: str | None) -> str:
    if override is not None:
        return override
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "unknown"
    try:
        return version("lionspec")
    except PackageNotFoundError:
        return "unknown"


def generate(algorithm: str, *, lionspec_version: str | None = None) -> dict[str, Any]:
    """The vector document of ``algorithm`` (header and cases) as a dict."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    specs = _specs_tiger() if algorithm == "tiger" else _specs_single(algorithm)
    counters: dict[tuple[str, str], int] = {}
    cases = []
    for spec in specs:
        key = (spec["edge_class"], spec["dtype"])
        counters[key] = counters.get(key, 0) + 1
        cases.append(_case(algorithm, spec, counters[key]))
    return {
        "schema_version": SCHEMA_VERSION,
        "algorithm": algorithm,
        "generator": GENERATOR,
        "generator_seed": SEED,
        "lionspec_version": _version(lionspec_version),
        "semantics": _SEMANTICS[algorithm],
        "case_count": len(cases),
        "cases": cases,
    }


def render(document: dict[str, Any]) -> str:
    """Serialise a vector document: header fields one per line, then one case per line."""
    lines = ["{"]
    for key, value in document.items():
        if key != "cases":
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    lines.append('  "cases": [')
    cases = document["cases"]
    for i, case in enumerate(cases):
        sep = "," if i + 1 < len(cases) else ""
        lines.append("    " + json.dumps(case, separators=(",", ":")) + sep)
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_all(
    out_dir: str | Path,
    *,
    lionspec_version: str | None = None,
    algorithms: Sequence[str] = ALGORITHMS,
) -> list[Path]:
    """Write ``<algorithm>.json`` for each algorithm into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for algorithm in algorithms:
        path = out / f"{algorithm}.json"
        text = render(generate(algorithm, lionspec_version=lionspec_version))
        path.write_bytes(text.encode("ascii"))
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=here, help="output directory (default: %(default)s)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the files in --out differ from a regeneration",
    )
    parser.add_argument(
        "--lionspec-version",
        default=None,
        help="header lionspec_version (default: the installed version; with "
        "--check: the version recorded in each file)",
    )
    args = parser.parse_args(argv)
    if args.check:
        bad = []
        for algorithm in ALGORITHMS:
            path = args.out / f"{algorithm}.json"
            version = args.lionspec_version
            if version is None and path.exists():
                version = json.loads(path.read_text(encoding="ascii")).get("lionspec_version")
            text = render(generate(algorithm, lionspec_version=version))
            if not path.exists() or path.read_text(encoding="ascii") != text:
                bad.append(str(path))
        for p in bad:
            print(f"out of date: {p}", file=sys.stderr)
        return 1 if bad else 0
    for path in write_all(args.out, lionspec_version=args.lionspec_version):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

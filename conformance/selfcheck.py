"""Self-check of the float64 oracle: against the golden vectors and against the exact oracle.

This is what ``lionspec selfcheck`` runs, and the comparison functions here are the ones the test
suite uses, so the contract is stated once:

* a sign decision must equal the exact sign;
* a finite value must be within ``ORACLE_REL_ERR·|exact| + ORACLE_ABS_ERR`` of the exact value
  (plus an ``extra`` allowance where the spec states one: Tiger's irrational RMS);
* a non-finite value must be the same non-finite value (NaN ↔ NaN, ±Inf equal), and a result that
  overflows must be the correctly rounded ±Inf.

>>> from lionspec.conformance.selfcheck import check_vectors
>>> report = check_vectors("lion")
>>> report.failures, report.checked > 100
([], True)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from lionspec import spec
from lionspec.conformance import vectors
from lionspec.spec import exact as ex

__all__ = ["Report", "check_random", "check_vectors", "sign_mismatches", "value_mismatches"]

_U = 2.0**-53


def _hex(x: float) -> str:
    return vectors.encode_hex(x)


def value_mismatches(name: str, got: np.ndarray, want: np.ndarray,
                     extra: np.ndarray | None = None) -> list[str]:
    """One line per element of ``got`` (float64) that breaks the oracle contract against ``want``
    (exact values: Fraction / mpmath.mpf, or float NaN/±Inf)."""
    rounded = ex.to_float64(want).ravel()
    out = []
    for i, (g, w) in enumerate(zip(np.asarray(got).ravel().tolist(), want.ravel().tolist(),
                                   strict=True)):
        line = f"{name}[{i}]: observed {_hex(g)} expected {_hex(rounded[i])}"
        if not isinstance(w, (Fraction, mpmath.mpf)):
            if not ((math.isnan(g) and math.isnan(w)) or g == w):
                out.append(line)
            continue
        if math.isinf(g) or math.isnan(g):
            if g != rounded[i]:
                out.append(line)
            continue
        tol = spec.ORACLE_REL_ERR * abs(float(w)) * (1 + 4 * _U) + spec.ORACLE_ABS_ERR
        if extra is not None:
            tol += float(np.asarray(extra).ravel()[i])
        with mpmath.workprec(1200):
            exact = (mpmath.mpf(w.numerator) / w.denominator if isinstance(w, Fraction) else w)
            diff = abs(mpmath.mpf(g) - exact)
            if diff > mpmath.mpf(tol):
                out.append(f"{line}: differs by {mpmath.nstr(diff, 5)}, bound {tol:.5g}")
    return out


def sign_mismatches(name: str, got: np.ndarray, want: np.ndarray) -> list[str]:
    """One line per element whose sign decision ``got`` differs from the exact signs ``want``."""
    got, want = np.asarray(got, dtype=float).ravel(), np.asarray(want, dtype=float).ravel()
    bad = ~((got == want) | (np.isnan(got) & np.isnan(want)))
    return [f"{name}[{i}]: sign observed {got[i]} exact {want[i]}" for i in np.flatnonzero(bad)]


def _ulp_allowance(expected: np.ndarray) -> np.ndarray:
    """Half an ulp of each stored (correctly rounded) expectation: the distance from it to the
    exact value it was rounded from."""
    with np.errstate(all="ignore"):
        a = np.abs(expected)
        half = (np.nextafter(a, np.inf) - a) / 2
    return np.where(np.isfinite(half), half, 0.0)


def _bound_vs_rounded(name: str, got: np.ndarray, expected: np.ndarray,
                      extra: np.ndarray | None) -> list[str]:
    """Compare with a stored correctly-rounded value: exact lies within half an ulp of it."""
    allowance = _ulp_allowance(expected) + (0.0 if extra is None else extra)
    want = np.array([Fraction(x) if math.isfinite(x) else x for x in expected.ravel().tolist()],
                    dtype=object).reshape(expected.shape)
    return value_mismatches(name, got, want, allowance)


def _rms_extra(theta: np.ndarray, hyper: dict[str, Any]) -> np.ndarray | None:
    role = hyper.get("role", "weight")
    if role not in ("weight", "embedding") or theta.size == 0:
        return None
    with np.errstate(all="ignore"):
        eta = spec.tiger_lr(theta, lr=hyper["lr"], role=role) * (1 + 4 * _U)
        extra = spec.RMS_REL_ERR * eta * (1.0 + hyper.get("weight_decay", 0.01) * np.abs(theta))
    return np.where(np.isfinite(extra), extra, 0.0)


@dataclass
class Report:
    """What a self-check compared (``checked`` cases) and every mismatch, one line each."""

    name: str
    checked: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _vector_steps(algorithm: str, case: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    hyper = case["hyperparameters"]
    inputs = case["inputs"]
    theta, m = inputs["param"], inputs["exp_avg"]
    if algorithm != "tiger":
        g = inputs["grad"]
        exp = case["expected"]
        if algorithm == "lion":
            p, new_m = spec.lion_step(theta, g, m, **hyper)
            _, d = spec.lion_interp(g, m, beta1=hyper.get("beta1", 0.9))
        else:
            p, new_m = spec.signum_step(theta, g, m, **hyper)
            _, d = spec.signum_momentum(g, m, beta=hyper.get("beta", 0.9))
        yield case["id"], (_bound_vs_rounded("param", p, exp["param"], None)
                           + _bound_vs_rounded("exp_avg", new_m, exp["exp_avg"], None)
                           + sign_mismatches("direction", d, exp["direction"]))
        return
    # The vectors carry Tiger's state exactly between micro-steps; we restart each step from the
    # stored float64 state, which is within half an ulp of the exact one. That reload error enters
    # the next step with a coefficient of magnitude <= 1 (b1 <= 1 for m; keep <= 1 and the
    # shrink ratio <= 1 for θ), so it is added to the allowance, and a sign difference counts only
    # where |m'| exceeds the allowance.
    reload_p = reload_m = None
    for s in case["steps"]:
        g, exp = s["grad"], s["expected"]
        kw = {k: val for k, val in hyper.items() if k != "step"}
        extra = _rms_extra(theta, kw) if s["updates_param"] and not s["nan_rule"] else None
        if reload_p is not None:
            extra = reload_p if extra is None else extra + reload_p
        p, new_m = spec.tiger_step(theta, g, m, step=s["step"], **kw)
        lines = (_bound_vs_rounded("param", p, exp["param"], extra)
                 + _bound_vs_rounded("exp_avg", new_m, exp["exp_avg"], reload_m))
        if not s["nan_rule"]:
            _, d = spec.tiger_momentum(g, m, step=s["step"], beta=kw.get("beta", 0.965),
                                       accumulation_steps=kw.get("accumulation_steps", 1))
            decided = np.ones(d.shape, dtype=bool) if reload_m is None else (
                np.abs(exp["exp_avg"]) > reload_m + _ulp_allowance(exp["exp_avg"]))
            lines += sign_mismatches("direction", np.where(decided, d, exp["direction"]),
                                     exp["direction"])
        yield f"{case['id']} step {s['step']}", lines
        theta, m = exp["param"], exp["exp_avg"]
        reload_p, reload_m = _ulp_allowance(theta), _ulp_allowance(m)


def check_vectors(algorithm: str) -> Report:
    """Run the float64 oracle on every golden vector of ``algorithm``."""
    report = Report(f"golden vectors: {algorithm}")
    for raw in vectors.cases(algorithm):
        case = vectors.decode_case(raw)
        for label, lines in _vector_steps(algorithm, case):
            report.checked += 1
            report.failures += [f"{label}: {line}" for line in lines]
    return report


def _random_inputs(rng: np.random.Generator, n: int, beta: float) -> tuple[np.ndarray, ...]:
    """Adversarial float64 inputs: wide magnitudes, subnormals, signed zeros, cancellation."""
    mags = 10.0 ** rng.uniform(-320, 300, size=n) * rng.choice([-1.0, 1.0], size=n)
    m = np.where(rng.random(n) < 0.5, rng.normal(size=n), mags)
    m[rng.random(n) < 0.05] = -0.0
    g = rng.normal(size=n) * 10.0 ** rng.uniform(-20, 20, size=n)
    near = rng.random(n) < 0.5
    if beta > 0:
        with np.errstate(all="ignore"):
            target = -beta * m / (1.0 - beta)
        for i in np.flatnonzero(near & np.isfinite(target)):
            x = target[i]
            for _ in range(int(rng.integers(0, 4))):
                x = np.nextafter(x, np.inf if rng.random() < 0.5 else -np.inf)
            g[i] = x
    g[rng.random(n) < 0.05] = 0.0
    theta = rng.normal(size=n) * 10.0 ** rng.uniform(-5, 5, size=n)
    return theta, g, m


def check_random(algorithm: str, cases: int = 200, seed: int = 0) -> Report:
    """Compare the float64 oracle with the exact oracle on ``cases`` fresh adversarial cases."""
    if cases < 0:
        raise ValueError(f"cases must be >= 0, got {cases}")
    rng = np.random.default_rng(seed)
    report = Report(f"exact oracle: {algorithm} ({cases} cases, seed {seed})")
    for i in range(cases):
        beta = float(rng.choice([0.0, 0.5, 0.9, 0.95, 0.965, 0.99, 0.999]))
        lr = float(rng.choice([1e-4, 1e-3, 0.1]))
        wd = float(rng.choice([0.0, 0.01, 0.1]))
        theta, g, m = _random_inputs(rng, 8, beta)
        label = f"case {i} (seed {seed})"
        if algorithm == "lion":
            kw = dict(lr=lr, beta1=beta, beta2=0.99, weight_decay=wd)
            got, want = spec.lion_step(theta, g, m, **kw), ex.lion_step_exact(theta, g, m, **kw)
            _, d = spec.lion_interp(g, m, beta1=beta)
            lines = sign_mismatches("sign(c)", d, ex.exact_sign(
                ex.lion_interp_exact(g, m, beta1=beta)))
            extra = None
        elif algorithm == "signum":
            kw = dict(lr=lr, beta=beta, weight_decay=wd)
            got, want = spec.signum_step(theta, g, m, **kw), ex.signum_step_exact(theta, g, m, **kw)
            _, d = spec.signum_momentum(g, m, beta=beta)
            lines = sign_mismatches("sign(m')", d, ex.exact_sign(want[1]))
            extra = None
        else:
            role = str(rng.choice(["weight", "embedding", "bias", "scale"]))
            k = int(rng.integers(1, 4))
            kw = dict(step=k - 1, lr=lr, beta=beta, weight_decay=wd, accumulation_steps=k,
                      role=role)
            shape = (2, 4)
            theta, g, m = theta.reshape(shape), g.reshape(shape), m.reshape(shape)
            got, want = spec.tiger_step(theta, g, m, **kw), ex.tiger_step_exact(theta, g, m, **kw)
            _, d = spec.tiger_momentum(g, m, step=k - 1, beta=beta, accumulation_steps=k)
            lines = sign_mismatches("sign(m')", d, ex.exact_sign(want[1]))
            extra = _rms_extra(theta, kw)
        lines += value_mismatches("param", got[0], want[0], extra)
        lines += value_mismatches("exp_avg", got[1], want[1], None)
        report.checked += 1
        report.failures += [f"{label} {kw}: {line}" for line in lines]
    return report

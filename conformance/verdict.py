"""Per-element verdicts of one optimizer step against the spec, with derived bounds.

Given the exact inputs of one step (the values an implementation stored: float64 arrays holding
values of its storage dtypes), what it produced, its hyperparameters and its declared
:class:`Arithmetic`, :func:`judge_step` classifies every element of the new parameter and momentum:

* ``EXACT`` — equal to the spec's value correctly rounded into the storage dtype;
* ``WITHIN`` — within the derived bound of the spec's value (lionspec.spec.bounds);
* ``AMBIGUOUS`` — the implementation took the other sign, but the decision variable (Lion's c,
  SIGNUM's and Tiger's new momentum) is within its rounding bound of 0, so a correctly rounded
  implementation may legitimately flip; the value matches the flipped update within the bound;
* ``FAILURE`` — anything else, reported one line per element with hex inputs, TestFloat style:
  ``param[i]: θ=… g=… m=… => observed … expected …: reason, bound …``.

Non-finite results must match exactly (NaN ↔ NaN, ±Inf equal); Tiger's θ on a non-update micro-step
and its momentum on a NaN-rule step must be bit-for-bit unchanged.

>>> import numpy as np
>>> p, g, m = np.array([1.0, 2.0]), np.array([0.5, -0.25]), np.zeros(2)
>>> from lionspec.spec import lion_step
>>> new_p, new_m = lion_step(p, g, m, lr=0.125)   # a float64 implementation that is the spec
>>> v = judge_step("lion", p, g, m, new_p, new_m, hyper={"lr": 0.125},
...                arithmetic=Arithmetic(compute="float64"))
>>> v.ok, v.counts()["param"]
(True, {'exact': 2, 'within bound': 0, 'ambiguous flip': 0, 'failure': 0})
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lionspec import spec
from lionspec.spec import bounds
from lionspec.spec.formats import get_format, round_to
from lionspec.spec.variations import VARIATIONS

__all__ = ["AMBIGUOUS", "EXACT", "FAILURE", "VERDICT_NAMES", "WITHIN", "Arithmetic",
           "StepVerdict", "judge_step"]

EXACT, WITHIN, AMBIGUOUS, FAILURE = 0, 1, 2, 3
VERDICT_NAMES = {EXACT: "exact", WITHIN: "within bound", AMBIGUOUS: "ambiguous flip",
                 FAILURE: "failure"}
_U64 = 2.0**-53


@dataclass(frozen=True)
class Arithmetic:
    """How an implementation evaluates a step: the arithmetic part of its variation profile.

    ``compute`` is the precision of its arithmetic; ``param_storage``/``momentum_storage`` the
    dtypes it stores θ and m in (default: ``compute``); ``c_form`` the evaluation form of
    β·m + (1 − β)·g (:data:`lionspec.spec.bounds.C_FORMS`); ``param_form`` and
    ``storage_roundings`` those of θ − η·(s + λθ) (:func:`lionspec.spec.bounds.param_update_bound`);
    ``rms_summation_depth`` the depth of the summation tree of Tiger's RMS when declared (``None``:
    any order, the recursive worst case).
    """

    compute: str = "float32"
    param_storage: str | None = None
    momentum_storage: str | None = None
    c_form: str = "universal"
    param_form: str = "universal"
    storage_roundings: int = 1
    rms_summation_depth: int | None = None

    @property
    def param_dtype(self) -> str:
        return self.param_storage or self.compute

    @property
    def momentum_dtype(self) -> str:
        return self.momentum_storage or self.compute


@dataclass
class StepVerdict:
    """Verdict codes per element of the new parameter and momentum, and one line per failure."""

    algorithm: str
    param: np.ndarray
    exp_avg: np.ndarray
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (np.any(self.param == FAILURE) or np.any(self.exp_avg == FAILURE))

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: {VERDICT_NAMES[c]: int(np.count_nonzero(codes == c)) for c in VERDICT_NAMES}
                for name, codes in (("param", self.param), ("exp_avg", self.exp_avg))}

    def report(self, limit: int = 20) -> str:
        head = ", ".join(f"{k}: {v}" for k, v in self.counts().items())
        more = len(self.lines) - limit
        return "\n".join([f"{self.algorithm}: {head}", *self.lines[:limit]]
                         + ([f"... and {more} more"] if more > 0 else []))


def _hex(x: float) -> str:
    return float(x).hex() if math.isfinite(x) else repr(float(x))


def _same_nonfinite(obs: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (np.isnan(obs) & np.isnan(want)) | (obs == want)


def _decision(algorithm: str, g: np.ndarray, m: np.ndarray, hyper: dict[str, Any],
              a: Arithmetic) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decision variable (Lion's c, SIGNUM's/Tiger's new momentum) before it is stored: its
    value, exact sign, and the bound on an implementation's error in computing it."""
    if algorithm == "lion":
        beta = hyper.get("beta1", 0.9)
        d, sign = spec.lion_interp(g, m, beta1=beta)
        return d, sign, bounds.c_error_bound(m, g, beta, form=a.c_form, compute=a.compute)
    beta = hyper.get("beta", 0.9 if algorithm == "signum" else 0.965)
    if algorithm == "signum":
        d, sign = spec.signum_momentum(g, m, beta=beta)
        return d, sign, bounds.c_error_bound(m, g, beta, form=a.c_form, compute=a.compute)
    k = hyper.get("accumulation_steps", 1)
    d, sign = spec.tiger_momentum(g, m, step=hyper["step"], beta=beta, accumulation_steps=k)
    return d, sign, _tiger_momentum_bound(g, m, hyper, a, storage=None)


def _tiger_momentum_bound(g: np.ndarray, m: np.ndarray, hyper: dict[str, Any], a: Arithmetic,
                          storage: str | None) -> np.ndarray:
    beta = hyper.get("beta", 0.965)
    k = hyper.get("accumulation_steps", 1)
    if k == 1:
        return bounds.momentum_update_bound(m, g, beta, form=a.c_form, compute=a.compute,
                                            storage=storage)
    first = hyper["step"] % k == 0
    w64 = (1.0 - beta) / k  # float64: within 2 roundings (2·2**-53 relative) of (1 − β)/k
    return bounds.axpby_error_bound(beta if first else 1.0, m, w64, g, compute=a.compute,
                                    storage=storage, b_err=w64 * 2 * _U64 * (1 + 2.0**-40))


def _momentum_bound(algorithm: str, g: np.ndarray, m: np.ndarray, hyper: dict[str, Any],
                    a: Arithmetic) -> np.ndarray:
    if algorithm == "tiger":
        return _tiger_momentum_bound(g, m, hyper, a, a.momentum_dtype)
    beta = hyper.get("beta2", 0.99) if algorithm == "lion" else hyper.get("beta", 0.9)
    return bounds.momentum_update_bound(m, g, beta, form=a.c_form, compute=a.compute,
                                        storage=a.momentum_dtype)


def _eta_lambda(algorithm: str, theta: np.ndarray, hyper: dict[str, Any], a: Arithmetic
                ) -> tuple[np.ndarray, float, np.ndarray]:
    """(η per element, λ, extra bound on |Δθ| from an η that is not a user value)."""
    lr, wd = hyper["lr"], hyper.get("weight_decay", 0.0 if algorithm != "tiger" else 0.01)
    if algorithm != "tiger":
        return np.full(theta.shape, float(lr)), float(wd), np.zeros(theta.shape)
    role = hyper.get("role", "weight")
    eta = spec.tiger_lr(theta, lr=lr, role=role)
    if role in ("bias", "scale"):
        return eta, 0.0, np.zeros(theta.shape)
    n = theta.shape[-1] if role == "embedding" and theta.ndim else max(theta.size, 1)
    u = get_format(a.compute).u
    # rms_relative_error covers fl(sqrt(fl(S / n))). Implementations also write fl(fl(√S) / fl(√n))
    # (torch's vector_norm divided by √n): the rounding of √n and the division replace the one
    # of S / n, i.e. at most 1.5u more on the RMS. Squares that underflow add at most
    # n·(ε/2)/S <= u relative where S >= n·tiny (implementations rescale below that, as the
    # bound's own precondition asks). With the rounding of η = fl(rms·α): 1.5u + u + u = 3.5u.
    rel = (bounds.rms_relative_error(n, compute=a.compute, summation_depth=a.rms_summation_depth)
           + float(bounds.coefficient_error(lr, a.compute)) / lr + 3.5 * u if lr else 0.0)
    rel += spec.RMS_REL_ERR
    extra = rel * (1 + 2 * rel) * eta * (1.0 + wd * np.abs(theta))
    return eta, float(wd), extra


def _classify_values(obs: np.ndarray, want: np.ndarray, bound: np.ndarray, storage: str
                     ) -> np.ndarray:
    """EXACT / WITHIN / FAILURE for finite expectations; non-finite must match."""
    codes = np.full(obs.shape, FAILURE, dtype=np.int8)
    finite = np.isfinite(want)
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = round_to(want, storage)
        within = finite & np.isfinite(obs) & (np.abs(obs - want) <= bound)
    codes[within] = WITHIN
    codes[finite & (obs == rounded)] = EXACT
    codes[~finite & _same_nonfinite(obs, want)] = EXACT
    return codes


def judge_step(algorithm: str, param: Any, grad: Any, exp_avg: Any, new_param: Any,
               new_exp_avg: Any, *, hyper: dict[str, Any], arithmetic: Arithmetic,
               variation: str = "canonical") -> StepVerdict:
    """Judge one step of ``algorithm`` ("lion", "signum", "tiger") per element.

    ``param``, ``grad``, ``exp_avg`` are the step's exact inputs and ``new_param``,
    ``new_exp_avg`` its outputs, all as float64 arrays of the stored values; ``hyper`` are the
    keyword arguments of the spec's step function (Tiger's include ``step`` and ``role``).

    ``variation`` (a name of :data:`lionspec.spec.VARIATIONS`) replaces the spec's expected
    values by that variation's, keeping the canonical bounds: this is how the conformance suite
    *diagnoses* a deviation ("consistent with coupled L2 weight decay"), not a verdict of
    conformance. The bounds then stand for the same evaluation of a slightly different
    expression (θ·k − η·s with another k, or another s), which they cover as long as |θ| and η
    are of the same size, as they are in every variation.
    """
    if algorithm not in ("lion", "signum", "tiger"):
        raise ValueError(f"algorithm must be 'lion', 'signum' or 'tiger', got {algorithm!r}")
    a = arithmetic
    theta, g, m, obs_p, obs_m = (np.asarray(x, dtype=np.float64)
                                 for x in (param, grad, exp_avg, new_param, new_exp_avg))
    shape = theta.shape
    step_fn = {"lion": spec.lion_step, "signum": spec.signum_step, "tiger": spec.tiger_step}
    if variation == "canonical":
        want_p, want_m = step_fn[algorithm](theta, g, m, **hyper)
    else:
        want_p, want_m = VARIATIONS[variation].step(algorithm, theta, g, m, **hyper)
    var = VARIATIONS[variation]
    policy = var.nan_policy or ("shrink" if algorithm == "tiger" else "propagate")
    flagged = np.isnan(g).any() if var.nan_check == "nan" else not np.isfinite(g).all()
    tiger_rule = algorithm == "tiger" and policy == "shrink" and bool(flagged)
    tiger_hold = algorithm == "tiger" and not tiger_rule and (
        (hyper["step"] + 1) % hyper.get("accumulation_steps", 1) != 0)
    with np.errstate(all="ignore"):
        m_bound = None if tiger_rule else _momentum_bound(algorithm, g, m, hyper, a)
        if tiger_rule:
            role = hyper.get("role", "weight")
            p_bound = bounds.shrink_error_bound(theta, hyper.get("shrink_ratio", 0.99),
                                                float(spec.SHRINK_CENTRE[role]),
                                                compute=a.compute, storage=a.param_dtype)
            decision = None
        elif not tiger_hold:
            decision = _decision(algorithm, g, m, hyper, a)
            eta, lam, eta_extra = _eta_lambda(algorithm, theta, hyper, a)
    # everything below is elementwise: work on flat views, report multi-indices
    flat = {k: v.reshape(-1) for k, v in dict(theta=theta, g=g, m=m, obs_p=obs_p, obs_m=obs_m,
                                              want_p=want_p, want_m=want_m).items()}
    lines: list[str] = []

    def fail(name: str, bad: np.ndarray, obs: np.ndarray, want: np.ndarray, reason: str,
             bound: np.ndarray | None = None) -> None:
        for i in np.flatnonzero(bad):
            where = ", ".join(map(str, np.unravel_index(i, shape))) if shape else ""
            b = "" if bound is None else f", bound {float(bound[i]):.3g}"
            lines.append(f"{name}[{where}]: θ={_hex(flat['theta'][i])} g={_hex(flat['g'][i])} "
                         f"m={_hex(flat['m'][i])} => observed {_hex(obs[i])} expected "
                         f"{_hex(want[i])}: {reason}{b}")

    # --- momentum -------------------------------------------------------------------------
    if tiger_rule:
        m_codes = _bitwise(flat["obs_m"], flat["m"])
        fail("exp_avg", m_codes == FAILURE, flat["obs_m"], flat["m"],
             "the NaN rule keeps the momentum unchanged")
    else:
        mb = m_bound.reshape(-1) + _oracle_err(flat["want_m"])
        m_codes = _classify_values(flat["obs_m"], flat["want_m"], mb, a.momentum_dtype)
        fail("exp_avg", m_codes == FAILURE, flat["obs_m"], flat["want_m"],
             "value outside the bound", mb)

    # --- parameter ------------------------------------------------------------------------
    if tiger_hold:
        p_codes = _bitwise(flat["obs_p"], flat["theta"])
        fail("param", p_codes == FAILURE, flat["obs_p"], flat["theta"],
             "θ must be bit-for-bit unchanged on a non-final micro-step")
    elif tiger_rule:
        pb = p_bound.reshape(-1) + _oracle_err(flat["want_p"])
        p_codes = _classify_values(flat["obs_p"], flat["want_p"], pb, a.param_dtype)
        fail("param", p_codes == FAILURE, flat["obs_p"], flat["want_p"],
             "NaN-rule shrink outside the bound", pb)
    else:
        p_codes, flips, pb = _judge_param(flat, decision, eta.reshape(-1), lam,
                                          eta_extra.reshape(-1), a,
                                          diagnosing=variation != "canonical")
        fail("param", flips, flat["obs_p"], flat["want_p"],
             "sign flip where |decision| exceeds its bound", pb)
        fail("param", (p_codes == FAILURE) & ~flips, flat["obs_p"], flat["want_p"],
             "value outside the bound", pb)
    return StepVerdict(algorithm, p_codes.reshape(shape), m_codes.reshape(shape), lines)


def _oracle_err(want: np.ndarray) -> np.ndarray:
    """The float64 oracle's own distance to the exact value (its stated contract)."""
    with np.errstate(invalid="ignore"):
        return spec.ORACLE_REL_ERR * np.abs(want) + spec.ORACLE_ABS_ERR


def _bitwise(obs: np.ndarray, want: np.ndarray) -> np.ndarray:
    same = obs.view(np.uint64) == want.view(np.uint64)
    return np.where(same, EXACT, FAILURE).astype(np.int8)


def _judge_param(flat: dict[str, np.ndarray], decision: tuple[np.ndarray, ...], eta: np.ndarray,
                 lam: float, eta_extra: np.ndarray, a: Arithmetic, diagnosing: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes for θ' where the sign decision matters; returns (codes, hard sign flips, bound).

    ``diagnosing`` (judging against a variation): where the canonical sign is NaN but the
    variation's θ' is finite (a NaN policy other than propagation), the direction the variation
    took is read back from its θ' (−1, 0 or +1) and judged like any other.
    """
    d, sign, c_bound = (x.reshape(-1) for x in decision)
    if diagnosing:
        th, wp = flat["theta"], flat["want_p"]
        with np.errstate(all="ignore"):
            taken = np.clip(np.round((th * (1.0 - eta * lam) - wp) / eta), -1.0, 1.0)
        sign = np.where(~np.isfinite(sign) & np.isfinite(wp) & (eta > 0), taken, sign)
    th, ob, wp = flat["theta"], flat["obs_p"], flat["want_p"]
    codes = np.full(th.shape, FAILURE, dtype=np.int8)
    bound = np.zeros(th.shape)
    flips = np.zeros(th.shape, dtype=bool)
    finite = np.isfinite(wp) & np.isfinite(sign)
    codes[~finite & _same_nonfinite(ob, wp)] = EXACT
    if not finite.any():
        return codes, flips, bound
    idx = np.flatnonzero(finite)
    t, o, w, s0, et = th[idx], ob[idx], wp[idx], sign[idx], eta[idx]
    extra = eta_extra[idx] + _oracle_err(w)

    def param_bound(direction: np.ndarray) -> np.ndarray:
        return bounds.param_update_bound(
            t, et, lam, direction, compute=a.compute, storage=a.param_dtype,
            storage_roundings=a.storage_roundings, form=a.param_form) + extra

    b0 = param_bound(s0)
    sub = np.where(np.abs(o - w) <= b0, WITHIN, FAILURE).astype(np.int8)
    sub[(sub == WITHIN) & (o == round_to(w, a.param_dtype))] = EXACT
    # the other two directions: allowed only where |decision| is within its rounding bound of 0,
    # and never where m = g = 0 (the decision is then exactly 0 in every arithmetic; the bound's
    # underflow terms are not zero there, so this is said explicitly)
    structural_zero = (flat["m"][idx] == 0) & (flat["g"][idx] == 0)
    ambiguous_ok = (np.abs(d[idx]) <= np.abs(c_bound[idx]) + _oracle_err(d[idx])) & ~structural_zero
    hard = np.zeros(idx.shape, dtype=bool)
    for s in (-1.0, 0.0, 1.0):
        alt = (s0 != s) & (sub == FAILURE)
        if alt.any():
            cand = w + et * (s0 - s)  # float64: error <= 2**-52·(|θ'| + 2η)
            b_alt = param_bound(np.full(t.shape, s)) + 2.0**-52 * (np.abs(w) + 2 * et)
            match = alt & (np.abs(o - cand) <= b_alt)
            sub[match & ambiguous_ok] = AMBIGUOUS
            hard |= match & ~ambiguous_ok
    codes[idx], flips[idx], bound[idx] = sub, hard & (sub == FAILURE), b0
    return codes, flips, bound

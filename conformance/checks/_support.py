"""What every check is made of: the registry, the run context, trace judging and diagnosis.

A check is a function ``run(ctx) -> CheckResult`` registered with :func:`check` under a stable
id. The context carries the target, its profile, the suite profile's settings and a seeded RNG;
:func:`judge_trace` judges every step of a trace per element (check, then resync: each step is
judged from the target's *own* stored inputs, so one legitimate sign flip cannot cascade), and
:func:`diagnose` names the variation of the spec that explains a deviation, if one does.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lionspec import spec
from lionspec.spec.formats import round_to
from lionspec.spec.variations import VARIATIONS

from ..ftz import judge_step_ftz
from ..target import AdapterError, Case, Target, Trace
from ..verdict import VERDICT_NAMES, judge_step

__all__ = ["CHECKS", "Check", "CheckResult", "Context", "Settings", "TraceVerdict", "check",
           "diagnose", "judge_trace"]

PASS, FAIL, SKIP, ERROR = "pass", "fail", "skip", "error"


@dataclass(frozen=True)
class Settings:
    """How hard a suite profile looks: hypothesis examples, steps per trace, tensor sizes,
    whether draws are derandomized (reproducible run to run), the base seed, and whether a
    failing case is shrunk to a minimal one (a drawn case is reported either way)."""

    name: str
    max_examples: int
    steps: int
    max_size: int
    derandomize: bool
    seed: int = 0
    resyncs: int = 3
    shrink: bool = True


@dataclass
class CheckResult:
    """The outcome of one check on one target."""

    id: str
    status: str
    summary: str = ""
    diagnosis: str = ""
    variation: str | None = None
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    repro: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "summary": self.summary,
                "diagnosis": self.diagnosis, "variation": self.variation,
                "counts": self.counts, "failures": self.lines, "repro": self.repro,
                "seconds": round(self.seconds, 3)}


@dataclass
class Context:
    """Everything a check may use."""

    target: Target
    settings: Settings
    rng: np.random.Generator

    @property
    def algorithm(self) -> str:
        return self.target.algorithm

    @property
    def profile(self) -> Any:
        return self.target.profile

    def dtypes(self) -> tuple[str, ...]:
        return self.profile.dtypes

    def run(self, case: Case) -> Trace:
        return self.target.adapter.run(case)


@dataclass(frozen=True)
class Check:
    """A named property with a stable id."""

    id: str
    title: str
    doc: str
    algorithms: tuple[str, ...]
    requires: tuple[str, ...]
    fn: Callable[[Context], CheckResult]

    def applies(self, target: Target) -> str | None:
        """``None`` if the check applies to ``target``, else the reason it is skipped."""
        if target.algorithm not in self.algorithms:
            return f"not applicable to {target.algorithm}"
        missing = [c for c in self.requires if not target.profile.has(c)]
        if missing:
            return f"target lacks {', '.join(missing)}"
        return None

    def run(self, ctx: Context) -> CheckResult:
        reason = self.applies(ctx.target)
        start = time.perf_counter()
        if reason is not None:
            result = CheckResult(self.id, SKIP, reason)
        else:
            try:
                result = self.fn(ctx)
            except AdapterError as exc:  # the target lacks what the check needs
                result = CheckResult(self.id, SKIP, f"not supported by the target: {exc}")
            except Exception as exc:  # noqa: BLE001 - a target's crash is its result, not ours
                result = CheckResult(self.id, ERROR, f"the target raised {type(exc).__name__}: "
                                     f"{exc}", lines=traceback.format_exc(limit=6).splitlines())
        result.seconds = time.perf_counter() - start
        return result


#: Every check by id, in registration (documentation) order.
CHECKS: dict[str, Check] = {}


def check(id: str, title: str, *, algorithms: Sequence[str] = ("lion", "signum", "tiger"),
          requires: Sequence[str] = ()) -> Callable[[Callable[[Context], CheckResult]], Check]:
    """Register ``fn`` as check ``id``; its docstring is the check's documentation."""
    def register(fn: Callable[[Context], CheckResult]) -> Check:
        if id in CHECKS:
            raise ValueError(f"duplicate check id {id!r}")
        c = Check(id, title, (fn.__doc__ or "").strip(), tuple(algorithms), tuple(requires), fn)
        CHECKS[id] = c
        return c
    return register


# ------------------------------------------------------------------------------------ judging

@dataclass
class TraceVerdict:
    """Per-element verdicts of every step of a trace, aggregated."""

    counts: dict[str, int]
    lines: list[str]
    failing_steps: list[tuple[int, int]]  # (step, tensor)

    @property
    def ok(self) -> bool:
        return not self.failing_steps


def _hyper(case: Case, t: int, i: int, variation: str) -> dict[str, Any]:
    """The spec's keyword arguments; ``decay:lr_independent`` divides by the lr the target was
    constructed with (as every implementation of it found does), not the step's."""
    hyper = case.spec_hyper(t, i)
    if variation == "decay:lr_independent":
        hyper["lr_max"] = case.lr_at(0)
    return hyper


def _spec_momentum(case: Case, t: int, i: int, theta: np.ndarray, m: np.ndarray,
                   variation: str) -> np.ndarray:
    hyper = _hyper(case, t, i, variation)
    if variation == "canonical":
        step = {"lion": spec.lion_step, "signum": spec.signum_step,
                "tiger": spec.tiger_step}[case.algorithm]
        return step(theta, case.grads[t][i], m, **hyper)[1]
    return VARIATIONS[variation].step(case.algorithm, theta, case.grads[t][i], m, **hyper)[1]


def judge_trace(case: Case, trace: Trace, target: Target, *, variation: str = "canonical",
                steps: Sequence[int] | None = None, limit: int = 20) -> TraceVerdict:
    """Judge each step ``t`` of ``trace`` from the target's own stored inputs (θ_t, m_t) with
    :func:`~lionspec.conformance.verdict.judge_step`; where the momentum is not observable, the
    spec's momentum is carried along instead (then only θ is judged)."""
    totals = dict.fromkeys(VERDICT_NAMES.values(), 0)
    lines: list[str] = []
    failing: list[tuple[int, int]] = []
    carried: list[np.ndarray] | None = None
    for t in range(case.steps):
        observed_m = trace.momenta[t]
        m_in = observed_m if observed_m is not None else carried
        if m_in is None:
            m_in = [np.zeros(np.shape(p)) for p in case.params]
        carried = []
        for i in range(len(case.params)):
            theta, g, m = trace.params[t][i], case.grads[t][i], m_in[i]
            arithmetic = target.profile.arithmetic(case.dtype_of(i), case.momentum_dtype)
            new_m_obs = trace.momenta[t + 1][i] if trace.momenta[t + 1] is not None else None
            with np.errstate(all="ignore"):
                want_m = _spec_momentum(case, t, i, theta, m, variation)
            carried.append(new_m_obs if new_m_obs is not None
                           else round_to(want_m, arithmetic.momentum_dtype))
            if steps is not None and t not in steps:
                continue
            judge = judge_step_ftz if target.profile.ftz else judge_step
            v = judge(case.algorithm, theta, g, m, trace.params[t + 1][i],
                      want_m if new_m_obs is None else new_m_obs,
                      hyper=_hyper(case, t, i, variation), arithmetic=arithmetic,
                      variation=variation)
            for codes in (v.param, v.exp_avg if new_m_obs is not None else np.array([])):
                for code, name in VERDICT_NAMES.items():
                    totals[name] += int(np.count_nonzero(codes == code))
            if not v.ok:
                failing.append((t, i))
                lines.extend(f"step {t} tensor {i}: {line}" for line in v.lines)
    return TraceVerdict(totals, lines[:limit] + ([f"... and {len(lines) - limit} more"]
                                                  if len(lines) > limit else []), failing)


def diagnose(case: Case, trace: Trace, target: Target) -> str | None:
    """The first variation (declared ones first) under which the whole trace has no failure."""
    names = [n for n in target.profile.variations if n in VARIATIONS]
    names += [n for n in VARIATIONS if n not in names and n != "canonical"]
    for name in names:
        if target.algorithm not in VARIATIONS[name].algorithms:
            continue
        if name == "decay:coupled":
            ok = judge_trace(_as_coupled(case, trace, target), trace, target, limit=0).ok
        else:
            ok = judge_trace(case, trace, target, variation=name, limit=0).ok
        if ok:
            return name
    return None


def _as_coupled(case: Case, trace: Trace, target: Target) -> Case:
    """Coupled L2 decay *is* the canonical step without decay on the gradient
    ``g' = fl(g + λ·θ_t)``, one rounding in the target's compute precision, with θ_t the
    target's own stored parameter: judged that way, the canonical bounds apply exactly."""
    lam = float(case.hyper.get("weight_decay", 0.0))
    grads = []
    for t, step in enumerate(case.grads):
        row = []
        for i, g in enumerate(step):
            compute = target.profile.compute_for(case.dtype_of(i), case.momentum_dtype)
            with np.errstate(all="ignore"):
                row.append(round_to(g + lam * trace.params[t][i], compute))
        grads.append(tuple(row))
    return case.with_(grads=tuple(grads), hyper={**case.hyper, "weight_decay": 0.0})


def describe_variation(name: str) -> str:
    v = VARIATIONS[name]
    return f"consistent with {name}: {v.summary} (found in {v.found})"


def outcome(check_id: str, case: Case, trace: Trace, target: Target, *,
            what: str) -> CheckResult:
    """A :class:`CheckResult` for one judged trace: pass, or fail with the per-element lines, the
    reproducing case and a diagnosis."""
    v = judge_trace(case, trace, target)
    if v.ok:
        return CheckResult(check_id, PASS, f"{what}: every element conforms", counts=v.counts)
    name = diagnose(case, trace, target)
    return CheckResult(check_id, FAIL, f"{what}: {len(v.failing_steps)} (step, tensor) pairs "
                       "deviate", diagnosis=describe_variation(name) if name else
                       "no known variation explains it", variation=name, lines=v.lines,
                       counts=v.counts, repro=case.describe())


def merge(check_id: str, results: Sequence[CheckResult]) -> CheckResult:
    """One result from several sub-results (the first failure wins; counts add up)."""
    counts: dict[str, int] = {}
    for r in results:
        for k, n in r.counts.items():
            counts[k] = counts.get(k, 0) + n
    for r in results:
        if r.status in (FAIL, ERROR):
            return CheckResult(check_id, r.status, r.summary, r.diagnosis, r.variation, r.lines,
                               counts, r.repro)
    summaries = "; ".join(r.summary for r in results if r.summary)
    return CheckResult(check_id, PASS, summaries, counts=counts)


def failure(check_id: str, summary: str, *, lines: Sequence[str] = (), repro: str = "",
            diagnosis: str = "", variation: str | None = None) -> CheckResult:
    return CheckResult(check_id, FAIL, summary, diagnosis, variation, list(lines), repro=repro)


def passed(check_id: str, summary: str, counts: dict[str, int] | None = None) -> CheckResult:
    return CheckResult(check_id, PASS, summary, counts=counts or {})

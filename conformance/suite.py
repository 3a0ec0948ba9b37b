"""Run the conformance checks on a target: :func:`run_suite`, usable from Python and pytest.

Profiles (:data:`PROFILES`) set how hard the drawn checks look:

* ``quick`` — a first look, about a minute per target on 2 CPU cores (a failing drawn case is
  reported as drawn, not shrunk);
* ``ci`` — derandomized (the same cases every run), the default;
* ``thorough`` — many more random cases and steps, for nightly runs (``--seed`` reproduces one).

Subnormals and signed zeros are in scope in every profile.

>>> import numpy as np
>>> from lionspec.spec import lion_step
>>> from lionspec.conformance import Functional, Profile, Target, run_suite
>>> target = Target("spec", "lion", Functional(lion_step),
...                 Profile(compute="float64", dtypes=("float64",)))
>>> report = run_suite(target, profile="quick", checks=["sign-zero", "nan-inf"])
>>> report.verdict, [r.status for r in report.results]
('conforms', ['pass', 'pass'])
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .checks import CHECKS, CheckResult, Context, Settings
from .target import Target

__all__ = ["PROFILES", "SuiteReport", "run_suite", "verdict_of"]

#: Suite profiles by name.
PROFILES: dict[str, Settings] = {
    "quick": Settings("quick", max_examples=8, steps=3, max_size=16, derandomize=True,
                      shrink=False),
    "ci": Settings("ci", max_examples=25, steps=4, max_size=32, derandomize=True),
    "thorough": Settings("thorough", max_examples=300, steps=8, max_size=64, derandomize=False),
}


@dataclass
class SuiteReport:
    """Every check's result for one target, and the target's verdict."""

    target: Target
    profile: str
    results: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    allowed: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        return verdict_of(self.results, self.allowed)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status in ("fail", "error")]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.target.name, "algorithm": self.target.algorithm,
                "version": self.target.version, "verdict": self.verdict,
                "profile": self.profile, "seconds": round(self.seconds, 2),
                "notes": list(self.target.notes),
                "checks": [r.as_dict() for r in self.results]}

    def text(self, limit: int = 10) -> str:
        """A plain-text report: one line per check, then each deviation in full."""
        out = [f"{self.target.name} ({self.target.algorithm}"
               + (f", {self.target.version}" if self.target.version else "")
               + f"): {self.verdict} [{self.profile}, {self.seconds:.1f} s]"]
        for r in self.results:
            out.append(f"  {r.status:5} {r.id:24} {r.summary}")
        for r in self.failures():
            out.append(f"\n{r.id}: {r.summary}")
            if r.diagnosis:
                out.append(f"  diagnosis: {r.diagnosis}")
            out.extend(f"  {line}" for line in r.lines[:limit])
            if r.repro:
                out.append("  reproducing case:")
                out.extend(f"    {line}" for line in r.repro.splitlines())
        return "\n".join(out)


def verdict_of(results: Sequence[CheckResult], allowed: Sequence[str] = ()) -> str:
    """``deviates`` when a check failed for a reason no allowed variation explains, else
    ``error`` when a check crashed, else ``conforms``."""
    bad = [r for r in results if r.status == "fail"]
    if not all(r.variation is not None and r.variation in allowed for r in bad):
        return "deviates"
    if any(r.status == "error" for r in results):
        return "error"
    return "conforms"


def run_suite(target: Target, *, profile: str = "ci", checks: Sequence[str] | None = None,
              seed: int = 0, allow: Sequence[str] = (),
              progress: Callable[[str, CheckResult | None], None] | None = None) -> SuiteReport:
    """Run ``checks`` (default: all) on ``target`` with the named profile.

    ``progress(check_id, None)`` is called before each check and ``progress(check_id, result)``
    after it. ``allow`` names variations whose deviations still count as conforming.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    ids = list(CHECKS) if checks is None else list(checks)
    unknown = [i for i in ids if i not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check ids {unknown}; known: {', '.join(CHECKS)}")
    base = PROFILES[profile]
    settings = dataclasses.replace(base, seed=seed)
    report = SuiteReport(target, profile, allowed=tuple(allow))
    start = time.perf_counter()
    for i, check_id in enumerate(ids):
        if progress:
            progress(check_id, None)
        ctx = Context(target, settings, np.random.default_rng([seed, i]))
        result = CHECKS[check_id].run(ctx)
        report.results.append(result)
        if progress:
            progress(check_id, result)
    report.seconds = time.perf_counter() - start
    return report

"""Conformance: checks an implementation of Lion, Tiger or SIGNUM against :mod:`lionspec.spec`.

* :func:`run_suite` runs the named checks (:data:`CHECKS`, documented in
  ``docs/conformance.md``) on a :class:`Target` — an implementation driven through an adapter
  (:class:`TorchOptimizer`, :class:`Optax`, :class:`Functional`) with its declared
  :class:`Profile` — and returns per-check results with per-element verdicts, a diagnosis naming
  the variation that explains a deviation, and a reproducing case;
* :mod:`lionspec.conformance.verdict` judges one step per element with the derived bounds;
* :mod:`lionspec.conformance.vectors` holds portable golden vectors produced by the exact oracle.
"""

from __future__ import annotations

from .checks import CHECKS, CheckResult
from .profile import CAPABILITIES, Profile
from .suite import PROFILES, SuiteReport, run_suite
from .target import Case, Functional, Optax, Target, TorchOptimizer, Trace, resolve

__all__ = ["CAPABILITIES", "CHECKS", "PROFILES", "Case", "CheckResult", "Functional", "Optax",
           "Profile", "SuiteReport", "Target", "TorchOptimizer", "Trace", "resolve", "run_suite"]

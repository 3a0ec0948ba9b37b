"""The conformance checks, each a named property with a stable id (see ``docs/conformance.md``).

Importing this package registers every check in :data:`CHECKS`, in documentation order: the core
checks (values, order, decay, sign(0), NaN/Inf, elementwise, first step), the low-precision
predicates, free-running drift, Tiger's rules and k-step accumulation, then the API-level checks.
"""

from __future__ import annotations

import importlib

from ._support import CHECKS, Check, CheckResult, Context, Settings

#: check modules in documentation order (importing one registers its checks)
MODULES = ("core", "lowp", "drift", "tiger", "api")
for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["CHECKS", "MODULES", "Check", "CheckResult", "Context", "Settings"]

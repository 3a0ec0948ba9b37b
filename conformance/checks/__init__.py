"""The conformance checks, each a named property with a stable id (see ``docs/conformance.md``).

Importing this package registers every check in :data:`CHECKS`, in documentation order.
"""

from __future__ import annotations

from . import core  # noqa: F401  (registers its checks)
from ._support import CHECKS, Check, CheckResult, Context, Settings

__all__ = ["CHECKS", "Check", "CheckResult", "Context", "Settings"]

"""Shared pytest configuration: hypothesis profiles and the environment echo.

Profiles (select with ``--hypothesis-profile NAME`` or ``LIONSPEC_HYPOTHESIS_PROFILE``):

* ``ci``       -- derandomized, fixed example counts: the same cases on every run (default).
* ``dev``      -- randomized, fewer examples, for quick local iteration.
* ``thorough`` -- randomized, 20x the examples, for nightly runs.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None, print_blob=True)
settings.register_profile(
    "thorough",
    max_examples=4000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("LIONSPEC_HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    current = settings.default
    return (f"lionspec: hypothesis max_examples={current.max_examples}, "
            f"derandomize={current.derandomize}")

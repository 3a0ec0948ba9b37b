"""The conformance suite as pytest tests: ``pytest --pyargs lionspec.conformance
--lionspec-target=TARGET`` (see :mod:`lionspec.conformance.pytest_plugin`).

One test per (target, check). Without ``--lionspec-target`` every test is skipped.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from lionspec.conformance import expectations
from lionspec.conformance.checks import CHECKS, Context
from lionspec.conformance.registry import get_target
from lionspec.conformance.suite import PROFILES


@functools.cache
def _target(name: str, algorithm: str | None) -> Any:
    return get_target(name, algorithm)


@functools.cache
def _expected(path: str | None) -> dict[tuple[str, str], expectations.Expectation]:
    return expectations.load(path)


def test_check(lionspec_case: tuple[str | None, str], request: Any) -> None:
    name, check_id = lionspec_case
    if name is None:
        pytest.skip("no --lionspec-target given")
    config = request.config
    expected = _expected(config.getoption("--lionspec-expectations")).get((name, check_id))
    if expected is not None and expected.kind == "skip":
        pytest.skip(expected.reason())
    target = _target(name, config.getoption("--lionspec-algorithm"))
    settings = PROFILES[config.getoption("--lionspec-profile")]
    result = CHECKS[check_id].run(Context(target, settings, np.random.default_rng(0)))
    if result.status == "skip":
        pytest.skip(result.summary)
    if result.status != "pass" and expected is not None:
        pytest.xfail(expected.reason())
    if result.status == "pass" and expected is not None:
        pytest.fail(f"expected to fail {expected.reason()}, but it passed: the expectation is "
                    "stale (fixed upstream?); remove it")
    message = [result.summary]
    if result.diagnosis:
        message.append(f"diagnosis: {result.diagnosis}")
    message += result.lines[:20]
    if result.repro:
        message += ["reproducing case:", result.repro]
    assert result.status == "pass", "\n".join(message)

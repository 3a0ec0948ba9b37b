"""The drift check: our torch optimizers and NumPy implementations stay within the derived drift
bound over a free-running trajectory; a truncating bf16 implementation does not."""

from __future__ import annotations

import pytest

import lionspec.conformance.checks.drift  # noqa: F401  (registers the check)
from lionspec.conformance import CHECKS, run_suite
from lionspec.conformance.checks.drift import drift_steps
from lionspec.conformance.suite import PROFILES

from . import _impls, _impls_extra


@pytest.mark.parametrize("name", ["Lion", "Signum", "Tiger"])
def test_our_torch_optimizers_stay_within_the_drift_bound(name):
    target = _impls_extra.torch_target(name)
    result = run_suite(target, profile="quick", checks=["drift"]).results[0]
    assert result.status == "pass", result
    assert result.summary.count("free steps within the bound") == 4
    assert "not judged" not in result.summary  # the inputs keep every decision's sign


@pytest.mark.parametrize("target", [_impls.target("lion"), _impls.target("signum"),
                                    _impls_extra.bf16_target("lion"),
                                    _impls_extra.tiger_target()], ids=lambda t: t.name)
def test_correct_numpy_implementations_pass(target):
    result = run_suite(target, profile="quick", checks=["drift"]).results[0]
    assert result.status == "pass", result


def test_double_truncation_drifts_out_of_the_bound():
    (factory, _), = _impls_extra.BROKEN["drift"]
    result = run_suite(factory(), profile="quick", checks=["drift"]).results[0]
    assert result.status == "fail", result
    assert any("exceeds the drift bound" in line for line in result.lines)
    assert result.repro.startswith("Case(")


def test_steps_per_profile():
    assert drift_steps(PROFILES["quick"]) == 30
    assert drift_steps(PROFILES["ci"]) == 40
    assert drift_steps(PROFILES["thorough"]) == 50


def test_doc_paragraph():
    assert "1/(1 − β)" in CHECKS["drift"].doc
    assert "Known-bad" in CHECKS["drift"].doc

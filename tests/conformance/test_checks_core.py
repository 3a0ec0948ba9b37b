"""Every core check passes a correct implementation and catches its known-bad one.

The correct implementation is a small float32 NumPy step written like eager framework code
(``_impls.reference``); each known-bad (``_impls.BROKEN``) has one deliberate bug, and the check
named for it must fail on it -- with the diagnosis naming the variation where one explains it.
Our torch optimizers are run through the whole suite in ``test_suite_torch.py``.
"""

from __future__ import annotations

import pytest

from lionspec.conformance import CHECKS, run_suite

from . import _impls

CORE = ["single-step", "multi-step", "update-order", "weight-decay", "sign-zero", "nan-inf",
        "elementwise", "first-step"]


@pytest.mark.parametrize("algorithm", ["lion", "signum"])
def test_a_correct_implementation_passes_every_core_check(algorithm):
    report = run_suite(_impls.target(algorithm), profile="quick", checks=CORE)
    assert report.verdict == "conforms", report.text()


@pytest.mark.parametrize("check_id", CORE)
def test_each_core_check_catches_its_known_bad(check_id):
    algorithm, knobs, variation = _impls.BROKEN[check_id]
    bad = _impls.target(algorithm, name=f"broken for {check_id}", **knobs)
    result = run_suite(bad, profile="quick", checks=[check_id]).results[0]
    assert result.status == "fail", result
    assert result.lines or result.summary
    assert result.repro.startswith("Case(")  # a reproducing case, inputs in hex
    if variation is not None:
        assert result.variation == variation, result.diagnosis
        assert result.diagnosis.startswith(f"consistent with {variation}")


def test_every_registered_check_has_a_doc_paragraph():
    for check in CHECKS.values():
        assert len(check.doc) > 80, check.id


def test_the_ci_profile_shrinks_a_failure_to_a_minimal_case():
    """quick reports the case as drawn; ci and thorough shrink it (here: to one element)."""
    algorithm, knobs, _ = _impls.BROKEN["single-step"]
    bad = _impls.target(algorithm, **knobs)
    result = run_suite(bad, profile="ci", checks=["single-step"]).results[0]
    assert result.status == "fail"
    assert "shape (1,)" in result.repro.splitlines()[1], result.repro

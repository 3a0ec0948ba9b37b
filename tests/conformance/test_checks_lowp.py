"""The low-precision checks (fp16-underflow, bf16-cancellation): our torch optimizers and small
NumPy implementations pass, each known-bad (``_impls_extra.BROKEN``) is caught."""

from __future__ import annotations

import numpy as np
import pytest

import lionspec.conformance.checks.lowp  # noqa: F401  (registers the checks)
from lionspec.conformance import CHECKS, Profile, Target, run_suite
from lionspec.spec import bounds

from . import _impls, _impls_extra

IDS = ["fp16-underflow", "bf16-cancellation"]


@pytest.mark.parametrize("name", ["Lion", "Signum", "Tiger"])
def test_our_torch_optimizers_pass(name):
    report = run_suite(_impls_extra.torch_target(name), profile="quick", checks=IDS)
    assert report.verdict == "conforms", report.text()
    assert all(r.status == "pass" for r in report.results), report.text()


@pytest.mark.parametrize("target", [_impls.target("lion"), _impls.target("signum"),
                                    _impls_extra.bf16_target("lion"),
                                    _impls_extra.bf16_target("signum"),
                                    _impls_extra.tiger_target()], ids=lambda t: t.name)
def test_correct_numpy_implementations_pass(target):
    report = run_suite(target, profile="quick", checks=IDS)
    assert report.verdict == "conforms", report.text()


def test_a_bf16_compute_target_asserts_the_decay_noop_and_beta_representation():
    result = run_suite(_impls_extra.bf16_target("lion"), profile="quick",
                       checks=["bf16-cancellation"]).results[0]
    assert result.status == "pass"
    assert "decay lost as predicted" in result.summary
    assert "β̂ = 0.98828125" in result.summary and "EMA frozen" in result.summary


def test_an_fp32_compute_target_must_apply_the_decay():
    result = run_suite(_impls.target("lion"), profile="quick",
                       checks=["bf16-cancellation"]).results[0]
    assert "decay applied as predicted" in result.summary
    assert "β representation not asserted" in result.summary


@pytest.mark.parametrize("check_id", IDS)
def test_each_check_catches_its_known_bads(check_id):
    _impls_extra.assert_catches_known_bads(check_id)


def test_a_momentum_flushed_to_zero_is_caught():
    """Only the momentum is flushed (θ keeps its subnormals): still caught."""
    inner = _impls.functional("lion")

    def fn(param, grad, exp_avg, **hyper):
        p, m = inner(param, grad, exp_avg, **hyper)
        m = np.asarray(m, dtype=np.float64)
        return p, np.where(np.abs(m) < 2.0**-14, 0.0, m)  # flushes the momentum only

    from lionspec.conformance import Functional

    bad = Target("ftz momentum", "lion", Functional(fn),
                 Profile(compute="float32", c_form="muladd", dtypes=("float16",)))
    result = run_suite(bad, profile="quick", checks=["fp16-underflow"]).results[0]
    assert result.status == "fail"
    assert any("exp_avg[" in line for line in result.lines), result.lines


def test_skips_without_the_dtype():
    target = Target("fp32 only", "lion", _impls.target("lion").adapter,
                    Profile(compute="float32", dtypes=("float32",)))
    results = run_suite(target, profile="quick", checks=IDS).results
    assert [r.status for r in results] == ["skip", "skip"]
    assert "float16" in results[0].summary and "bfloat16" in results[1].summary


def test_the_predicates_the_checks_rely_on():
    assert bounds.ema_underflow([1e-6, 1e-5], 0.99, "float16").tolist() == [True, False]
    assert bool(bounds.decay_noop(2.0**-9, 2.0**-7, "bfloat16"))
    assert bounds.lost_step([3 * 2.0**-24], [2.0**-25], [1], "float16").tolist() == [False]


def test_doc_paragraphs():
    for check_id in IDS:
        assert len(CHECKS[check_id].doc) > 400, check_id

"""Tiger's roles and NaN rule, and the k-step accumulation identity: our torch optimizers and a
float32 NumPy Tiger pass, each known-bad is caught with the right diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

import lionspec.conformance.checks.tiger  # noqa: F401  (registers the checks)
from lionspec.conformance import CHECKS, Profile, Target, run_suite
from lionspec.conformance.checks.tiger import as_global_nan
from lionspec.conformance.target import Case

from . import _impls, _impls_extra

IDS = ["accumulation", "tiger-roles", "tiger-nan-rule"]


@pytest.mark.parametrize("name", ["Lion", "Signum", "Tiger"])
def test_our_torch_optimizers_pass(name):
    target = _impls_extra.torch_target(name)
    report = run_suite(target, profile="quick", checks=IDS)
    assert report.verdict == "conforms", report.text()
    statuses = [r.status for r in report.results]
    assert statuses == (["pass"] * 3 if name == "Tiger" else ["pass", "skip", "skip"])
    if name == "Tiger":
        acc = report.results[0].summary
        # fp32 (and bf16/fp16 + fp32 momentum) assert the window identity; bf16 storage does not
        assert acc.count("within accumulation_bound") == 4, acc
        assert "window identity not asserted" in acc


@pytest.mark.parametrize("target", [_impls_extra.tiger_target(), _impls.target("lion"),
                                    _impls.target("signum")], ids=lambda t: t.name)
def test_correct_numpy_implementations_pass(target):
    report = run_suite(target, profile="quick", checks=IDS)
    assert report.verdict == "conforms", report.text()


@pytest.mark.parametrize("check_id", IDS)
def test_each_check_catches_its_known_bads(check_id):
    _impls_extra.assert_catches_known_bads(check_id)


def test_roles_need_param_groups():
    target = Target("no groups", "tiger", _impls_extra.TigerRef(),
                    Profile(compute="float32", capabilities=frozenset({"momentum"})))
    result = run_suite(target, profile="quick", checks=["tiger-roles"]).results[0]
    assert result.status == "skip" and "param_groups" in result.summary


def test_as_global_nan_flags_every_tensor_at_nan_steps():
    nan = float("nan")
    case = Case("tiger", (np.zeros(2), np.zeros(3)),
                ((np.array([nan, 1.0]), np.ones(3)), (np.ones(2), np.ones(3))),
                {"lr": 0.1}, roles=("weight", "bias"))
    out = as_global_nan(case)
    assert np.isnan(out.grads[0][1]).all() and np.isnan(out.grads[0][0]).all()
    assert not np.isnan(out.grads[1][0]).any()


def test_doc_paragraphs():
    for check_id in IDS:
        assert "Known-bad" in CHECKS[check_id].doc, check_id

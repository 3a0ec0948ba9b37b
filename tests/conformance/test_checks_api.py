"""The API-level checks: each passes correct torch optimizers, catches its known-bad ones, and
skips, with the reason, targets that lack what it needs.

Correct: :class:`_broken_torch.MiniLion` (a tiny hand-written Lion) and lionspec's own Lion,
Signum and Tiger on the for-loop and foreach paths (the fused path runs in
``test_suite_torch.py``). Known-bad: every class in :data:`_broken_torch.BROKEN`.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lionspec.conformance.checks.api  # noqa: E402,F401  (registers the API checks)
from lionspec.conformance import (  # noqa: E402
    CHECKS,
    Functional,
    Profile,
    Target,
    TorchOptimizer,
    Trace,
    run_suite,
)
from lionspec.conformance.checks.api import bit_differences, run_interleaved  # noqa: E402
from lionspec.conformance.target import Case  # noqa: E402
from lionspec.impls.torch import Lion, Signum, Tiger  # noqa: E402
from lionspec.spec import lion_step  # noqa: E402

from . import _broken_torch, _impls  # noqa: E402

API = ["checkpoint", "noncontiguous", "grad-intact", "mixed-dtype-groups", "float64",
       "determinism", "zero-size"]
ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")
#: lionspec's torch optimizers: every dtype, and a float32 momentum selectable
OURS = Profile(c_form="muladd", dtypes=ALL_DTYPES, momentum_dtypes=("float32",))
#: MiniLion and its broken subclasses have no momentum_dtype option
MINI = Profile(c_form="muladd", dtypes=ALL_DTYPES)
CLASSES = {"lion": Lion, "signum": Signum, "tiger": Tiger}


def _target(cls: type, algorithm: str = "lion", **kwargs: object) -> Target:
    profile = OURS if issubclass(cls, (Lion, Signum, Tiger)) else MINI
    return Target(cls.__name__, algorithm, TorchOptimizer(cls, kwargs=kwargs), profile)


def test_the_api_checks_are_registered_with_docs_and_capabilities():
    assert all(cid in CHECKS for cid in API)
    for cid in API:
        assert len(CHECKS[cid].doc) > 200, cid
        assert "Known-bad" in CHECKS[cid].doc, cid
    assert CHECKS["checkpoint"].requires == ("state_dict",)
    assert CHECKS["noncontiguous"].requires == ("noncontiguous",)
    assert CHECKS["grad-intact"].requires == ("grad_check",)
    assert CHECKS["mixed-dtype-groups"].requires == ("param_groups",)
    assert CHECKS["zero-size"].requires == ("zero_size",)


def test_a_small_correct_torch_lion_passes_the_whole_suite():
    report = run_suite(_target(_broken_torch.MiniLion), profile="quick")
    assert report.verdict == "conforms", report.text()
    assert {r.id: r.status for r in report.results if r.id in API} == dict.fromkeys(API, "pass")


@pytest.mark.parametrize("algorithm", ["lion", "signum", "tiger"])
@pytest.mark.parametrize("path", ["for-loop", "foreach"])
def test_our_torch_optimizers_pass_every_api_check(algorithm, path):
    kwargs = {"foreach": True} if path == "foreach" else {}
    report = run_suite(_target(CLASSES[algorithm], algorithm, **kwargs), profile="quick",
                       checks=API)
    assert report.verdict == "conforms", report.text()
    assert all(r.status == "pass" for r in report.results), report.text()


KNOWN_BAD = [(cid, alg, cls) for cid, items in _broken_torch.BROKEN.items()
             for alg, cls in items]


@pytest.mark.parametrize(("check_id", "algorithm", "cls"), KNOWN_BAD,
                         ids=[f"{c}-{k.__name__}" for c, _, k in KNOWN_BAD])
def test_each_api_check_catches_its_known_bad(check_id, algorithm, cls):
    result = run_suite(_target(cls, algorithm), profile="quick", checks=[check_id]).results[0]
    assert result.status == "fail", result
    assert result.summary
    assert result.repro.startswith("Case(")  # a reproducing case, inputs in hex


def test_checkpoint_names_the_momentum_dtype_the_cast_breaks():
    # torch's default load_state_dict casts an fp32 momentum to the parameter's dtype
    result = run_suite(_target(_broken_torch.CastingLoadLion), profile="quick",
                       checks=["checkpoint"]).results[0]
    assert "+ float32 momentum" in result.summary
    assert any(" m[" in line for line in result.lines), result.lines


def test_checkpoint_of_our_lion_keeps_the_fp32_momentum_of_a_bf16_parameter():
    case = Case("lion", (np.linspace(-1, 1, 8),), tuple((np.linspace(0.5, -0.25, 8),)
                                                        for _ in range(4)),
                {"lr": 1e-3, "beta1": 0.9, "beta2": 0.99}, param_dtype="bfloat16",
                momentum_dtype="float32")
    adapter = TorchOptimizer(Lion)
    full, resumed = adapter.run(case), adapter.run_resumed(case, 2)
    assert bit_differences(full, resumed, offset=2) == []
    bad = TorchOptimizer(_broken_torch.CastingLoadLion).run_resumed(case, 2)
    assert bit_differences(full, bad, offset=2)


def test_a_resumed_run_starts_from_the_initial_momenta_of_the_case():
    # run() injects case.exp_avgs; run_resumed must start from the same state, else a case with
    # initial momenta would report a checkpoint failure that is not there
    # values float32 holds exactly (run() checks that its momentum-setting step kept θ)
    case = Case("lion", (np.arange(-4.0, 4.0) / 8,), tuple((np.arange(4.0, -4.0, -1) / 16,)
                                                          for _ in range(4)),
                {"lr": 1e-3, "beta1": 0.9, "beta2": 0.99},
                exp_avgs=(np.arange(-3.0, 5.0) / 4,))
    adapter = TorchOptimizer(Lion)
    full = adapter.run(case)
    assert bit_differences(full, adapter.run(case.with_(exp_avgs=None))), "momenta unused"
    assert bit_differences(full, adapter.run_resumed(case, 2), offset=2) == []


def test_determinism_tells_shared_instances_from_randomness():
    shared = run_suite(_target(_broken_torch.SharedWorkspaceLion), profile="quick",
                       checks=["determinism"]).results[0]
    assert "stepped in turn" in shared.summary  # two sequential runs agree, live pairs do not
    noisy = run_suite(_target(_broken_torch.StochasticRoundingLion), profile="quick",
                      checks=["determinism"]).results[0]
    assert "two runs of the same case differ" in noisy.summary
    assert noisy.summary.startswith("bfloat16")  # it only rounds bf16 stochastically


def test_float64_catches_a_float32_decision_alone():
    # θ and m are right in float64; only the near-cancelling decisions flip
    result = run_suite(_target(_broken_torch.Fp32DecisionLion), profile="quick",
                       checks=["float64"]).results[0]
    assert result.status == "fail"
    assert all("step 1" in line for line in result.lines if line.startswith("step")), \
        result.lines


def test_zero_size_reports_the_crash():
    result = run_suite(_target(_broken_torch.MaxGuardLion), profile="quick",
                       checks=["zero-size"]).results[0]
    assert "raised RuntimeError" in result.summary


def test_the_broken_classes_break_only_their_own_check():
    # each known-bad is otherwise correct, so the failure is attributable to the check
    for check_id, algorithm, cls in KNOWN_BAD:
        if cls in (_broken_torch.Fp32Lion, _broken_torch.StochasticRoundingLion,
                   _broken_torch.SharedWorkspaceLion):
            continue  # fp64 everywhere / randomness / shared state show up in other checks too
        others = [c for c in ("noncontiguous", "grad-intact", "mixed-dtype-groups", "zero-size")
                  if c != check_id]
        report = run_suite(_target(cls, algorithm), profile="quick", checks=others)
        assert report.verdict == "conforms", (cls.__name__, report.text())


# ------------------------------------------------------------------------------- skipping

def test_a_functional_target_skips_checkpoint_and_layout_with_the_reason():
    # the default profile claims every capability: the adapter itself rules these out
    checkpoint, layout = run_suite(_impls.target("lion"), profile="quick",
                                   checks=["checkpoint", "noncontiguous"]).results
    assert checkpoint.status == layout.status == "skip"
    assert "cannot save and restore state" in checkpoint.summary
    assert "no memory layout" in layout.summary


def test_missing_capabilities_skip_with_the_reason():
    bare = Target("bare", "lion", TorchOptimizer(Lion),
                  Profile(c_form="muladd", dtypes=ALL_DTYPES, capabilities=frozenset()))
    report = run_suite(bare, profile="quick", checks=API)
    by_id = {r.id: r for r in report.results}
    for cid, capability in (("checkpoint", "state_dict"), ("noncontiguous", "noncontiguous"),
                            ("grad-intact", "grad_check"), ("mixed-dtype-groups", "param_groups"),
                            ("zero-size", "zero_size")):
        assert by_id[cid].status == "skip"
        assert by_id[cid].summary == f"target lacks {capability}"
    assert by_id["float64"].status == "pass"  # needs no capability
    assert by_id["determinism"].status == "pass"


def test_float64_and_mixed_dtypes_skip_when_the_profile_rules_them_out():
    fp32_only = _impls.target("lion")  # float32/float16/bfloat16, computed in float32
    assert "no float64" in run_suite(fp32_only, profile="quick",
                                     checks=["float64"]).results[0].summary
    narrow = Target("narrow", "lion", Functional(lion_step),
                    Profile(compute="float32", dtypes=("float64",)))
    result = run_suite(narrow, profile="quick", checks=["float64", "mixed-dtype-groups"])
    assert [r.status for r in result.results] == ["skip", "skip"]
    assert "computed in float32" in result.results[0].summary
    assert "single parameter dtype" in result.results[1].summary


def test_the_spec_itself_passes_the_api_checks_it_can_run():
    spec = Target("spec", "lion", Functional(lion_step), Profile(compute="float64",
                                                                 dtypes=("float64",)))
    report = run_suite(spec, profile="quick", checks=API)
    assert report.verdict == "conforms", report.text()
    statuses = {r.id: r.status for r in report.results}
    assert statuses["float64"] == statuses["determinism"] == statuses["zero-size"] == "pass"


# -------------------------------------------------------------------------------- helpers

def test_bit_differences_sees_signed_zeros_and_shapes():
    a = Trace([[np.array([0.0, 1.0])]], [[np.zeros(2)]])
    assert bit_differences(a, Trace([[np.array([0.0, 1.0])]], [[np.zeros(2)]])) == []
    lines = bit_differences(a, Trace([[np.array([-0.0, 1.0])]], [None]))
    assert len(lines) == 1 and "θ[0]" in lines[0] and "flat index 0" in lines[0]
    assert "shape" in bit_differences(a, Trace([[np.zeros(3)]], [None]))[0]


def test_run_interleaved_matches_a_lone_run_for_our_lion():
    rng = np.random.default_rng(1)
    case = Case("lion", (rng.normal(size=5),), tuple((rng.normal(size=5),) for _ in range(3)),
                {"lr": 1e-3}, param_dtype="float64")
    adapter = TorchOptimizer(Lion)
    alone = adapter.run(case)
    traces = run_interleaved(adapter, case)
    assert len(traces) == 2
    assert all(bit_differences(alone, t) == [] for t in traces)

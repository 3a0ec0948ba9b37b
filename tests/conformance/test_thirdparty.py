"""Registered third-party targets (:mod:`lionspec.conformance.thirdparty`): unique names listed by
``lionspec list``, and for every installed package an adapter that builds the target and runs one
small case. Packages that are not installed are skipped; CUDA-only entries must say why."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import lionspec.conformance.thirdparty as tp
from lionspec import spec
from lionspec.conformance import cli
from lionspec.conformance.registry import REGISTRY, get_target
from lionspec.conformance.target import AdapterError, Case, Trace
from lionspec.conformance.verdict import FAILURE, judge_step
from lionspec.spec import VARIATIONS

NAMES = tp.THIRDPARTY
UNAVAILABLE = ("lion-pytorch:Lion(use_triton=True)", "deepspeed:FusedLion")
#: Entries that fix process-wide state at import (KERAS_BACKEND, TRITON_INTERPRET): run apart.
OWN_PROCESS = {"keras:Lion(jax)": {"KERAS_BACKEND": "jax"},
               "keras:Lion(torch)": {"KERAS_BACKEND": "torch"},
               "optimi:Lion(triton=True)": {"TRITON_INTERPRET": "1"}}
#: Momenta stored quantized (8-bit blockwise): compared loosely.
QUANTIZED = ("bitsandbytes:Lion8bit(min_8bit_size=0)",)
HYPER = {"lion": {"lr": 2.0**-6, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.5},
         "signum": {"lr": 2.0**-6, "beta": 0.9, "weight_decay": 0.5},
         "tiger": {"lr": 2.0**-6, "beta": 0.965, "weight_decay": 0.01, "accumulation_steps": 1}}


def small_case(algorithm: str) -> Case:
    """Two steps on four float32 elements, λ > 0."""
    theta = np.array([1.0, -2.0, 0.5, 0.0])
    grads = (np.array([0.5, -0.25, 0.0, 1.0]), np.array([-1.0, 0.5, 0.25, 1.0]))
    return Case(algorithm, (theta,), tuple((g,) for g in grads), HYPER[algorithm],
                param_dtype="float32")


def _skip_unless_installed(name: str) -> None:
    if not REGISTRY[name].installed():
        pytest.skip(f"{REGISTRY[name].module} is not installed")


def _deepspeed_op_built() -> bool:
    root = os.environ.get("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/torch_extensions"))
    return bool(glob.glob(os.path.join(root, "**", "cpu_lion*.so"), recursive=True))


def test_names_are_unique_registered_and_described():
    assert len(NAMES) == len(set(NAMES)) >= 30
    for name in NAMES:
        entry = REGISTRY[name]
        assert entry.name == name and not entry.ours and entry.description
        assert ":" in name and entry.algorithm in ("lion", "signum", "tiger")


def test_lionspec_list_shows_every_thirdparty_name(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    missing = [n for n in NAMES if n not in out]
    assert not missing


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if n not in UNAVAILABLE and n not in OWN_PROCESS])
def test_installed_target_runs_one_small_case(name):
    _skip_unless_installed(name)
    if name.startswith("deepspeed:") and not _deepspeed_op_built():
        pytest.skip("DeepSpeed's cpu_lion op is not built yet (a JIT build takes minutes)")
    target = get_target(name)
    assert target.name == name and target.version
    profile = target.profile
    assert profile.dtypes and set(profile.variations) <= set(VARIATIONS)
    trace = target.adapter.run(small_case(target.algorithm))
    assert isinstance(trace, Trace) and len(trace.params) == 3
    final = trace.params[-1][0]
    assert final.shape == (4,) and np.all(np.isfinite(final))
    assert not np.array_equal(final, trace.params[0][0])
    if trace.momenta[-1] is not None and "decay:coupled" not in profile.variations:
        _assert_momentum_read(name, target, small_case(target.algorithm), trace)


def _assert_momentum_read(name, target, case, trace):
    """The adapter reads the target's real momentum: each step's m' is judged against the spec
    with the target's declared arithmetic (the derived momentum bound; coupled decay, which
    changes m, is excluded by the caller). An 8-bit blockwise momentum has no such bound; its
    code keeps the sign of nonzero values (it has no exact 0: a 0 comes back as a tiny value,
    see docs/deviations.md), so only sign(m') where m' != 0 is compared there."""
    for t in range(case.steps):
        m_in, m_out = trace.momenta[t][0], trace.momenta[t + 1][0]
        if name in QUANTIZED:
            want = {"lion": spec.lion_step, "signum": spec.signum_step,
                    "tiger": spec.tiger_step}[case.algorithm](
                trace.params[t][0], case.grads[t][0], m_in, **case.spec_hyper(t, 0))[1]
            nonzero = want != 0
            assert np.array_equal(np.sign(m_out[nonzero]), np.sign(want[nonzero])), (m_out, want)
            continue
        v = judge_step(case.algorithm, trace.params[t][0], case.grads[t][0], m_in,
                       trace.params[t + 1][0], m_out, hyper=case.spec_hyper(t, 0),
                       arithmetic=target.profile.arithmetic(case.param_dtype, None))
        assert not np.any(v.exp_avg == FAILURE), v.report()


@pytest.mark.parametrize("name", UNAVAILABLE)
def test_cuda_only_entries_report_why(name):
    _skip_unless_installed(name)
    with pytest.raises(AdapterError, match="CUDA"):
        get_target(name)


@pytest.mark.parametrize("name", sorted(OWN_PROCESS))
def test_process_wide_target_runs_in_its_own_process(name):
    _skip_unless_installed(name)
    code = ("import numpy as np\n"
            "from tests.conformance.test_thirdparty import small_case\n"
            "from lionspec.conformance.registry import get_target\n"
            f"t = get_target({name!r})\n"
            "tr = t.adapter.run(small_case('lion'))\n"
            "assert tr.momenta[-1] is not None and np.all(np.isfinite(tr.params[-1][0]))\n"
            "assert not np.array_equal(tr.params[-1][0], tr.params[0][0])\n"
            "print(t.version, tr.params[-1][0].tolist())\n")
    env = {**os.environ, **OWN_PROCESS[name]}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_timm_loads_without_torchvision():
    _skip_unless_installed("timm:Lion")
    cls, notes = tp.load_timm_lion()
    assert cls.__name__ == "Lion" and cls.__module__ == "timm.optim.lion"
    assert all("file path" in n for n in notes)

"""``fused=True`` on a Triton device runs :mod:`lionspec.impls.triton`: the wiring, judged.

On CUDA the torch optimizers' fused path calls the Triton kernels. Here the CPU is added to the
Triton devices (``_optimizer._TRITON_DEVICES``), so the same calls run through Triton's
interpreter and every step is judged against the spec like the other paths
(``test_spec.run_and_judge``). bfloat16 is left to the GPU tests: the interpreter truncates it.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
triton_api = pytest.importorskip("lionspec.impls.triton")

from lionspec.impls.torch import Lion, Tiger  # noqa: E402

from .test_spec import run_and_judge  # noqa: E402

# inductor's own use of torch.jit warns on import; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method`:DeprecationWarning")

STEP_FN = {"lion": "lion_step_", "signum": "signum_step_", "tiger": "tiger_step_"}


@pytest.fixture
def triton_on_cpu(monkeypatch):
    """Route CPU tensors of ``fused=True`` to the Triton kernels and count the calls."""
    monkeypatch.setattr("lionspec.impls.torch._optimizer._TRITON_DEVICES", ("cuda", "cpu"))
    calls = dict.fromkeys(STEP_FN.values(), 0)
    for name in calls:
        original = getattr(triton_api, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(triton_api, name, counted)
    return calls


CASES = [(a, d, m) for a in ("lion", "signum", "tiger")
         for d, m in [("float32", None), ("float16", None), ("float16", "float32")]]


@pytest.mark.parametrize(("algorithm", "dtype", "mdt"), CASES,
                         ids=[f"{a}-{d}-{m or 'same'}" for a, d, m in CASES])
def test_fused_on_a_triton_device_runs_the_kernels_and_conforms(triton_on_cpu, algorithm,
                                                                 dtype, mdt):
    run_and_judge(algorithm, "fused", dtype, mdt, steps=3, shape=(8, 33))
    assert triton_on_cpu[STEP_FN[algorithm]] == 3


@pytest.mark.parametrize("role", ["weight", "embedding", "bias", "scale"])
def test_fused_tiger_roles_and_windows_through_the_kernels(triton_on_cpu, role):
    run_and_judge("tiger", "fused", "float32", None, steps=4, shape=(6, 20), role=role,
                  extra={"accumulation_steps": 2})
    assert triton_on_cpu["tiger_step_"] == 4


def test_entries_the_kernels_do_not_take_stay_on_the_compiled_path(triton_on_cpu):
    """float64 and compensated parameters are not Triton's: they take the compiled path, in
    the same step as the tensors that go to the kernels."""
    a, b = torch.randn(40), torch.randn(40, dtype=torch.float64)
    a.grad, b.grad = torch.randn(40), torch.randn(40, dtype=torch.float64)
    before = b.clone()
    Lion([a, b], lr=0.01, fused=True).step()
    assert triton_on_cpu["lion_step_"] == 1
    assert not torch.equal(b, before)  # stepped by the compiled path


def test_a_global_nan_scope_keeps_tiger_on_the_compiled_path(triton_on_cpu):
    p = torch.randn(30)
    p.grad = torch.randn(30)
    Tiger([p], lr=0.01, fused=True, nan_scope="global").step()
    assert triton_on_cpu["tiger_step_"] == 0

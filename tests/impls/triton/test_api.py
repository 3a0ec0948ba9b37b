"""The Triton API: validation, O(1) launches, the plan cache, no autotuning, the bf16 gate."""

from __future__ import annotations

import doctest

import pytest

torch = pytest.importorskip("torch")
triton = pytest.importorskip("triton")

import lionspec.impls.triton as T  # noqa: E402
from lionspec.impls.triton import _api, _launch, lion_step_, signum_step_, tiger_step_  # noqa: E402

CPU = torch.device("cpu")


def _lists(n=3, shape=(5,), dtype=torch.float32):
    return ([torch.ones(shape, dtype=dtype) for _ in range(n)],
            [torch.full(shape, 0.5, dtype=dtype) for _ in range(n)],
            [torch.zeros(shape, dtype=dtype) for _ in range(n)])


@pytest.mark.parametrize("module", [T, _api], ids=["package", "_api"])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(lr=-1.0), "lr must be >= 0"),
    (dict(lr=float("nan")), "lr must be finite"),
    (dict(lr=1e-3, beta1=1.0), r"beta1 must be in \[0, 1\)"),
    (dict(lr=1e-3, beta2=-0.1), r"beta2 must be in \[0, 1\)"),
    (dict(lr=1e-3, weight_decay=-1.0), "weight_decay must be >= 0"),
    (dict(lr=1e-3, block=100), "block must be a power of two"),
    (dict(lr=torch.ones(2)), "lr must be a real number or a one-element"),
])
def test_bad_hyperparameters_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lion_step_(*_lists(), **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(step=-1), "step must be an integer >= 0"),
    (dict(step=0, accumulation_steps=0), "accumulation_steps must be an integer >= 1"),
    (dict(step=0, shrink_ratio=0.0), r"shrink_ratio must be in \(0, 1\]"),
    (dict(step=0, roles="gamma"), "roles\\[0\\] must be one of"),
    (dict(step=0, roles=["bias"]), "roles must be one role or one per tensor"),
    (dict(step=0, nan_check="inf"), "nan_check must be one of"),
    (dict(step=0, nan_scope="model"), "nan_scope must be one of"),
])
def test_bad_tiger_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiger_step_(*_lists(), lr=1e-3, **kwargs)


def test_bad_tensors_raise():
    ps, gs, ms = _lists()
    with pytest.raises(ValueError, match="same length"):
        lion_step_(ps, gs[:2], ms, lr=1e-3)
    with pytest.raises(TypeError, match="params must be a list or tuple"):
        lion_step_(ps[0], gs, ms, lr=1e-3)
    with pytest.raises(TypeError, match="grads must hold tensors"):
        lion_step_(ps, [1.0, 2.0, 3.0], ms, lr=1e-3)
    with pytest.raises(TypeError, match=r"params\[0\] has dtype torch.float64"):
        lion_step_([ps[0].double()], gs[:1], ms[:1], lr=1e-3)
    with pytest.raises(ValueError, match="same shape"):
        lion_step_(ps[:1], [torch.ones(4)], ms[:1], lr=1e-3)
    with pytest.raises(ValueError, match="params\\[0\\] must be contiguous"):
        lion_step_([torch.ones(4, 3).t()], [torch.ones(3, 4)], [torch.zeros(3, 4)], lr=1e-3)
    with pytest.raises(TypeError, match="lr must be a real number"):
        lion_step_(ps, gs, ms, lr="0.1")


def test_empty_lists_and_empty_tensors():
    assert lion_step_([], [], [], lr=1e-3) == 0
    p, g, m = torch.ones(0), torch.ones(0), torch.zeros(0)
    q, h, n = torch.ones(3), torch.ones(3), torch.zeros(3)
    assert signum_step_([p, q], [g, h], [m, n], lr=0.5, beta=0.0) == 1
    assert q.tolist() == [0.5, 0.5, 0.5]


def test_non_contiguous_gradient_is_read_correctly():
    p, m = torch.zeros(3, 4), torch.zeros(3, 4)
    g = torch.arange(12.0).reshape(4, 3).t() - 5.5  # transposed view
    lion_step_([p], [g], [m], lr=1.0)
    assert torch.equal(p, -torch.sign(g))


def test_launches_are_o1_in_the_number_of_tensors():
    # 300 tensors in 3 (θ, g, m) dtype combinations (fp32/fp32, fp16/fp16, fp16/fp32):
    # 3 launches for Lion / SIGNUM, a zero fill + 2·3 for Tiger
    ps, gs, ms = [], [], []
    for i in range(300):
        dt = (torch.float32, torch.float16)[i % 2]
        mdt = torch.float32 if i % 3 == 0 else dt
        ps.append(torch.ones(1 + i % 7, dtype=dt))
        gs.append(torch.full((1 + i % 7,), -1.0, dtype=dt))
        ms.append(torch.zeros(1 + i % 7, dtype=mdt))
    assert lion_step_(ps, gs, ms, lr=0.25, block=16) == 3
    assert all(bool((p == 1.25).all()) for p in ps)
    assert tiger_step_(ps, gs, ms, lr=0.5, step=0, roles="bias", block=16) == 1 + 2 * 3


def test_plan_is_cached_and_lr_is_data_not_code(monkeypatch):
    from collections import OrderedDict

    monkeypatch.setattr(_launch, "_PLANS", OrderedDict())
    ps, gs, ms = _lists()
    lion_step_(ps, gs, ms, lr=0.25)
    (plan,) = _launch._PLANS.values()
    lion_step_(ps, gs, ms, lr=0.125)  # a new lr: same plan, new hyperparameter values
    assert list(_launch._PLANS.values()) == [plan]
    assert plan.hp_values[0] == 0.125
    lion_step_(ps, [g.clone() for g in gs], ms, lr=0.0)  # new gradient storage: a new plan
    assert len(_launch._PLANS) == 2
    assert [p.tolist() for p in ps] == [[0.625] * 5] * 3  # 1 − 0.25 − 0.125, then lr 0


def test_each_call_applies_its_update_exactly_once():
    # no autotuning: an autotuner benchmarking an in-place kernel would apply it several times
    kernels = _launch.kernels(CPU)
    assert not any(isinstance(k, triton.runtime.Autotuner) for k in kernels.values())
    p, m = torch.ones(3000), torch.zeros(3000)
    lion_step_([p], [torch.ones(3000)], [m], lr=2.0**-4, block=1024)
    assert bool((p == 1 - 2.0**-4).all())
    assert bool((m == torch.tensor(1.0 - 0.99, dtype=torch.float32)).all())


def test_bf16_gate_on_the_interpreter():
    ok = _launch.bf16_faithful(CPU)
    p = torch.ones(4, dtype=torch.bfloat16)
    args = ([p], [torch.ones(4, dtype=torch.bfloat16)], [torch.zeros(4)])
    if ok:  # a future interpreter that rounds correctly: bf16 is then tested like fp16
        lion_step_(*args, lr=2.0**-3)
        assert p.float().tolist() == [0.875] * 4
    else:
        with pytest.raises(ValueError, match="bfloat16 tensors on the CPU"):
            lion_step_(*args, lr=2.0**-3)
        assert p.float().tolist() == [1.0] * 4


def test_the_bf16_self_check_detects_truncation():
    # the check kernel in float16 (faithful in the interpreter) gives the exact 0.50292969; the
    # bf16 expectation 0.50390625 is the round-to-nearest of the same value in bf16
    x = torch.ones(16, dtype=torch.float16)
    y = torch.empty_like(x)
    _launch.kernels(CPU)["check"][(1,)](x, y, BLOCK=16)
    assert bool((y == 0.5029296875).all())
    assert torch.tensor(0.5029296875).to(torch.bfloat16).item() == 0.50390625

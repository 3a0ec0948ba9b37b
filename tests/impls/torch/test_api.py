"""The torch.optim API of lionspec.impls.torch: construction, groups, closures, schedulers,
state_dict, odd tensors, Tiger's roles, accumulation and NaN rule, and the spec's NaN/sign(0)
semantics. The code paths are compared with each other in test_paths.py."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lionspec.impls.torch import (  # noqa: E402
    Lion,
    Signum,
    Tiger,
    _math,
    tiger_param_groups,
)

from ._helpers import assert_tiger_step_conforms, same_bits  # noqa: E402

NAN, INF = float("nan"), float("inf")
# inductor's own use of torch.jit warns on import; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method`:DeprecationWarning")
OPTIMIZERS = [Lion, Signum, Tiger]
EAGER_PATHS = [{"foreach": False}, {"foreach": True}]
#: the fused path too where it reuses kernels test_paths.py compiles anyway (or falls back)
ALL_PATHS = [*EAGER_PATHS, {"fused": True}]





def params(*tensors):
    return [torch.nn.Parameter(t.detach().clone()) for t in tensors]


def grads_for(ps, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    for p in ps:
        p.grad = (scale * torch.randn(p.shape, generator=g, dtype=torch.float64)).to(p.dtype)


def twin_grads(a, b, seed):
    """The same random gradients for the parameters of ``a`` and, copied, of ``b``."""
    grads_for(a, seed)
    for p, q in zip(a, b, strict=True):
        q.grad = p.grad.clone()


def hyper(cls, **kw):
    base = {Lion: {"lr": 0.01, "weight_decay": 0.1}, Signum: {"lr": 0.01, "weight_decay": 0.1},
            Tiger: {"lr": 0.01, "weight_decay": 0.1}}[cls]
    return {**base, **kw}


# ------------------------------------------------------------------------------------------
# construction and validation


BAD_HYPERPARAMETERS = [
    (Lion, {"lr": -1.0}, "lr"),
    (Lion, {"lr": NAN}, "lr"),
    (Lion, {"lr": torch.tensor([0.1, 0.2])}, "lr"),
    (Lion, {"betas": (1.0, 0.99)}, "betas[0]"),
    (Lion, {"betas": (0.9, -0.1)}, "betas[1]"),
    (Lion, {"betas": (0.9,)}, "betas"),
    (Lion, {"weight_decay": -0.1}, "weight_decay"),
    (Lion, {"foreach": True, "fused": True}, "fused"),
    (Lion, {"momentum_dtype": torch.int32}, "momentum_dtype"),
    (Lion, {"maximize": "yes"}, "maximize"),
    (Lion, {"compensated": 1}, "compensated"),
    (Lion, {"fused": 1}, "fused"),
    (Signum, {"momentum": 1.0}, "momentum"),
    (Signum, {"lr": INF}, "lr"),
    (Tiger, {"beta": -0.5}, "beta"),
    (Tiger, {"accumulation_steps": 0}, "accumulation_steps"),
    (Tiger, {"accumulation_steps": 1.5}, "accumulation_steps"),
    (Tiger, {"shrink_ratio": 0.0}, "shrink_ratio"),
    (Tiger, {"nan_check": "inf"}, "nan_check"),
    (Tiger, {"nan_scope": "model"}, "nan_scope"),
    (Tiger, {"weight_decay": NAN}, "weight_decay"),
]


@pytest.mark.parametrize(("cls", "kwargs", "name"), BAD_HYPERPARAMETERS,
                         ids=[f"{c.__name__}-{n}-{i}" for i, (c, _, n) in
                              enumerate(BAD_HYPERPARAMETERS)])
def test_invalid_hyperparameters_raise_value_error_naming_them(cls, kwargs, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        cls(params(torch.zeros(2)), **kwargs)


def test_group_hyperparameters_are_validated_too():
    w, b = params(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="role"):
        Tiger([{"params": [w]}, {"params": [b], "role": "gamma"}])
    opt = Lion([w])
    with pytest.raises(ValueError, match="betas"):
        opt.add_param_group({"params": [b], "betas": (0.9, 1.5)})
    with pytest.raises(ValueError, match="params"):
        Lion([torch.zeros(2, dtype=torch.int64)])


def test_lr_changed_to_an_invalid_value_is_caught_at_step():
    (w,) = params(torch.ones(2))
    opt = Lion([w])
    opt.param_groups[0]["lr"] = -1e-3
    w.grad = torch.ones(2)
    with pytest.raises(ValueError, match="lr"):
        opt.step()


def test_defaults_match_the_documented_signatures():
    (w,) = params(torch.ones(1))
    assert Lion([w]).defaults["betas"] == (0.9, 0.99) and Lion([w]).defaults["lr"] == 1e-4
    assert Signum([w]).defaults["momentum"] == 0.9 and Signum([w]).defaults["lr"] == 1e-3
    t = Tiger([w]).defaults
    assert (t["lr"], t["beta"], t["weight_decay"], t["shrink_ratio"], t["role"]) == (
        1e-3, 0.965, 0.01, 0.99, "weight")
    assert Lion.path(Lion([w]).param_groups[0], [w]) == "for-loop"  # CPU: AdamW's default


# ------------------------------------------------------------------------------------------
# torch.optim conventions


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_param_groups_take_their_own_hyperparameters(cls):
    ta, tb = torch.randn(5, 3), torch.randn(7)
    extra = {Lion: {"betas": (0.5, 0.8)}, Signum: {"momentum": 0.3}, Tiger: {"beta": 0.5}}[cls]
    a, b = params(ta, tb)
    opt = cls([{"params": [a]}, {"params": [b], "lr": 0.05, "weight_decay": 0.0, **extra}],
              **hyper(cls))
    a1, b1 = params(ta, tb)
    opt_a = cls([a1], **hyper(cls))
    opt_b = cls([b1], **{**hyper(cls), "lr": 0.05, "weight_decay": 0.0, **extra})
    for seed in range(3):
        grads_for([a, b], seed)
        grads_for([a1, b1], seed)
        opt.step(), opt_a.step(), opt_b.step()
    assert same_bits(a, a1) and same_bits(b, b1)


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_params_without_grad_are_skipped(cls):
    w, frozen = params(torch.randn(4), torch.randn(4))
    before = frozen.detach().clone()
    opt = cls([w, frozen], **hyper(cls))
    w.grad = torch.ones(4)
    opt.step()
    assert same_bits(frozen, before) and frozen not in opt.state and w in opt.state


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_closure_is_evaluated_with_grad_enabled_and_its_loss_returned(cls):
    (w,) = params(torch.tensor([1.0, -2.0]))
    opt = cls([w], **hyper(cls))

    def closure():
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 5.0
    assert w[0] < 1.0 and w[1] > -2.0


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_maximize_equals_minimizing_the_negated_gradient(cls):
    t = torch.randn(6, 4)
    a, b = params(t, t)
    opt_a, opt_b = cls([a], maximize=True, **hyper(cls)), cls([b], **hyper(cls))
    for seed in range(3):
        grads_for([a], seed)
        b.grad = -a.grad
        opt_a.step(), opt_b.step()
    assert same_bits(a, b)


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_tensor_lr_equals_float_lr(cls):
    t = torch.randn(5, 5)
    a, b = params(t, t)
    opt_a = cls([a], **hyper(cls, lr=torch.tensor(0.02)))
    opt_b = cls([b], **hyper(cls, lr=0.02))
    for seed in range(3):
        twin_grads([a], [b], seed)
        opt_a.step(), opt_b.step()
    assert same_bits(a, b)


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_lr_changed_after_construction_and_by_a_scheduler_takes_effect(cls):
    t = torch.randn(8)
    a, b = params(t, t)
    opt_a = cls([a], **hyper(cls, lr=0.1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt_a, lambda s: 0.5 ** s)
    opt_b = cls([b], **hyper(cls, lr=0.1))
    for step in range(4):
        twin_grads([a], [b], step)
        opt_a.step()
        sched.step()
        opt_b.step()
        opt_b.param_groups[0]["lr"] = 0.1 * 0.5 ** (step + 1)
    assert same_bits(a, b)
    assert opt_a.param_groups[0]["lr"] == pytest.approx(0.1 / 16)


def test_scheduled_lr_moves_each_element_by_exactly_lr():
    """fp64, λ = 0, constant positive gradient: sign(c) = 1, so θ_k = θ_{k−1} − η_k exactly."""
    (w,) = params(torch.zeros(3, dtype=torch.float64))
    opt = Lion([w], lr=0.3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    expected = torch.zeros(3, dtype=torch.float64)
    for _ in range(5):
        lr = opt.param_groups[0]["lr"]
        w.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
        sched.step()
        expected = expected - lr
    assert same_bits(w, expected)


def _run(cls, tensors, kwargs, seeds, opt=None, ps=None):
    ps = ps if ps is not None else params(*tensors)
    opt = opt if opt is not None else cls(ps, **kwargs)
    for seed in seeds:
        grads_for(ps, seed)
        opt.step()
    return ps, opt


@pytest.mark.parametrize("path", EAGER_PATHS, ids=["loop", "foreach"])
@pytest.mark.parametrize(("cls", "extra"), [
    (Lion, {}), (Signum, {}), (Tiger, {"accumulation_steps": 3}),
    (Lion, {"momentum_dtype": torch.float32, "compensated": True}),
    (Tiger, {"momentum_dtype": torch.float32, "compensated": True, "accumulation_steps": 2}),
], ids=["lion", "signum", "tiger-k3", "lion-bf16state", "tiger-bf16state"])
def test_state_dict_round_trip_resumes_bit_identically(cls, extra, path):
    dtype = torch.bfloat16 if extra.get("compensated") else torch.float32
    tensors = [torch.randn(4, 3).to(dtype), torch.randn(5).to(dtype)]
    kwargs = {**hyper(cls), **extra, **path}
    straight, opt_s = _run(cls, tensors, kwargs, range(7))
    first, opt_1 = _run(cls, tensors, kwargs, range(4))  # 4 of 7: Tiger k=3 mid-window
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in first], "opt": opt_1.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = params(*saved["params"])
    opt_r = cls(resumed, **{**kwargs, "lr": 123.0})  # hyperparameters come from the state
    opt_r.load_state_dict(saved["opt"])
    _run(cls, None, None, range(4, 7), opt=opt_r, ps=resumed)
    for a, b in zip(straight, resumed, strict=True):
        assert same_bits(a, b)
        sa, sb = opt_s.state[a], opt_r.state[b]
        assert sa.keys() == sb.keys()
        for key in sa:
            assert same_bits(sa[key], sb[key]), key
    if extra.get("momentum_dtype"):
        assert opt_r.state[resumed[0]]["exp_avg"].dtype == torch.float32
    if cls is Tiger:
        assert opt_r.state[resumed[0]]["step"].dtype == torch.int64


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_sparse_gradients_raise_a_clear_error(cls):
    emb = torch.nn.Embedding(5, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    opt = cls(emb.parameters())
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


@pytest.mark.parametrize("path", ALL_PATHS, ids=["loop", "foreach", "fused"])
@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_complex_params_step_as_their_real_view(cls, path):
    z0 = torch.randn(4, 3, dtype=torch.complex64)
    (z,) = params(z0)
    (r,) = params(torch.view_as_real(z0))
    opt_z, opt_r = cls([z], **hyper(cls), **path), cls([r], **hyper(cls), **path)
    for seed in range(3):
        grads_for([r], seed)
        z.grad = torch.view_as_complex(r.grad.clone())
        opt_z.step(), opt_r.step()
    assert same_bits(torch.view_as_real(z.detach()), r)
    assert opt_z.state[z]["exp_avg"].shape == (4, 3, 2)


def test_complex_embedding_rms_runs_over_each_row_of_the_real_view():
    z0 = torch.randn(3, 4, dtype=torch.complex128)
    (z,) = params(z0)
    (r,) = params(torch.view_as_real(z0).reshape(3, 8))
    opt_z = Tiger([{"params": [z], "role": "embedding"}], lr=0.1)
    opt_r = Tiger([{"params": [r], "role": "embedding"}], lr=0.1)
    grads_for([r], 0)
    z.grad = torch.view_as_complex(r.grad.reshape(3, 4, 2).clone())
    opt_z.step(), opt_r.step()
    assert same_bits(torch.view_as_real(z.detach()).reshape(3, 8), r)


@pytest.mark.parametrize("path", EAGER_PATHS, ids=["loop", "foreach"])
@pytest.mark.parametrize("cls", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grad_is_never_modified(cls, dtype, path):
    ps = params(torch.randn(6).to(dtype), torch.randn(2, 3).to(dtype))
    opt = cls(ps, maximize=True, **hyper(cls), **path)
    for seed in range(2):
        grads_for(ps, seed)
        before = [p.grad.clone() for p in ps]
        opt.step()
        assert all(same_bits(p.grad, g) for p, g in zip(ps, before, strict=True))


@pytest.mark.parametrize("path", ALL_PATHS, ids=["loop", "foreach", "fused"])
@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_non_contiguous_params_update_only_their_own_elements(cls, path):
    big = torch.randn(6, 5)
    untouched = big.clone()
    col = big[:, 1:3]  # a strided slice of a bigger tensor
    tr = torch.randn(4, 3).t()  # a transposed view
    ref_col, ref_tr = params(col.contiguous(), tr.contiguous())
    opt = cls([col, tr], **hyper(cls), **path)
    # reference: the for-loop path (foreach is bit-identical to it; fused steps non-contiguous
    # tensors with the eager math, while contiguous ones would take its compiled kernel)
    ref = cls([ref_col, ref_tr], **hyper(cls), foreach=False)
    for seed in range(3):
        grads_for([ref_col, ref_tr], seed)
        col.grad, tr.grad = ref_col.grad.clone(), ref_tr.grad.clone()
        opt.step(), ref.step()
    assert same_bits(col.contiguous(), ref_col.detach()) and same_bits(tr.contiguous(),
                                                                        ref_tr.detach())
    assert same_bits(big[:, [0, 3, 4]], untouched[:, [0, 3, 4]])


@pytest.mark.parametrize("path", ALL_PATHS, ids=["loop", "foreach", "fused"])
@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_zero_size_and_0d_params(cls, path):
    empty, scalar = params(torch.zeros(0, 3), torch.tensor(2.0))
    before = scalar.detach().clone()
    opt = cls([empty, scalar], **hyper(cls), **path)
    empty.grad, scalar.grad = torch.zeros(0, 3), torch.tensor(1.0)
    opt.step()
    assert empty.shape == (0, 3) and opt.state[empty]["exp_avg"].shape == (0, 3)
    # every role rule gives η > 0 here; sign(c) = 1 and decay shrink the scalar
    assert scalar.item() < 2.0
    if cls is Tiger:
        assert int(opt.state[empty]["step"]) == 1
        # 0-d weight: RMS(θ) = |θ| = 2, η = 0.02, θ' = 2·(1 − 0.02·0.1) − 0.02, judged
        assert_tiger_step_conforms(before, scalar.grad, scalar, opt.state[scalar]["exp_avg"],
                                   role="weight", **hyper(cls))


@pytest.mark.parametrize("path", EAGER_PATHS, ids=["loop", "foreach"])
@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_mixed_dtype_params_in_one_group(cls, path):
    tensors = [torch.randn(5, 2), torch.randn(7).bfloat16(), torch.randn(3, dtype=torch.float64),
               torch.randn(4).half()]
    mixed, alone = params(*tensors), params(*tensors)
    opt = cls(mixed, **hyper(cls), **path)
    opts = [cls([a], **hyper(cls), **path) for a in alone]
    for seed in range(3):
        grads_for(mixed, seed)
        for a, p in zip(alone, mixed, strict=True):
            a.grad = p.grad.clone()
        opt.step()
        for o in opts:
            o.step()
    for a, p, t in zip(alone, mixed, tensors, strict=True):
        assert same_bits(a, p) and p.dtype == t.dtype


# ------------------------------------------------------------------------------------------
# numerics of the spec


def lion_nan_propagates(path=None) -> bool:
    """One NaN gradient element gives a NaN parameter element; the others stay finite."""
    (w,) = params(torch.ones(5))
    opt = Lion([w], lr=0.1, weight_decay=0.1, **(path or {}))
    w.grad = torch.tensor([1.0, NAN, -1.0, 0.0, 2.0])
    opt.step()
    finite = torch.isfinite(w.detach())
    return bool(torch.isnan(w[1])) and bool(finite[[0, 2, 3, 4]].all())


@pytest.mark.parametrize("path", ALL_PATHS, ids=["loop", "foreach", "fused"])
@pytest.mark.parametrize("cls", [Lion, Signum])
def test_nan_gradient_element_propagates_to_its_parameter_element_only(cls, path):
    (w,) = params(torch.ones(5))
    (ref,) = params(torch.ones(5))
    opt, opt_ref = cls([w], **hyper(cls), **path), cls([ref], **hyper(cls), **path)
    w.grad = torch.tensor([1.0, NAN, -1.0, 0.0, 2.0])
    ref.grad = torch.tensor([1.0, 5.0, -1.0, 0.0, 2.0])
    opt.step(), opt_ref.step()
    assert torch.isnan(w[1]) and torch.isnan(opt.state[w]["exp_avg"][1])
    keep = [0, 2, 3, 4]
    assert same_bits(w.detach()[keep], ref.detach()[keep])
    assert lion_nan_propagates(path)


def test_known_bad_torch_sign_freezes_nan_and_the_test_notices(monkeypatch):
    """A math module using plain torch.sign (sign(NaN) = 0 on CPU) fails the NaN check."""
    assert lion_nan_propagates()
    monkeypatch.setattr(_math, "sign_nan", lambda ops, c: ops.sign(c))
    assert not lion_nan_propagates()


@pytest.mark.parametrize("path", EAGER_PATHS, ids=["loop", "foreach"])
@pytest.mark.parametrize("cls", [Lion, Signum])
def test_infinities_follow_ieee(cls, path):
    (w,) = params(torch.ones(3))
    opt = cls([w], lr=0.5, **path)
    w.grad = torch.tensor([INF, -INF, 1.0])
    opt.step()
    assert w.detach().tolist() == [0.5, 1.5, 0.5]  # sign(±Inf) = ±1


@pytest.mark.parametrize("path", EAGER_PATHS, ids=["loop", "foreach"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("cls", [Lion, Signum])
def test_sign_of_zero_is_zero_so_only_decay_acts(cls, dtype, path):
    t = torch.tensor([1.5, -0.75, 0.0, 3.0]).to(dtype)
    (w,) = params(t)
    opt = cls([w], lr=0.01, weight_decay=0.5, **path)
    w.grad = torch.zeros(4, dtype=dtype)
    opt.step()
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    assert same_bits(w, (t.to(compute) * (1.0 - 0.01 * 0.5)).to(dtype))


def test_zero_coefficients_make_their_terms_absent():
    # lr = 0: θ unchanged even for a NaN gradient (IEEE would give θ − 0·NaN = NaN)
    for cls, grad in ((Lion, [NAN, INF]), (Signum, [NAN, INF]), (Tiger, [INF, -INF])):
        (w,) = params(torch.tensor([1.0, 2.0]))
        opt = cls([w], lr=0.0, weight_decay=0.1)
        w.grad = torch.tensor(grad)  # (a NaN would trigger Tiger's NaN rule, which has no lr)
        opt.step()
        assert w.detach().tolist() == [1.0, 2.0], cls
    # β1 = 0: c = g even where m is infinite
    (w,) = params(torch.tensor([1.0, 1.0]))
    opt = Lion([w], lr=0.5, betas=(0.0, 0.5))
    w.grad = torch.tensor([1.0, 1.0])
    opt.step()
    opt.state[w]["exp_avg"].fill_(INF)
    w.grad = torch.tensor([-1.0, 1.0])
    opt.step()
    assert w.detach().tolist() == [1.0, 0.0]
    # keep = 1 − η·λ = 0: the θ term is absent even for an infinite θ
    (w,) = params(torch.tensor([INF, 1.0]))
    opt = Signum([w], lr=0.5, weight_decay=2.0, momentum=0.0)
    w.grad = torch.tensor([1.0, -1.0])
    opt.step()
    assert w.detach().tolist() == [-0.5, 0.5]


@pytest.mark.parametrize("cls", [Lion, Signum])
def test_float64_params_are_computed_in_float64(cls):
    t = torch.tensor([1.0, -1.0], dtype=torch.float64)
    (w,) = params(t)
    opt = cls([w], lr=1e-9, weight_decay=1e-3)
    w.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt.step()
    keep = 1.0 - 1e-9 * 1e-3
    assert w.detach().tolist() == [1.0 * keep - 1e-9, -1.0 * keep + 1e-9]


def test_compensated_bf16_tracks_the_float64_trajectory_over_1000_steps():
    """θ0 = 0.5, η = 1e-4, g = 1 (so sign(c) = +1 always), λ = 0 and λ = 0.1, 1000 steps.

    Plain bf16 never moves (η < ulp_bf16(0.5)/2 = 2^-9... every step rounds back). With
    compensation the tracked value T = θ + comp obeys, per step,
    ``|T' − (keep·T − η)| ≤ u_bf16·|new − θ'| + 4·u32·|T| + u32·η`` where ``new`` is the fp32
    value before the split: comp' = RN_bf16(new − θ') costs u_bf16 = 2^-8 relative of
    |new − θ'| ≤ ulp_bf16(θ')/2 = 2^-10 on [0.25, 0.5); forming T in fp32, θ·keep, the
    subtraction and keep's rounding cost ≤ u32 = 2^-24 relative each. Errors are not amplified
    (|keep| ≤ 1), so after n steps ``|T_n − exact_n| ≤ n·(2^-18 + 2^-23 + 2^-24·η)``.
    (This is the Kahan-style bound "≤ n·u·max|x_i|" with the compensation stored in bf16.)
    """
    n, lr = 1000, 1e-4
    for wd in (0.0, 0.1):
        plain, comp = params(torch.full((3,), 0.5).bfloat16(), torch.full((3,), 0.5).bfloat16())
        opt_p = Lion([plain], lr=lr, weight_decay=wd)
        opt_c = Lion([comp], lr=lr, weight_decay=wd, compensated=True)
        exact = torch.full((3,), 0.5, dtype=torch.float64)
        for _ in range(n):
            plain.grad = comp.grad = torch.ones(3, dtype=torch.bfloat16)
            opt_p.step(), opt_c.step()
            exact = exact * (1.0 - lr * wd) - lr
        tracked = comp.detach().double() + opt_c.state[comp]["compensation"].double()
        bound = n * (2.0**-18 + 2.0**-23 + 2.0**-24 * lr)
        assert torch.all(plain.detach() == 0.5)  # round to nearest loses every step
        assert float((tracked - exact).abs().max()) <= bound
        assert float((tracked - exact).abs().max()) < 0.01 * float((0.5 - exact).abs().max())


def test_known_bad_compensation_that_drops_the_low_part_is_caught(monkeypatch):
    monkeypatch.setattr(_math, "_split", lambda ops, new, comp, compute, storage: (
        ops.to(new, storage), None if comp is None else ops.mul(comp, 0.0)))
    with pytest.raises(AssertionError):
        test_compensated_bf16_tracks_the_float64_trajectory_over_1000_steps()


def test_compensation_is_a_no_op_for_fp32_params():
    (w,) = params(torch.ones(3))
    opt = Lion([w], compensated=True)
    w.grad = torch.ones(3)
    opt.step()
    assert "compensation" not in opt.state[w]


def test_momentum_dtype_selects_the_state_dtype_and_rounds_once():
    (w,) = params(torch.ones(4).bfloat16())
    opt = Lion([w], lr=1e-3, betas=(0.9, 0.99), momentum_dtype=torch.float32)
    g = torch.tensor([1.0, -3.0, 0.5, 7.0]).bfloat16()
    w.grad = g
    opt.step()
    m = opt.state[w]["exp_avg"]
    assert m.dtype == torch.float32
    assert same_bits(m, g.float() * (1.0 - 0.99))  # β2·0 + fl32(w2·g): one rounding, in fp32


# ------------------------------------------------------------------------------------------
# Tiger


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 4)
        self.pos_embed = torch.nn.Parameter(torch.zeros(6, 4))
        self.conv = torch.nn.Conv1d(4, 4, 3)
        self.norm = torch.nn.LayerNorm(4)
        self.rms = torch.nn.RMSNorm(4)
        self.head = torch.nn.Linear(4, 11)
        self.tied = self.head.weight  # a second name for a parameter


def test_tiger_param_groups_by_module_type_with_an_override():
    net = _Net()
    groups = tiger_param_groups(net, overrides={"pos_embed": "embedding"}, weight_decay=0.2)
    roles = {g["role"]: g["params"] for g in groups}
    ids = {role: {id(p) for p in ps} for role, ps in roles.items()}
    assert ids == {
        "weight": {id(net.conv.weight), id(net.head.weight)},
        "embedding": {id(net.emb.weight), id(net.pos_embed)},
        "bias": {id(net.conv.bias), id(net.norm.bias), id(net.head.bias)},
        "scale": {id(net.norm.weight), id(net.rms.weight)},
    }
    assert all(g["weight_decay"] == 0.2 for g in groups)
    every = [id(p) for g in groups for p in g["params"]]
    assert len(every) == len(set(every)) == len(list(net.parameters()))
    Tiger(groups)  # valid groups
    only = tiger_param_groups(torch.nn.Linear(2, 2, bias=False))
    assert [g["role"] for g in only] == ["weight"]  # groups without params are omitted
    with pytest.raises(ValueError, match="overrides"):
        tiger_param_groups(net, overrides={"*.weight": "gamma"})


def tiger_moves(k, dtype=torch.float32, path=None):
    """For each micro-step of two windows: which of the four roles' tensors moved."""
    tensors = [torch.randn(4, 3).to(dtype), torch.randn(5, 2).to(dtype),
               torch.randn(3).to(dtype), (1 + torch.randn(3)).to(dtype)]
    ps = params(*tensors)
    groups = [{"params": [p], "role": r}
              for p, r in zip(ps, ["weight", "embedding", "bias", "scale"], strict=True)]
    opt = Tiger(groups, lr=0.01, accumulation_steps=k, **(path or {}))
    moves = []
    for t in range(2 * k):
        before = [p.detach().clone() for p in ps]
        grads_for(ps, t)
        opt.step()
        moves.append([not same_bits(p, b) for p, b in zip(ps, before, strict=True)])
        assert all(int(opt.state[p]["step"]) == t + 1 for p in ps)
    assert set(opt.state[ps[0]]) == {"exp_avg", "step"}  # no extra buffer
    return moves


@pytest.mark.parametrize("path", EAGER_PATHS, ids=["loop", "foreach"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tiger_accumulation_moves_theta_only_on_the_window_s_last_micro_step(dtype, path):
    k = 3
    expected = [[(t + 1) % k == 0] * 4 for t in range(2 * k)]
    assert tiger_moves(k, dtype, path) == expected


def test_known_bad_accumulation_that_moves_every_micro_step_is_caught(monkeypatch):
    original = Tiger._entry_args

    def always_last(self, group, e, fused):
        uniform, per = original(self, group, e, fused)
        return {**uniform, "last": True}, per

    monkeypatch.setattr(Tiger, "_entry_args", always_last)
    assert tiger_moves(3) != [[(t + 1) % 3 == 0] * 4 for t in range(6)]


def test_tiger_window_equals_one_step_on_the_mean_gradient_in_float64():
    k = 4
    t0 = torch.randn(6, 5, dtype=torch.float64)
    g = [torch.randn(6, 5, dtype=torch.float64) for _ in range(k)]
    a, b = params(t0, t0)
    opt_a = Tiger([a], lr=0.01, accumulation_steps=k)
    opt_b = Tiger([b], lr=0.01)
    for gi in g:
        a.grad = gi
        opt_a.step()
    b.grad = sum(g) / k
    opt_b.step()
    # Derived bounds (lionspec.spec.bounds), no tuned tolerance: the window's momentum is within
    # the accumulation bound of the exact β·0 + (1 − β)·mean(g); the k = 1 step is within the
    # momentum bound of (1 − β)·ḡ, where the float64 mean ḡ = fl(Σg/k) is within γ_k·Σ|g|/k.
    from lionspec.spec.bounds import accumulation_bound, gamma, momentum_update_bound

    gs = [x.numpy() for x in g]
    zero = np.zeros(gs[0].shape)
    mean = (sum(g) / k).numpy()
    bound = (accumulation_bound(zero, gs, 0.965, k, compute="float64")
             + momentum_update_bound(zero, mean, 0.965, form="muladd", compute="float64")
             + (1 - 0.965) * gamma(k, "float64") * sum(np.abs(x) for x in gs) / k * (1 + 2**-50))
    diff = (opt_a.state[a]["exp_avg"] - opt_b.state[b]["exp_avg"]).abs().numpy()
    assert np.all(diff <= bound)
    # θ moves by the same sign wherever both momenta agree in sign, so it is bit-identical there
    agree = torch.sign(opt_a.state[a]["exp_avg"]) == torch.sign(opt_b.state[b]["exp_avg"])
    assert agree.all()  # random gradients: no element of this window sits within the bound of 0
    assert same_bits(a, b)


def test_tiger_roles_learning_rates():
    w, e, b, s = params(torch.tensor([[3.0, 4.0], [0.0, 0.0]]),
                        torch.tensor([[3.0, 4.0], [0.6, 0.8]]),
                        torch.tensor([0.5]), torch.tensor([1.0]))
    opt = Tiger([{"params": [w]}, {"params": [e], "role": "embedding"},
                 {"params": [b], "role": "bias"}, {"params": [s], "role": "scale"}],
                lr=0.1, weight_decay=0.0, foreach=False)
    before = [p.detach().clone() for p in (w, e, b, s)]
    for p in (w, e, b, s):
        p.grad = -torch.ones_like(p)
    opt.step()
    # η = 0.1·RMS(θ): 0.25 for w (whole tensor), 0.354 and 0.0707 for e's rows; α/2 = 0.05 for
    # the bias and scale: each element judged against the spec with the derived bounds
    for p, p0, role in zip((w, e, b, s), before, ("weight", "embedding", "bias", "scale"),
                           strict=True):
        assert_tiger_step_conforms(p0, p.grad, p, opt.state[p]["exp_avg"], role=role, lr=0.1,
                                   weight_decay=0.0)
    assert b.item() == 0.550000011920929 and s.item() == 1.0499999523162842  # RN32 of 0.55, 1.05


def test_tiger_all_zero_weight_never_moves():
    (w,) = params(torch.zeros(3, 2))
    opt = Tiger([w], lr=0.1)
    w.grad = torch.ones(3, 2)
    opt.step()
    assert same_bits(w, torch.zeros(3, 2))


@pytest.mark.parametrize("path", EAGER_PATHS, ids=["loop", "foreach"])
def test_tiger_nan_rule_per_tensor_on_a_non_update_micro_step(path):
    w, s, other = params(torch.tensor([2.0, -4.0]), torch.tensor([3.0, 0.5]), torch.ones(2))
    opt = Tiger([{"params": [w, other]}, {"params": [s], "role": "scale"}], lr=0.1,
                shrink_ratio=0.5, accumulation_steps=2, **path)
    w.grad, s.grad, other.grad = (torch.tensor([NAN, 1.0]), torch.tensor([1.0, NAN]),
                                  torch.ones(2))
    opt.step()  # t = 0: not an update step, but the NaN rule acts
    assert w.detach().tolist() == [1.0, -2.0]  # centre 0: θ·s
    assert s.detach().tolist() == [2.0, 0.75]  # centre 1: (θ − 1)·s + 1
    assert opt.state[w]["exp_avg"].tolist() == [0.0, 0.0]  # momentum kept
    assert other.detach().tolist() == [1.0, 1.0]  # untouched: no NaN, not an update step
    assert opt.state[other]["exp_avg"].tolist() != [0.0, 0.0]
    assert int(opt.state[w]["step"]) == 1


@pytest.mark.parametrize("path", EAGER_PATHS, ids=["loop", "foreach"])
def test_tiger_nan_check_nonfinite_and_global_scope(path):
    def run(**kw):
        w, v = params(torch.tensor([2.0, -4.0]), torch.tensor([1.0, 1.0]))
        opt = Tiger([w, v], lr=0.1, shrink_ratio=0.5, weight_decay=0.0, **path, **kw)
        w.grad, v.grad = torch.tensor([INF, 1.0]), torch.tensor([1.0, 1.0])
        opt.step()
        return w.detach().tolist(), v.detach().tolist()

    w_nan, _ = run()  # the original: ±Inf is not caught; θ − η·(sign(inf) …)
    assert w_nan != [1.0, -2.0] and all(map(math.isfinite, w_nan))
    w_nonfinite, v_nonfinite = run(nan_check="nonfinite")
    assert w_nonfinite == [1.0, -2.0] and v_nonfinite != [0.5, 0.5]
    w_global, v_global = run(nan_check="nonfinite", nan_scope="global")
    assert w_global == [1.0, -2.0] and v_global == [0.5, 0.5]  # all tensors shrink together

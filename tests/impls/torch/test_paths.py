"""The three code paths of lionspec.impls.torch against each other.

* for-loop vs foreach: the same operations in the same order, so bit-identical -- every
  algorithm x dtype (fp32, fp16, bf16, fp64; 16-bit with fp32 momentum; compensated bf16).
* fused, under each CPU backend (the native C kernel, and torch.compile / inductor): deterministic
  run to run; the same sign decisions as the for-loop except where |c| is within the bound of the
  c-error module (ambiguous); the same bits elsewhere, except Tiger's θ under the native kernel,
  whose RMS sums exact squares in another order (judged against the spec in test_spec.py);
  torch.compile compiles once per key -- no recompilation on later steps, on lr changes, for
  other tensor sizes or other optimizer instances.
* every path rounds a float64 result once into a 16-bit parameter or momentum.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from lionspec.impls.torch import Lion, Signum, Tiger  # noqa: E402
from lionspec.spec.bounds import c_error_bound  # noqa: E402  (tests only, never in impls/)

from ._helpers import same_bits  # noqa: E402

NAN = float("nan")
# inductor's own use of torch.jit warns on import; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method`:DeprecationWarning")





def unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


# ------------------------------------------------------------------------------------------
# for-loop vs foreach


def _tensors(dtype):
    return [torch.randn(17, 5).to(dtype), torch.randn(33).to(dtype), torch.randn(()).to(dtype),
            torch.randn(6, 4).to(dtype).t(), torch.zeros(0, 3, dtype=dtype),
            (1 + 0.1 * torch.randn(9)).to(dtype)]


def _groups(cls, ps, extra):
    if cls is Tiger:
        roles = ["weight", "weight", "weight", "embedding", "embedding", "scale"]
        return [{"params": [p], "role": r} for p, r in zip(ps, roles, strict=True)]
    return [{"params": ps[:3]}, {"params": ps[3:], "lr": 0.003, **extra}]


def _grads(ps, step):
    g = torch.Generator().manual_seed(step)
    for i, p in enumerate(ps):
        grad = torch.randn(p.shape, generator=g)
        if grad.numel() > 3:
            grad.view(-1)[0] = 0.0  # sign(0) = 0 elements
            if step == 2 and i == 1:
                grad.view(-1)[1] = NAN  # NaN propagation (Tiger: the NaN rule)
        p.grad = grad.to(p.dtype)


def _run(cls, tensors, steps, **kw):
    ps = [t.clone() for t in tensors]  # plain leaf tensors: transposed views stay views
    extra = {Lion: {"betas": (0.5, 0.7)}, Signum: {"momentum": 0.6}, Tiger: {}}[cls]
    opt = cls(_groups(cls, ps, extra), lr=0.01, weight_decay=0.1, **kw)
    for step in range(steps):
        _grads(ps, step)
        opt.step()
    return ps, opt


def _dtype_id(dtype, mdt):
    return str(dtype).removeprefix("torch.") + ("" if mdt is None else "-state-fp32")


DTYPES = [
    (torch.float32, None), (torch.float16, None), (torch.bfloat16, None), (torch.float64, None),
    (torch.float16, torch.float32), (torch.bfloat16, torch.float32),
]


@pytest.mark.parametrize(("dtype", "mdt"), DTYPES,
                         ids=[_dtype_id(d, m) for d, m in DTYPES])
@pytest.mark.parametrize("cls", [Lion, Signum, Tiger])
def test_foreach_is_bit_identical_to_the_for_loop(cls, dtype, mdt):
    tensors = _tensors(dtype)
    extra = {"accumulation_steps": 2} if cls is Tiger else {}
    loop, opt_l = _run(cls, tensors, 5, foreach=False, momentum_dtype=mdt, **extra)
    each, opt_f = _run(cls, tensors, 5, foreach=True, momentum_dtype=mdt, **extra)
    assert cls.path(opt_f.param_groups[0], []) == "foreach"
    for a, b in zip(loop, each, strict=True):
        assert same_bits(a, b)
        for key in opt_l.state[a]:
            assert same_bits(opt_l.state[a][key], opt_f.state[b][key]), key
    assert torch.isnan(loop[1]).any() or cls is Tiger  # the NaN did propagate


@pytest.mark.parametrize("cls", [Lion, Signum, Tiger])
def test_foreach_is_bit_identical_with_compensation_and_maximize(cls):
    tensors = _tensors(torch.bfloat16)
    loop, opt_l = _run(cls, tensors, 4, foreach=False, compensated=True, maximize=True)
    each, opt_f = _run(cls, tensors, 4, foreach=True, compensated=True, maximize=True)
    for a, b in zip(loop, each, strict=True):
        assert same_bits(a, b)
        assert opt_l.state[a].keys() == opt_f.state[b].keys()
        for key in opt_l.state[a]:
            assert same_bits(opt_l.state[a][key], opt_f.state[b][key]), key


def test_foreach_tiger_global_nan_scope_matches_the_for_loop():
    tensors = _tensors(torch.float32)
    loop, _ = _run(Tiger, tensors, 4, foreach=False, nan_scope="global", nan_check="nonfinite")
    each, _ = _run(Tiger, tensors, 4, foreach=True, nan_scope="global", nan_check="nonfinite")
    assert all(same_bits(a, b) for a, b in zip(loop, each, strict=True))


def _blocked_run(cls, dtype, block, monkeypatch, **kw):
    """Four contiguous tensors (a Tiger embedding among them) stepped with eager blocks of
    ``block`` elements."""
    monkeypatch.setattr("lionspec.impls.torch._optimizer.BLOCK", block)
    g = torch.Generator().manual_seed(0)
    ps = [torch.randn(shape, generator=g).to(dtype) for shape in ((17, 5), (40,), (9, 4), (30,))]
    if cls is Tiger:
        groups = [{"params": [p], "role": r}
                  for p, r in zip(ps, ["weight", "bias", "embedding", "scale"], strict=True)]
    else:
        groups = [{"params": ps}]
    opt = cls(groups, lr=0.01, weight_decay=0.1, **kw)
    for step in range(4):
        _grads(ps, step)
        opt.step()
    return ps, opt


@pytest.mark.parametrize("path", [dict(foreach=False), dict(foreach=True)],
                         ids=["forloop", "foreach"])
@pytest.mark.parametrize(("dtype", "extra"), [(torch.float32, {}),
                                              (torch.bfloat16, {"compensated": True})],
                         ids=["fp32", "bf16-compensated"])
@pytest.mark.parametrize("cls", [Lion, Signum, Tiger])
def test_eager_blocks_are_bit_identical_to_whole_tensors(cls, dtype, extra, path, monkeypatch):
    """The eager paths step large tensors in blocks (``_optimizer.BLOCK``, whole rows for
    Tiger's embeddings); blocks of 16 elements (3 rows of 5, 4 rows of 4) give the bits of
    whole tensors."""
    kw = {**path, **extra, **({"accumulation_steps": 2} if cls is Tiger else {})}
    whole, opt_w = _blocked_run(cls, dtype, 1 << 30, monkeypatch, **kw)
    blocked, opt_b = _blocked_run(cls, dtype, 16, monkeypatch, **kw)
    for a, b in zip(whole, blocked, strict=True):
        assert same_bits(a, b)
        for key in opt_w.state[a]:
            assert same_bits(opt_w.state[a][key], opt_b.state[b][key]), key
    assert not same_bits(whole[0], torch.randn(17, 5).to(dtype))  # sanity: it moved


def test_eager_blocks_cover_every_element_once(monkeypatch):
    """Known-bad guard for the block split itself: every element is in exactly one block, and
    a per-row RMS is sliced with its rows."""
    from lionspec.impls.torch._optimizer import Entry, _blocks

    theta = torch.arange(36.0).reshape(9, 4)
    e = Entry(theta, theta, theta.clone(), theta.clone(), None, {})
    rms = torch.arange(9.0).reshape(9, 1)
    monkeypatch.setattr("lionspec.impls.torch._optimizer.BLOCK", 10)
    blocks = _blocks(e, {"given_rms": rms})
    assert [b[0][0].shape for b in blocks] == [(2, 4)] * 4 + [(1, 4)]
    assert torch.equal(torch.cat([b[0][0] for b in blocks]), theta)
    assert all(torch.equal(args["given_rms"].view(-1), views[0][:, 0] / 4)
               for views, args in blocks)


# ------------------------------------------------------------------------------------------
# fused


def _cancelling(n, beta, generator):
    """m, g with c = β·m + (1 − β)·g tiny for half the elements (near-cancellation)."""
    m = torch.randn(n, generator=generator)
    g = torch.randn(n, generator=generator)
    half = torch.arange(n) % 2 == 0
    wiggle = 1 + 1e-6 * torch.randn(n, generator=generator)
    g = torch.where(half, -beta * m / (1 - beta) * wiggle, g)
    return m, g


CASES = [
    (Lion, torch.float32, {"betas": (0.9, 0.99)}, None),
    (Lion, torch.bfloat16, {"betas": (0.9, 0.99), "momentum_dtype": torch.float32,
                            "compensated": True}, None),
    (Signum, torch.float32, {"momentum": 0.9}, None),
    (Tiger, torch.float32, {"beta": 0.9}, "weight"),
    (Tiger, torch.float32, {"beta": 0.9}, "embedding"),
]


@pytest.mark.parametrize(("cls", "dtype", "hyper", "role"), CASES,
                         ids=["lion-fp32", "lion-bf16-comp", "signum", "tiger-weight",
                              "tiger-embedding"])
def test_fused_matches_the_for_loop_except_on_ambiguous_signs(cls, dtype, hyper, role,
                                                             fused_cpu):
    beta = hyper.get("betas", (hyper.get("momentum", hyper.get("beta")),))[0]
    gen = torch.Generator().manual_seed(7)
    shape = (40, 8)
    theta0 = torch.randn(shape, generator=gen).to(dtype)
    m0, g0 = _cancelling(theta0.numel(), beta, gen)
    m0 = m0.reshape(shape).to(hyper.get("momentum_dtype", dtype))
    g0 = g0.reshape(shape).to(dtype)
    out = {}
    for name, path in (("loop", {"foreach": False}), ("fused", {"fused": True})):
        p = theta0.clone()
        group = {"params": [p], **({"role": role} if role else {})}
        opt = cls([group], lr=0.01, weight_decay=0.1, **hyper, **path)
        opt.state[p]["exp_avg"] = m0.clone()
        if cls is Tiger:
            opt.state[p]["step"] = torch.zeros((), dtype=torch.int64)
        p.grad = g0.clone()
        opt.step()
        tracked = p.double()
        if "compensation" in opt.state[p]:
            tracked = tracked + opt.state[p]["compensation"].double()
        out[name] = (p, tracked, opt.state[p]["exp_avg"])
    (loop_p, loop_t, loop_m), (fused_p, fused_t, fused_m) = out["loop"], out["fused"]
    # ambiguous: |c| within the c-error bound (Lion's c uses β1 and the old m; SIGNUM's and
    # Tiger's decision variable is the new m = β·m + (1 − β)·g -- the same formula here)
    m64, g64 = m0.double().numpy().ravel(), g0.double().numpy().ravel()
    ambiguous = np.abs(beta * m64 + (1 - beta) * g64) <= c_error_bound(m64, g64, beta,
                                                                      compute="float32")
    assert ambiguous.any()  # the inputs do reach the ambiguous zone
    if cls is Lion:  # the step direction: θ·keep − θ' = η·sign(c) up to rounding
        keep = 1 - 0.01 * 0.1
        decided_l = (theta0.double() * keep - loop_t).sign()
        decided_f = (theta0.double() * keep - fused_t).sign()
    else:
        decided_l, decided_f = loop_m.double().sign(), fused_m.double().sign()
    differ = (decided_l != decided_f).numpy().ravel()
    assert not (differ & ~ambiguous).any(), "a sign flip outside the c-error bound"
    # where the decision agrees, the values are the same expression: inductor's CPU code and the
    # native kernel are built with -ffp-contract=off, so they are the same bits (the spec tests
    # judge every path against the derived bounds on their own) -- except Tiger's θ under the
    # native kernel, whose η comes from an RMS summed in another order
    same = torch.from_numpy(~differ).reshape(shape)
    if not (cls is Tiger and fused_cpu == "native"):
        assert torch.equal(fused_p.double()[same], loop_p.double()[same])
    assert same_bits(fused_m, loop_m)


def test_fused_tiger_embedding_windows_match_the_for_loop(monkeypatch):
    """k = 2 compiles the window-opening and window-closing kernels of the embedding role (under
    torch.compile the row RMS is computed outside the kernel: inductor 2.13 failed to compile it
    fused; the native kernel's RMS is tested in test_native.py)."""
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", "compile")
    theta0 = torch.randn(6, 5)
    out = []
    for path in ({"foreach": False}, {"fused": True}):
        p = theta0.clone()
        opt = Tiger([{"params": [p], "role": "embedding"}], lr=0.01, accumulation_steps=2, **path)
        for step in range(4):
            _grads([p], step)
            opt.step()
        out.append((p, opt.state[p]["exp_avg"]))
    (loop_p, loop_m), (fused_p, fused_m) = out
    assert same_bits(loop_m, fused_m)  # elementwise mul+add: no reduction involved
    assert same_bits(loop_p, fused_p)  # the RMS is the same eager expression on both paths


def test_fused_compensation_tracks_like_the_for_loop(fused_cpu):
    """θ + compensation of bf16 parameters: the fused kernel must keep the bf16 rounding inside
    the split (inductor drops a downcast-upcast pair unless told not to)."""
    theta0 = torch.randn(300).bfloat16()
    out = []
    for path in ({"foreach": False}, {"fused": True}):
        p = theta0.clone()
        opt = Lion([p], lr=1e-3, weight_decay=0.1, compensated=True, **path)
        for step in range(5):
            _grads([p], step)
            opt.step()
        out.append((p, opt.state[p]["compensation"]))
    (loop_p, loop_c), (fused_p, fused_c) = out
    assert bool((loop_c != 0).any())
    tracked_l, tracked_f = loop_p.double() + loop_c.double(), fused_p.double() + fused_c.double()
    assert torch.equal(tracked_f, tracked_l)  # the same split, the same bits


@pytest.mark.parametrize("cls", [Lion, Tiger])
def test_fused_is_deterministic_run_to_run(cls, fused_cpu):
    tensors = [torch.randn(40, 8), torch.randn(50)]

    def run():
        ps = [t.clone() for t in tensors]
        opt = cls(ps, lr=0.01, weight_decay=0.1, fused=True)
        for step in range(3):
            _grads(ps, step)
            opt.step()
        return ps, opt

    (a, opt_a), (b, opt_b) = run(), run()
    for x, y in zip(a, b, strict=True):
        assert same_bits(x, y) and same_bits(opt_a.state[x]["exp_avg"], opt_b.state[y]["exp_avg"])


def test_fused_propagates_nan_and_keeps_sign_of_zero_and_absent_terms(fused_cpu):
    p = torch.ones(8)
    opt = Lion([p], lr=0.1, weight_decay=0.5, fused=True)
    p.grad = torch.tensor([1.0, NAN, 0.0, -1.0, 2.0, 0.0, 3.0, -2.0])
    opt.step()
    assert torch.isnan(p[1]) and torch.isfinite(p[[0, 2, 3, 4, 5, 6, 7]]).all()
    assert p[2].item() == p[5].item() == torch.tensor(1.0 * (1 - 0.05)).item()  # sign(0) = 0
    opt.param_groups[0]["lr"] = 0.0  # lr = 0: θ untouched even where the gradient is NaN
    before = p.clone()
    p.grad = torch.full((8,), NAN)
    opt.step()
    assert same_bits(p, before)


def test_fused_falls_back_to_the_eager_math_for_odd_tensors(fused_cpu):
    tensors = [torch.randn(6, 4).t(), torch.randn(()), torch.randn(1), torch.randn(0)]
    loop, _ = _run(Lion, [*tensors, torch.randn(3)], 3, foreach=False)
    fused, _ = _run(Lion, [*tensors, torch.randn(3)], 3, fused=True)
    for a, b in zip(loop[:4], fused[:4], strict=True):
        assert same_bits(a, b)


def test_importing_the_package_imports_neither_triton_nor_inductor():
    code = ("import sys, lionspec.impls.torch; "
            "print(sorted(m for m in ('triton', 'torch._inductor') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fused_compiles_once_per_key_not_per_step_lr_size_or_instance(monkeypatch):
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", "compile")
    p = torch.randn(64)
    opt = Lion([p], lr=0.01, weight_decay=0.1, fused=True)
    p.grad = torch.randn(64)
    opt.step()  # compiles (or reuses this session's compiled Lion fp32 kernel)
    graphs = unique_graphs()
    opt.step()
    opt.param_groups[0]["lr"] = 3e-3
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (s + 1))
    for _ in range(2):
        opt.step()
        sched.step()
    q = torch.randn(13, 17)
    other = Lion([q], lr=torch.tensor(5e-3), betas=(0.8, 0.9), weight_decay=0.3, fused=True)
    q.grad = torch.randn(13, 17)
    other.step()
    assert unique_graphs() == graphs


def test_fused_compiles_an_exactly_zero_lr_once(monkeypatch):
    """lr == 0 is part of the compile key (the θ update is absent from that kernel): a warm-up
    from 0 compiles that variant once, and switching back and forth compiles nothing more."""
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", "compile")
    p = torch.randn(64)
    opt = Lion([p], lr=0.0, weight_decay=0.1, fused=True)
    p.grad = torch.randn(64)
    before = p.clone()
    opt.step()
    assert same_bits(p, before)  # lr == 0: θ untouched
    opt.param_groups[0]["lr"] = 0.01
    opt.step()
    graphs = unique_graphs()
    for lr in (0.0, 0.02, 0.0, 0.03):
        opt.param_groups[0]["lr"] = lr
        opt.step()
    assert unique_graphs() == graphs


@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}, {"fused": True}],
                         ids=["loop", "foreach", "fused"])
@pytest.mark.parametrize(("dtype", "half_ulp"), [(torch.bfloat16, 2.0**-8),
                                                 (torch.float16, 2.0**-11)])
def test_float64_results_round_once_into_16_bits(path, dtype, half_ulp, fused_cpu):
    """θ' = 1 + η with η = half an ulp of 1 plus 2⁻³⁰, computed in float64 (float64 momentum):
    one rounding gives 1 + ulp; torch's own float64 -> 16-bit cast goes through float32, where
    the 2⁻³⁰ is lost and the tie then rounds to 1 (the broken variant, shown first)."""
    exact = torch.tensor([1 + half_ulp + 2.0**-30], dtype=torch.float64)
    assert exact.to(dtype).item() == 1.0  # what a plain .to() would store
    for n in (3, 40):  # a scalar tail and a vectorised body
        p = torch.ones(n, dtype=dtype)
        opt = Lion([p], lr=half_ulp + 2.0**-30, momentum_dtype=torch.float64, **path)
        p.grad = -torch.ones(n, dtype=dtype)
        opt.step()
        assert (p == 1 + 2 * half_ulp).all(), p
        # the momentum (float64 here) and a 16-bit momentum of a float64 parameter alike
        q = torch.zeros(n, dtype=torch.float64)
        opt = Lion([q], lr=0.0, betas=(0.0, 0.0), momentum_dtype=dtype, **path)
        q.grad = exact.expand(n).clone()
        opt.step()
        assert (opt.state[q]["exp_avg"] == 1 + 2 * half_ulp).all()

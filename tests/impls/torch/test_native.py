"""The native CPU kernel of ``fused=True`` (:mod:`lionspec.impls.torch._native`).

* Lion and SIGNUM: the kernel is the for-loop's expression, operation for operation, so it is
  **bit-identical** to the for-loop (signed zeros included; NaN in the same places, with a
  payload that may differ only where a NaN θ meets a NaN gradient: which operand's NaN an
  x86 instruction returns depends on operand order, which C compilers do not keep for
  commutative operations) for every θ dtype ×
  momentum dtype, with compensation, maximize and every "coefficient is exactly 0 or 1" switch,
  on hard inputs (±0, subnormals, ±Inf, NaN gradients) and tensors that span several work items.
* Tiger: the momentum is bit-identical to the for-loop in every role, window position and NaN
  mode; θ is bit-identical for the bias and scale roles; for weight and embedding the RMS sums
  exact squares in double, so η is checked against an independent float64 evaluation of
  ``fl(fl(fl(√Σx²) / fl(√n))·α)`` (and judged against the spec in ``test_spec.py``).
* Results do not depend on the thread count; many tensors go through one call.
* Build and cache: a kernel is compiled once and then loaded; a failing or missing compiler
  falls back to ``torch.compile`` under ``auto`` with one warning, and is an error under
  ``native``; a bad ``LIONSPEC_FUSED_CPU`` is a ``ValueError`` naming it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from lionspec.impls.torch import Lion, Signum, Tiger, _native  # noqa: E402

from ._helpers import same_bits  # noqa: E402

pytestmark = [
    pytest.mark.skipif(_native._compiler() is None, reason="no C compiler here"),
    # the torch.compile fallback imports inductor, whose own use of torch.jit warns
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method`:DeprecationWarning"),
]

F32, F64, BF16, F16 = torch.float32, torch.float64, torch.bfloat16, torch.float16
#: (param dtype, momentum dtype): every compute type and every store conversion
DTYPES = [(F32, F32), (F64, F64), (BF16, BF16), (BF16, F32), (F16, F16), (F16, F32),
          (F32, BF16), (F64, BF16), (BF16, F64)]
#: sizes: a scalar-tail-only tensor, odd ones, and one spanning several 16384-element work items
SIZES = [(1,), (7,), (33, 3), (40_001,)]


@pytest.fixture(autouse=True)
def _native_backend(monkeypatch):
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", "native")


def _hard(n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Normal values plus ±0, subnormals of ``dtype``, ±Inf and NaN: at the front, and then
    every 13th element cycling through them (so they reach every lane of the kernel's 16-wide
    vector loop, both of its 8-lane halves, and its scalar tail)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    tiny = torch.finfo(dtype).smallest_normal
    special = torch.tensor([0.0, -0.0, tiny / 4, -tiny / 2, math.inf, -math.inf, math.nan,
                            1e-3], dtype=torch.float64)
    k = min(n, len(special))
    x[:k] = special[:k]
    spread = torch.arange(k, n, 13)
    x[spread] = special[torch.arange(len(spread)) % len(special)]
    return x.to(dtype)


def _run(cls, dtype, mdt, path, steps=3, sizes=SIZES, grads_finite=False, **hyper):
    params = [_hard(math.prod(s), dtype, 10 + i).abs().add(0.5).reshape(s)
              for i, s in enumerate(sizes)]  # θ holds +Inf and NaN too (|±Inf|, |NaN|)
    opt = cls(params, momentum_dtype=mdt, **path, **hyper)
    for step in range(steps):
        for i, p in enumerate(params):
            g = _hard(p.numel(), dtype, 100 * step + i).reshape(p.shape)
            p.grad = torch.nan_to_num(g) if grads_finite else g
        opt.step()
    return params, opt


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-identical except NaN payloads: NaN in the same places, the same bits elsewhere."""
    nan = torch.isnan(a)
    if not torch.equal(nan, torch.isnan(b)):
        return False
    return same_bits(torch.where(nan, 0, a), torch.where(nan, 0, b))


def _assert_same_state(a, opt_a, b, opt_b, keys=("exp_avg", "compensation")):
    for x, y in zip(a, b, strict=True):
        assert _same(x, y), f"θ differs ({x.dtype}, {tuple(x.shape)})"
        assert bool(torch.isnan(x).any()) or same_bits(x, y)  # no NaN: every bit
        for key in keys:
            if key in opt_a.state[x]:
                assert _same(opt_a.state[x][key], opt_b.state[y][key]), key


LION_CASES = {
    "default": dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.1),
    "lr0": dict(lr=0.0, betas=(0.9, 0.99), weight_decay=0.1),
    "beta0": dict(lr=0.01, betas=(0.0, 0.0), weight_decay=0.1),
    "keep1": dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.0),
    "keep0": dict(lr=0.5, betas=(0.9, 0.99), weight_decay=2.0),
    "maximize": dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.1, maximize=True),
}


def _signum(hyper):
    out = {k: v for k, v in hyper.items() if k != "betas"}
    out["momentum"] = hyper["betas"][0]
    return out


@pytest.mark.parametrize(("dtype", "mdt"), DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("cls", [Lion, Signum], ids=["lion", "signum"])
def test_bit_identical_to_the_for_loop_in_every_dtype(cls, dtype, mdt):
    hyper = LION_CASES["default"]
    hyper = hyper if cls is Lion else _signum(hyper)
    for compensated in (False, True):
        a, opt_a = _run(cls, dtype, mdt, {"foreach": False}, compensated=compensated, **hyper)
        b, opt_b = _run(cls, dtype, mdt, {"fused": True}, compensated=compensated, **hyper)
        _assert_same_state(a, opt_a, b, opt_b)


@pytest.mark.parametrize("case", list(LION_CASES))
@pytest.mark.parametrize(("dtype", "mdt", "compensated"),
                         [(F32, F32, False), (BF16, F32, True), (BF16, F32, False),
                          (BF16, BF16, False), (F16, F16, False)],
                         ids=["fp32", "bf16-fp32m-comp", "bf16-fp32m", "bf16", "fp16"])
@pytest.mark.parametrize("cls", [Lion, Signum], ids=["lion", "signum"])
def test_bit_identical_to_the_for_loop_for_every_switch(cls, dtype, mdt, compensated, case):
    """Every switch in the scalar code (compensated) and in the vector loops (the others)."""
    hyper = LION_CASES[case] if cls is Lion else _signum(LION_CASES[case])
    a, opt_a = _run(cls, dtype, mdt, {"foreach": False}, compensated=compensated, **hyper)
    b, opt_b = _run(cls, dtype, mdt, {"fused": True}, compensated=compensated, **hyper)
    _assert_same_state(a, opt_a, b, opt_b)


TIGER_ROLES = ["weight", "embedding", "bias", "scale"]


def _tiger(path, dtype, mdt, role, steps, nan_check="nan", grads_finite=False, k=2,
           sizes=((33, 3), (40, 500), (7,))):
    params = [_hard(math.prod(s), dtype, 10 + i).abs().add(0.5).reshape(s)
              for i, s in enumerate(sizes)]
    opt = Tiger([{"params": params, "role": role}], lr=0.01, weight_decay=0.1,
                accumulation_steps=k, nan_check=nan_check, momentum_dtype=mdt, **path)
    for step in range(steps):
        for i, p in enumerate(params):
            g = _hard(p.numel(), dtype, 100 * step + i).reshape(p.shape)
            # one tensor with a NaN gradient at some steps, the others finite
            p.grad = g if (i == 0 and not grads_finite) else torch.nan_to_num(g)
        opt.step()
    return params, opt


@pytest.mark.parametrize("nan_check", ["nan", "nonfinite"])
@pytest.mark.parametrize("role", TIGER_ROLES)
@pytest.mark.parametrize(("dtype", "mdt"), [(F32, F32), (BF16, F32), (F16, F16), (F64, F64)],
                         ids=["fp32", "bf16-fp32m", "fp16", "fp64"])
def test_tiger_momentum_and_role_lr_match_the_for_loop(dtype, mdt, role, nan_check):
    """Windows of k = 2 over 4 micro-steps: both window positions, NaN rule on tensor 0."""
    a, opt_a = _tiger({"foreach": False}, dtype, mdt, role, 4, nan_check)
    b, opt_b = _tiger({"fused": True}, dtype, mdt, role, 4, nan_check)
    for x, y in zip(a, b, strict=True):
        assert _same(opt_a.state[x]["exp_avg"], opt_b.state[y]["exp_avg"])
        if role in ("bias", "scale"):  # η = α/2: no reduction anywhere
            assert _same(x, y)


def _reference_tiger_theta(theta: torch.Tensor, m_new: torch.Tensor, alpha: float, lam: float,
                           rows: bool) -> torch.Tensor:
    """θ' of one fp32 Tiger step from the new momentum, with η from the exactly summed squares:
    ``fl(fl(fl(√Σx²) / fl(√n))·α)``, ``keep = fl(1 − fl(η·λ))``, ``fl(fl(θ·keep) − η·s)``."""
    x = theta.double()
    squares = (x * x).sum(dim=-1, keepdim=True) if rows else (x * x).sum()
    n = theta.shape[-1] if rows else theta.numel()
    norm = squares.sqrt().float()  # Σ of exact squares in float64: far below float32's ulp
    eta = norm / torch.tensor(math.sqrt(n), dtype=torch.float32) * torch.tensor(alpha)
    keep = 1 - eta * torch.tensor(lam, dtype=torch.float32)
    s = torch.sign(m_new)
    return theta * keep - eta * s


@pytest.mark.parametrize("role", ["weight", "embedding"])
def test_tiger_eta_is_the_rounded_rms_of_exact_squares(role):
    theta0 = torch.randn(40, 300) * 3
    p = theta0.clone()
    g = torch.randn(40, 300)
    opt = Tiger([{"params": [p], "role": role}], lr=0.01, weight_decay=0.1, fused=True)
    p.grad = g
    opt.step()
    m_new = opt.state[p]["exp_avg"]
    expected = _reference_tiger_theta(theta0, m_new, 0.01, 0.1, rows=role == "embedding")
    assert same_bits(p, expected)


@pytest.mark.parametrize("role", ["weight", "embedding"])
@pytest.mark.parametrize("scale", [4.9e-324, 1e-200, 1e200, 1e300])
def test_tiger_float64_rms_of_tiny_and_huge_theta_matches_the_for_loop(role, scale):
    """Squares that underflow (down to the smallest subnormal, whose rescaling factor 2^1074 is
    not a double) or overflow are redone with an exact power-of-two scaling. Found by the
    conformance suite (ci profile): θ = 2^-1074 gave η = NaN."""
    theta0 = torch.tensor([[1.0, -1.0, 0.5], [1.0, 0.25, 1.0]], dtype=F64) * scale
    out = []
    for path in ({"foreach": False}, {"fused": True}):
        p = theta0.clone()
        # λ = 0: with huge θ, keep = 1 − η·λ (η ∝ RMS(θ)) would overflow θ·keep by the spec itself
        opt = Tiger([{"params": [p], "role": role}], lr=1e-3, weight_decay=0.0, **path)
        p.grad = torch.tensor([[1.0, -1.0, 0.0], [-2.0, 3.0, 1.0]], dtype=F64)
        opt.step()
        out.append(p)
    assert torch.isfinite(out[1]).all()
    assert torch.equal(out[0], out[1])  # exact squares of scaled values: the same η here


@pytest.mark.parametrize("cls", [Lion, Tiger], ids=["lion", "tiger"])
def test_results_do_not_depend_on_the_thread_count(cls):
    threads = torch.get_num_threads()
    out = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            sizes = [(70_000,), (300, 77), (5,)]
            out.append(_run(cls, F32, F32, {"fused": True}, sizes=sizes, lr=0.01,
                            weight_decay=0.1, grads_finite=True))
    finally:
        torch.set_num_threads(threads)
    (a, opt_a), (b, opt_b) = out
    _assert_same_state(a, opt_a, b, opt_b)


@pytest.mark.parametrize("role", ["weight", "embedding"])
def test_many_tensors_and_rows_longer_than_a_work_item_in_one_call(role):
    """301 tensors of odd shapes in one call, one of them with rows longer than a work item:
    every θ is the independent reference's, bit for bit."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(i % 7 + 1, 13 * (i % 5) + 2) for i in range(300)] + [(2, 20_000)]
    theta0 = [torch.randn(s, generator=gen) for s in shapes]
    params = [t.clone() for t in theta0]
    opt = Tiger([{"params": params, "role": role}], lr=0.01, weight_decay=0.1, fused=True)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    opt.step()
    for t0, p in zip(theta0, params, strict=True):
        expected = _reference_tiger_theta(t0, opt.state[p]["exp_avg"], 0.01, 0.1,
                                          rows=role == "embedding")
        assert same_bits(p, expected), tuple(p.shape)


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@pytest.mark.skipif("avx2" not in _cpu_flags(), reason="needs an x86 CPU with AVX2")
def test_16_bit_configurations_take_the_avx2_vector_loops():
    """The bit-identity tests above pass with or without the vector loops: this one checks
    that they are really taken (a silently scalar build would be 1.5-2.5x slower)."""
    def cfg(algorithm, theta, grad, mom, **switches):
        compute = F64 if F64 in (theta, mom) else F32
        return _native.config(algorithm, theta, grad, mom, compute, switches)

    assert _native.vectorised(cfg("lion", BF16, BF16, BF16))
    assert _native.vectorised(cfg("signum", BF16, BF16, F32))
    assert _native.vectorised(cfg("tiger", F32, F32, BF16, RMS=1, LAST=1, NAN_MODE=2))
    if "f16c" in _cpu_flags():
        assert _native.vectorised(cfg("lion", F16, F16, F16, MAXIMIZE=1))
    # by design scalar: all-float (memory-bound already), compensation, double compute
    assert not _native.vectorised(cfg("lion", F32, F32, F32))
    assert not _native.vectorised(cfg("lion", BF16, BF16, F32, COMP=1))
    assert not _native.vectorised(cfg("lion", BF16, BF16, F64))


def test_dtypes_the_kernel_does_not_take_go_to_the_compiled_path(monkeypatch):
    """float8 θ: not a native dtype, so ``fused=True`` steps it through torch.compile (before,
    the first step's kernel prefetch raised TypeError), with the for-loop's result."""
    dt = torch.float8_e4m3fn
    out = []
    for path in ({"foreach": False}, {"fused": True}):
        p = torch.tensor([1.0, -2.0, 0.5, 0.0]).to(dt)
        opt = Lion([p], lr=0.25, momentum_dtype=F32, **path)
        p.grad = torch.tensor([1.0, 1.0, -1.0, 0.0]).to(dt)
        opt.step()
        out.append(p)
    assert torch.equal(out[0].view(torch.uint8), out[1].view(torch.uint8))


def test_a_step_bumps_the_autograd_version_counters():
    p = torch.nn.Parameter(torch.randn(10))
    opt = Lion([p], lr=0.01, fused=True)
    p.grad = torch.randn(10)
    before = p._version
    opt.step()
    assert p._version > before
    assert opt.state[p]["exp_avg"]._version > 0


# ------------------------------------------------------------------------------ build and cache


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty kernel cache and no kernels loaded or failed in this process."""
    monkeypatch.setenv("LIONSPEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_native, "_LOADED", {})
    monkeypatch.setattr(_native, "_BROKEN", [])
    return tmp_path


def _fake_compiler(path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_kernel_is_built_once_then_loaded_from_the_cache(fresh, tmp_path):
    log = tmp_path / "calls.log"
    cc = _fake_compiler(tmp_path / "cc.sh", f'[ "$1" = --version ] || echo x >> "{log}"\n'
                                            f'exec {_native._compiler()} "$@"')
    code = ("import torch; from lionspec.impls.torch import Lion; p = torch.ones(5); "
            "o = Lion([p], lr=0.5, fused=True); p.grad = torch.ones(5); o.step(); "
            "print(p.tolist())")
    env = {**os.environ, "CC": cc, "LIONSPEC_FUSED_CPU": "native",
           "LIONSPEC_CACHE_DIR": str(fresh)}
    outs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert outs[0] == outs[1] == "[0.5, 0.5, 0.5, 0.5, 0.5]\n"
    assert log.read_text().count("x") == 1  # the second process loaded the cached kernel
    assert len(list((fresh / "native").glob("lionspec_*.so"))) == 1


def test_a_failing_compiler_falls_back_to_torch_compile_under_auto(fresh, monkeypatch, tmp_path):
    cc = _fake_compiler(tmp_path / "cc.sh", 'echo "cc: fatal error: no" >&2; exit 1')
    monkeypatch.setattr(_native, "_compiler", lambda: cc)
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", "native")
    p = torch.ones(8)
    opt = Lion([p], lr=0.5, fused=True)
    p.grad = torch.ones(8)
    with pytest.raises(_native.NativeBuildError, match=r"(?s)cc\.sh .* failed \(exit 1\).*fatal"):
        opt.step()
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", "auto")
    with pytest.warns(RuntimeWarning, match="using torch.compile instead"):
        opt.step()
    assert _native.backend() == "compile"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # one warning per process, not per step
        opt.step()
    assert p.tolist() == [0.0] * 8  # the failed step changed nothing; 1 − 2·0.5 after two


def test_no_compiler_means_torch_compile_under_auto_and_an_error_under_native(fresh,
                                                                             monkeypatch):
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", "auto")
    assert _native.backend() == "compile"
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", "native")
    with pytest.raises(_native.NativeBuildError, match="no C compiler found"):
        _native.kernels([_native.config("lion", F32, F32, F32, F32, {})])


def test_an_unwritable_cache_is_a_build_error_naming_the_setting(fresh, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LIONSPEC_CACHE_DIR", str(blocker))  # native/ cannot be made under a file
    with pytest.raises(_native.NativeBuildError, match="LIONSPEC_CACHE_DIR to a writable"):
        _native.kernels([_native.config("lion", F32, F32, F32, F32, {"MAXIMIZE": 1})])


def test_a_corrupt_cached_kernel_is_a_build_error_saying_what_to_delete(fresh):
    cfg = _native.config("lion", F32, F32, F32, F32, {"B1_ZERO": 1})
    path = _native._path(cfg)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a shared object")
    with pytest.raises(_native.NativeBuildError, match="delete it to rebuild"):
        _native.kernels([cfg])


def test_a_bad_backend_name_is_a_value_error(monkeypatch):
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", "gpu")
    with pytest.raises(ValueError, match=r"LIONSPEC_FUSED_CPU must be one of .*'gpu'"):
        _native.backend()


def test_config_rejects_unknown_switches_and_dtypes():
    with pytest.raises(ValueError, match="unknown native kernel switches"):
        _native.config("lion", F32, F32, F32, F32, {"FAST": 1})
    with pytest.raises(TypeError, match="param"):
        _native.config("lion", torch.int32, F32, F32, F32, {})

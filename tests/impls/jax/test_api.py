"""The optax API of lionspec.impls.jax: invariants in the style of optax's own tests.

Shapes and dtypes of state and updates, jit against no jit (bit for bit), no recompilation when a
schedule's value changes, masks, schedules, roles, accumulation, the NaN rule's scopes, agreement
with ``optax.lion`` where both follow the same expression, validation, and the platform facts the
numerics rely on (``jnp.sign`` propagates NaN; XLA:CPU flushes subnormals).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
from jax.tree_util import DictKey  # noqa: E402

from lionspec.impls.jax import lion, role_from_path, signum, tiger  # noqa: E402

from .test_spec import x64  # noqa: E402

FACTORIES = {
    "lion": lambda **kw: lion(1e-3, weight_decay=0.1, **kw),
    "signum": lambda **kw: signum(1e-3, weight_decay=0.1, **kw),
    "tiger": lambda **kw: tiger(1e-3, accumulation_steps=2, **kw),
}


def params_tree():
    rng = np.random.default_rng(0)
    return {"dense": {"kernel": jnp.asarray(rng.normal(0, 0.02, (5, 7)), jnp.float32),
                      "bias": jnp.asarray(rng.normal(0, 0.02, (7,)), jnp.bfloat16)},
            "norm": {"scale": jnp.asarray(1 + rng.normal(0, 0.02, (7,)), jnp.float16)},
            "embed": {"embedding": jnp.asarray(rng.normal(0, 1, (3, 7)), jnp.bfloat16)}}


def grads_like(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(0, 1e-3, p.shape), p.dtype), params)


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def trees_same_bits(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        same_bits(x, y) for x, y in zip(la, lb, strict=True))


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("mu_dtype", [None, jnp.float32, jnp.bfloat16])
def test_init_and_update_shapes_and_dtypes(name, mu_dtype):
    params = params_tree()
    kw = {"roles": role_from_path} if name == "tiger" else {}
    opt = FACTORIES[name](mu_dtype=mu_dtype, **kw)
    state = opt.init(params)
    assert state.count.dtype == jnp.int32 and int(state.count) == 0
    for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(state.mu), strict=True):
        assert m.shape == p.shape and m.dtype == (mu_dtype or p.dtype)
        assert not np.asarray(m, dtype=np.float32).any()
    updates, new_state = opt.update(grads_like(params, 1), state, params)
    assert int(new_state.count) == 1
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for p, u, m in zip(jax.tree.leaves(params), jax.tree.leaves(updates),
                       jax.tree.leaves(new_state.mu), strict=True):
        assert u.shape == p.shape and u.dtype == jnp.float32  # the compute dtype
        assert m.dtype == (mu_dtype or p.dtype)
    new_params = optax.apply_updates(params, updates)
    for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(new_params), strict=True):
        assert q.dtype == p.dtype and q.shape == p.shape


def test_float64_parameters_compute_in_float64():
    with x64():
        params = {"a": jnp.ones(3, jnp.float64), "b": jnp.ones(3, jnp.float32)}
        opt = lion(1e-3, weight_decay=0.1)
        u, state = opt.update({"a": jnp.ones(3, jnp.float64), "b": jnp.ones(3, jnp.float32)},
                              opt.init(params), params)
        assert u["a"].dtype == jnp.float64 and u["b"].dtype == jnp.float32
        assert state.mu["a"].dtype == jnp.float64
        u, _ = lion(1e-3, mu_dtype=jnp.float64).update(
            {"b": jnp.ones(3, jnp.float32)}, lion(1e-3, mu_dtype=jnp.float64).init(
                {"b": jnp.ones(3, jnp.float32)}), {"b": jnp.ones(3, jnp.float32)})
        assert u["b"].dtype == jnp.float64
        assert float(u["b"][0]) == -1e-3  # η carried in float64, exactly the float 1e-3


@pytest.mark.parametrize("name", list(FACTORIES))
def test_jit_and_no_jit_are_bit_identical(name):
    params = params_tree()
    kw = {"roles": role_from_path} if name == "tiger" else {}
    opt = FACTORIES[name](**kw)
    s_eager = s_jit = opt.init(params)
    p_eager = p_jit = params
    update_jit = jax.jit(opt.update)
    for t in range(4):
        g = grads_like(params, t)
        u_eager, s_eager = opt.update(g, s_eager, p_eager)
        u_jit, s_jit = update_jit(g, s_jit, p_jit)
        assert trees_same_bits(u_eager, u_jit) and trees_same_bits(s_eager, s_jit)
        p_eager = optax.apply_updates(p_eager, u_eager)
        p_jit = jax.jit(optax.apply_updates)(p_jit, u_jit)
        assert trees_same_bits(p_eager, p_jit)


def _count_backend_compiles(fn) -> int:
    events: list[str] = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return len(events)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_a_schedule_does_not_recompile(name):
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 3, 20)
    params = params_tree()
    opt = {"lion": lion, "signum": signum, "tiger": tiger}[name](schedule)
    step = jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(
        *opt.update(g, s, p)), donate_argnums=(0, 1))
    state = opt.init(params)
    g = grads_like(params, 0)
    p, state = step(jax.tree.map(jnp.copy, params), state, g)  # compiles once

    def more_steps():
        nonlocal p, state
        for _ in range(5):
            p, state = step(p, state, g)
        jax.block_until_ready(p)

    assert _count_backend_compiles(more_steps) == 0
    assert step._cache_size() == 1
    assert int(state.count) == 6
    # the able-to-fail side: the counter sees a compilation (a new step function)
    fresh = jax.jit(lambda p, s, g: opt.update(g, s, p))
    assert _count_backend_compiles(lambda: jax.block_until_ready(fresh(p, state, g))) >= 1


def test_schedule_is_indexed_by_the_step_count():
    seen = []
    schedule = optax.piecewise_constant_schedule(1.0, {2: 0.5})
    opt = signum(schedule, beta=0.0)
    p, s = jnp.zeros(2), opt.init(jnp.zeros(2))
    for _ in range(3):
        u, s = opt.update(jnp.ones(2), s, p)
        seen.append(float(u[0]))
    assert seen == [-1.0, -1.0, -0.5]


@pytest.mark.parametrize("name", ["lion", "signum"])
def test_mask_selects_weight_decay(name):
    params = {"w": jnp.full((3,), 0.5), "b": jnp.full((3,), 0.5)}
    make = {"lion": lion, "signum": signum}[name]
    g = {"w": jnp.ones(3), "b": jnp.ones(3)}

    def run(**kw):
        opt = make(0.1, weight_decay=0.5, **kw)
        return opt.update(g, opt.init(params), params)[0]

    with_decay = run()
    no_decay = make(0.1).update(g, make(0.1).init(params), params)[0]
    for mask in ({"w": True, "b": False}, lambda p: {"w": True, "b": False}):
        u = run(mask=mask)
        assert same_bits(u["w"], with_decay["w"]) and same_bits(u["b"], no_decay["b"])
        assert not same_bits(u["w"], no_decay["w"])
    prefix = run(mask=False)  # a prefix: one bool for the whole tree
    assert trees_same_bits(prefix, no_decay)
    with pytest.raises(ValueError, match="mask"):
        run(mask={"w": 1.0, "b": 0.0})
    with pytest.raises(ValueError, match="mask"):
        run(mask={"w": True})


def test_lion_agrees_bit_for_bit_with_optax_lion_on_finite_float32():
    """Same expression, same roundings: optax.lion is −η·(sign(c) + λθ) too (both jitted: XLA
    contracts β·m + w·g into an FMA the same way in both)."""
    params = {"a": jnp.asarray(np.random.default_rng(0).normal(0, 0.02, (64, 33)), jnp.float32)}
    ours, ref = lion(3e-3, 0.9, 0.99, 0.1), optax.lion(3e-3, 0.9, 0.99, weight_decay=0.1)
    so, sr = ours.init(params), ref.init(params)
    po = pr = params
    ours_update, ref_update = jax.jit(ours.update), jax.jit(ref.update)
    for t in range(5):
        g = grads_like(params, t)
        uo, so = ours_update(g, so, po)
        ur, sr = ref_update(g, sr, pr)
        po, pr = optax.apply_updates(po, uo), optax.apply_updates(pr, ur)
        assert trees_same_bits(po, pr) and trees_same_bits(so.mu, sr[0].mu)


def test_where_lion_departs_from_optax_lion():
    """The spec's corners: lr = 0 leaves θ unchanged even for a NaN gradient, and an infinite θ
    with weight decay stays infinite ((1 − ηλ)·∞ = ∞); optax.lion gives NaN in both."""
    p = jnp.array([1.0, jnp.inf])
    g = jnp.array([jnp.nan, 1.0])
    ours = lion(optax.constant_schedule(0.0), weight_decay=0.1)
    u, _ = ours.update(g, ours.init(p), p)
    assert same_bits(optax.apply_updates(p, u), p)
    ours = lion(1e-3, weight_decay=0.1)
    u, _ = ours.update(jnp.ones(2), ours.init(p), p)
    assert optax.apply_updates(p, u)[1] == jnp.inf
    ref = optax.lion(1e-3, weight_decay=0.1)
    u, _ = ref.update(jnp.ones(2), ref.init(p), p)
    assert jnp.isnan(optax.apply_updates(p, u)[1])


def test_tiger_non_final_micro_steps_leave_theta_bit_identical_and_accumulate():
    params = {"w": jnp.asarray([0.3, -0.0, 0.0, -0.2], jnp.float32)}
    opt = tiger(0.1, beta=0.5, weight_decay=0.0, accumulation_steps=3)
    state = opt.init(params)
    g = [{"w": jnp.asarray(x, jnp.float32)} for x in ([1.0, 2.0, -4.0, 8.0],
                                                       [3.0, 2.0, 0.0, 8.0],
                                                       [-1.0, 2.0, 1.0, 8.0])]
    p = params
    for t in range(3):
        u, state = opt.update(g[t], state, p)
        if t < 2:
            assert same_bits(u["w"], jnp.full(4, -0.0)) and same_bits(
                optax.apply_updates(p, u)["w"], p["w"])
        p = optax.apply_updates(p, u)
    # after the window: m = (1 − β)·mean(g) (powers of two: exact), sign(m) = [1, 1, −1, 1]
    mean = np.mean([np.asarray(x["w"]) for x in g], axis=0)
    np.testing.assert_array_equal(np.asarray(state.mu["w"]), 0.5 * mean)
    eta = np.float32(0.1) * np.sqrt(np.mean(np.square(np.asarray(params["w"]))))
    np.testing.assert_array_equal(np.asarray(p["w"]), np.asarray(params["w"]) - eta *
                                  np.sign(mean))


def test_tiger_k_windows_equal_k1_on_the_mean_gradient():
    rng = np.random.default_rng(5)
    params = {"w": jnp.asarray(rng.normal(0, 0.02, (16, 8)), jnp.float32)}
    micro = [{"w": jnp.asarray(rng.normal(0, 1e-3, (16, 8)) + 2e-3, jnp.float32)}
             for _ in range(4)]  # positive mean: no sign near 0
    acc, one = tiger(1e-2, accumulation_steps=4), tiger(1e-2)
    sa, p = acc.init(params), params
    for g in micro:
        u, sa = acc.update(g, sa, p)
        p = optax.apply_updates(p, u)
    mean = {"w": jnp.mean(jnp.stack([g["w"] for g in micro]), axis=0)}
    u1, _ = one.update(mean, one.init(params), params)
    assert same_bits(p["w"], optax.apply_updates(params, u1)["w"])


def test_tiger_roles_pytree_callable_and_by_name():
    params = params_tree()
    by_name = jax.tree_util.tree_map_with_path(lambda path, _: role_from_path(path), params)
    assert by_name == {"dense": {"kernel": "weight", "bias": "bias"},
                       "norm": {"scale": "scale"}, "embed": {"embedding": "embedding"}}
    g = grads_like(params, 3)
    u1, _ = tiger(1e-3, roles=by_name).update(g, tiger(1e-3).init(params), params)
    u2, _ = tiger(1e-3, roles=role_from_path).update(g, tiger(1e-3).init(params), params)
    assert trees_same_bits(u1, u2)
    u3, _ = tiger(1e-3).update(g, tiger(1e-3).init(params), params)  # all "weight"
    assert not same_bits(u1["norm"]["scale"], u3["norm"]["scale"])
    assert role_from_path((DictKey("x"), DictKey("gamma"))) == "scale"
    assert role_from_path((DictKey("LayerNorm"), DictKey("beta"))) == "bias"
    with pytest.raises(ValueError, match="role"):
        tiger(1e-3, roles={"a": "kernel"})
    opt = tiger(1e-3, roles=lambda path: "kernel")
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"roles\['dense'\]\['bias'\]"):
        opt.update(g, state, params)


def test_tiger_nan_scopes():
    params = {"a": jnp.full((4,), 0.5), "b": jnp.full((3,), 2.0)}
    g = {"a": jnp.asarray([1.0, jnp.nan, 1.0, 1.0]), "b": jnp.ones(3)}
    for scope in ("tensor", "global"):
        opt = tiger(1e-2, nan_scope=scope, roles={"a": "weight", "b": "scale"})
        state = opt.init(params)
        state = state._replace(mu=jax.tree.map(lambda m: m + 0.25, state.mu))
        u, new = opt.update(g, state, params)
        p = optax.apply_updates(params, u)
        np.testing.assert_array_equal(np.asarray(p["a"]), np.float32(0.5) * np.float32(0.99))
        assert same_bits(new.mu["a"], state.mu["a"])  # the NaN rule keeps the momentum
        if scope == "global":  # b skips too: shrunk towards its centre 1, momentum kept
            assert same_bits(new.mu["b"], state.mu["b"])
            # fl(fl(fl(θ − 1)·s) + 1) in float32: the NaN rule's evaluation, exactly
            want = (np.float32(2.0) - np.float32(1)) * np.float32(0.99) + np.float32(1)
            assert float(p["b"][0]) == float(want)
        else:
            assert not same_bits(new.mu["b"], state.mu["b"])
    inf = {"a": jnp.asarray([1.0, jnp.inf, 1.0, 1.0]), "b": jnp.ones(3)}
    for check, caught in (("nan", False), ("nonfinite", True)):
        opt = tiger(1e-2, nan_check=check)
        _, new = opt.update(inf, opt.init(params), params)
        assert bool(jnp.all(new.mu["a"] == 0)) == caught


def test_optax_combinators():
    params = params_tree()
    g = grads_like(params, 2)
    chained = optax.chain(optax.clip_by_global_norm(1.0), lion(1e-3))
    u, _ = chained.update(g, chained.init(params), params)
    assert jax.tree.structure(u) == jax.tree.structure(params)
    multi = optax.MultiSteps(lion(1e-3), every_k_schedule=2)  # accumulated Lion (the spec's)
    s = multi.init(params)
    u, s = multi.update(g, s, params)
    assert all(not np.asarray(x, dtype=np.float32).any() for x in jax.tree.leaves(u))
    u, s = multi.update(g, s, params)
    assert any(np.asarray(x, dtype=np.float32).any() for x in jax.tree.leaves(u))


@pytest.mark.parametrize(("call", "name"), [
    (lambda: lion(-1e-3), "learning_rate"),
    (lambda: lion(float("nan")), "learning_rate"),
    (lambda: lion(1e-3, b1=1.0), "b1"),
    (lambda: lion(1e-3, b2=-0.1), "b2"),
    (lambda: lion(1e-3, weight_decay=-1.0), "weight_decay"),
    (lambda: lion(1e-3, mu_dtype=jnp.int32), "mu_dtype"),
    (lambda: signum(1e-3, beta=1.5), "beta"),
    (lambda: tiger(1e-3, accumulation_steps=0), "accumulation_steps"),
    (lambda: tiger(1e-3, accumulation_steps=2.0), "accumulation_steps"),
    (lambda: tiger(1e-3, shrink_ratio=0.0), "shrink_ratio"),
    (lambda: tiger(1e-3, nan_check="inf"), "nan_check"),
    (lambda: tiger(1e-3, nan_scope="model"), "nan_scope"),
    (lambda: tiger(1e-3, roles="kernel"), "role"),
])
def test_bad_hyperparameters_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("name", list(FACTORIES))
def test_update_needs_params(name):
    opt = FACTORIES[name]()
    with pytest.raises(ValueError, match="params"):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)))


# --- platform facts the numerics rely on (docs/jax.md) --------------------------------------------

def test_jnp_sign_propagates_nan_and_keeps_signed_zeros():
    x = jnp.asarray([jnp.nan, -0.0, 0.0, jnp.inf, -jnp.inf, 2.0**-126], jnp.float32)
    for f in (jnp.sign, jax.jit(jnp.sign)):
        s = np.asarray(f(x))
        assert np.isnan(s[0]) and np.signbit(s[1]) and s[1] == 0 and not np.signbit(s[2])
        assert list(s[3:]) == [1.0, -1.0, 1.0]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's flush-to-zero")
def test_xla_cpu_flushes_subnormals():
    """Why the judged tests declare FTZ/DAZ (tests/impls/jax/_judge.py)."""
    sub = jnp.asarray([2.0**-130], jnp.float32)
    assert float(jax.jit(lambda x: x * 1.5)(sub)[0]) == 0.0
    assert float(jax.jit(lambda x: x * 2.0**-10)(jnp.asarray([2.0**-120], jnp.float32))[0]) == 0

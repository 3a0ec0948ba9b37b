"""Sharded parameters give the same results as unsharded ones (8 simulated CPU devices).

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before jax is imported, so the
run happens in a subprocess. It steps Lion, SIGNUM and Tiger (every role, a window of 2, a NaN in
one shard, per-tensor and global NaN scopes) on parameters sharded over 8 devices along different
axes, and on the same parameters on one device; the parent compares the saved results bit for
bit (Tiger's RMS and NaN flag are reductions over all shards: XLA inserts the all-reduces) and
judges the sharded steps against the spec.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

from ._judge import judge

SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import jax, jax.numpy as jnp, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from lionspec.impls.jax import lion, signum, tiger

    assert jax.device_count() == 8, jax.devices()
    out = sys.argv[1]
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("x", "y"))
    rng = np.random.default_rng(7)
    shapes = {"w": (16, 12), "e": (8, 24), "r": (8, 24), "b": (24,), "s": (32,)}
    specs = {"w": P("x", "y"), "e": P(("x", "y"), None), "r": P("y", "x"), "b": P("x"),
             "s": P(("x", "y"))}
    params = {k: jnp.asarray(rng.normal(0, 0.02, v) + (1.0 if k == "s" else 0.0), jnp.float32)
              for k, v in shapes.items()}
    grads = []
    for t in range(4):
        g = {k: rng.normal(0, 1e-3, v).astype(np.float32) for k, v in shapes.items()}
        if t == 2:
            g["w"][13, 7] = np.nan   # in one shard only
        grads.append(g)
    roles = {"w": "weight", "e": "embedding", "r": "embedding", "b": "bias", "s": "scale"}
    opts = {
        "lion": lion(1e-3, weight_decay=0.1),
        "signum": signum(1e-3, weight_decay=0.1),
        "tiger": tiger(1e-3, accumulation_steps=2, roles=roles),
        "tiger_global": tiger(1e-3, roles=roles, nan_scope="global"),
    }

    def run(opt, sharded):
        shard = lambda tree: {k: jax.device_put(v, NamedSharding(mesh, specs[k]))
                              for k, v in tree.items()} if sharded else tree
        p = shard(params)
        state = opt.init(p)
        if sharded:
            state = state._replace(mu=shard(state.mu))
        step = jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(
            *opt.update(g, s, p)))
        saved = []
        for g in grads:
            g = shard({k: jnp.asarray(v) for k, v in g.items()})
            before = (p, state.mu)
            p, state = step(p, state, g)
            if sharded:
                assert all(len(v.sharding.device_set) == 8 for v in p.values()), p
            saved.append((before, p, state.mu))
        return saved

    arrays = {}
    for name, opt in opts.items():
        for sharded in (False, True):
            for t, ((p0, m0), p1, m1) in enumerate(run(opt, sharded)):
                for k in shapes:
                    tag = f"{name}/{int(sharded)}/{t}/{k}"
                    arrays[tag + "/p0"] = np.asarray(p0[k])
                    arrays[tag + "/m0"] = np.asarray(m0[k])
                    arrays[tag + "/p1"] = np.asarray(p1[k])
                    arrays[tag + "/m1"] = np.asarray(m1[k])
    for t, g in enumerate(grads):
        for k, v in g.items():
            arrays[f"grad/{t}/{k}"] = v
    np.savez(out, **arrays)
''')

ROLES = {"w": "weight", "e": "embedding", "r": "embedding", "b": "bias", "s": "scale"}
#: tensors of Tiger whose RMS is reduced across devices: "w" (whole tensor, split on both axes)
#: and "r" (embedding rows split over "x"); "e" has whole rows on each device
CROSS_DEVICE_RMS = {"w", "r"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding") / "results.npz"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("name", ["lion", "signum", "tiger", "tiger_global"])
def test_sharded_equals_unsharded_bit_for_bit(results, name):
    """Everything elementwise or reduced exactly (the NaN flag) is bit-identical; Tiger's θ of a
    tensor whose RMS sum is split across devices may differ by the summation order only (XLA
    reduces each shard, then all-reduces): it is judged against the spec below instead."""
    for t in range(4):
        for k in ROLES:
            for what in ("p1", "m1"):
                if name.startswith("tiger") and what == "p1" and k in CROSS_DEVICE_RMS:
                    continue
                one = results[f"{name}/0/{t}/{k}/{what}"]
                many = results[f"{name}/1/{t}/{k}/{what}"]
                assert _bits(one) == _bits(many), f"{name} step {t} {k} {what}"


@pytest.mark.parametrize("name", ["tiger", "tiger_global"])
def test_sharded_tiger_conforms_and_applies_the_nan_rule_across_shards(results, name):
    k_acc = 2 if name == "tiger" else 1
    for t in range(4):
        for k, role in ROLES.items():
            r = {w: results[f"{name}/1/{t}/{k}/{w}"] for w in ("p0", "m0", "p1", "m1")}
            g = results[f"grad/{t}/{k}"]
            if name == "tiger_global":  # the global flag: every tensor follows the NaN rule
                g = g.copy()
                if t == 2:
                    g.reshape(-1)[0] = np.nan
            hyper = dict(lr=1e-3, beta=0.965, weight_decay=0.01, accumulation_steps=k_acc,
                         role=role, shrink_ratio=0.99, step=t)
            v = judge("tiger", r["p0"], g, r["m0"], r["p1"], r["m1"], hyper=hyper,
                      param="float32", momentum="float32", compute="float32")
            assert v.ok, f"{name} step {t} {k}:\n{v.report()}"
        if t == 2:  # the NaN in one shard of w: the whole tensor shrank, its momentum kept
            w0, w1 = results[f"{name}/1/2/w/p0"], results[f"{name}/1/2/w/p1"]
            assert np.all((np.abs(w1) < np.abs(w0)) | (w0 == 0))
            assert _bits(results[f"{name}/1/2/w/m1"]) == _bits(results[f"{name}/1/2/w/m0"])

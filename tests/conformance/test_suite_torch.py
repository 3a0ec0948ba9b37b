"""lionspec's torch optimizers through the WHOLE conformance suite: every registered check.

Lion, Signum and Tiger on the for-loop and foreach paths, and Lion on the fused
(``torch.compile``) path, with the profile they declare: every dtype, a selectable float32
momentum, mul+add evaluation of c, compute "auto" (float64 parameters in float64).

Fused runs for Lion only: on a 2-core CPU a fused target spends most of its time compiling
kernels for the dtype and momentum-dtype combinations the suite uses (measured with a cold
inductor cache: fused Lion 55 s, fused Signum and Tiger ~30-40 s each; this file 81 s cold,
36 s warm). All three fused targets would take ~2.5 min cold; the fused code is shared by the
three algorithms (``impls/torch/_fused.py``), and ``tests/impls/torch/test_paths.py`` compares
Signum's and Tiger's fused paths with their for-loops.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import lionspec.conformance.checks.api  # noqa: F401  (registers the API checks)
from lionspec.conformance import CHECKS, Profile, Target, TorchOptimizer, run_suite
from lionspec.impls.torch import Lion, Signum, Tiger

PROFILE = Profile(c_form="muladd", dtypes=("float64", "float32", "float16", "bfloat16"),
                  momentum_dtypes=("float32",))
CLASSES = {"lion": Lion, "signum": Signum, "tiger": Tiger}
PATHS = {"for-loop": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
TARGETS = [(alg, path) for alg in CLASSES for path in ("for-loop", "foreach")] + [
    ("lion", "fused")]


@pytest.mark.parametrize(("algorithm", "path"), TARGETS, ids=[f"{a}-{p}" for a, p in TARGETS])
def test_our_torch_optimizer_conforms_to_the_whole_suite(algorithm, path):
    target = Target(f"lionspec.impls.torch.{CLASSES[algorithm].__name__} ({path})", algorithm,
                    TorchOptimizer(CLASSES[algorithm], kwargs=PATHS[path]), PROFILE)
    report = run_suite(target, profile="quick")
    assert report.verdict == "conforms", report.text()
    assert [r.id for r in report.results] == list(CHECKS)
    for r in report.results:  # every core and API check that applies ran and passed
        check = CHECKS[r.id]
        if check.fn.__module__.rsplit(".", 1)[-1] in ("core", "api"):
            applicable = algorithm in check.algorithms
            assert r.status == ("pass" if applicable else "skip"), (r.id, r.status, r.summary)

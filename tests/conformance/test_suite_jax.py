"""lionspec.impls.jax through the whole conformance suite, each in its own process.

Each target runs in a worker subprocess (as ``lionspec check`` runs it): it enables float64
(``JAX_ENABLE_X64``) for its own process only, and XLA:CPU's flush-to-zero is declared in its
profile (``ftz=True``), so it is judged with the FTZ bounds of ``lionspec.conformance.ftz``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

from lionspec.conformance.runner import RunPlan, run_one


@pytest.mark.parametrize("name", ["lionspec-jax:lion", "lionspec-jax:signum",
                                  "lionspec-jax:tiger"])
def test_our_jax_transformation_conforms_to_the_whole_suite(name):
    report = run_one(name, RunPlan((name,), profile="quick", timeout=600))
    failed = [(c["id"], c["summary"], c["failures"][:3]) for c in report["checks"]
              if c["status"] != "pass" and c["status"] != "skip"]
    assert report["verdict"] == "conforms", (report.get("error"), failed)
    ran = {c["id"] for c in report["checks"] if c["status"] == "pass"}
    assert {"single-step", "multi-step", "nan-inf", "drift", "float64"} <= ran

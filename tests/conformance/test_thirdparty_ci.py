"""The third-party packages CI installs, through ``lionspec check``'s runner (profile quick).

For each, the set of failing checks must be exactly the set its expectations file
(``conformance/expectations/<package>.json``) lists as xfail: a new deviation (a regression
upstream, or of the suite) fails this test, and so does an expectation that no longer fails
(fixed upstream: the file must be updated). Packages that are not installed are skipped.
"""

from __future__ import annotations

import pytest

from lionspec.conformance import expectations
from lionspec.conformance.registry import REGISTRY
from lionspec.conformance.runner import RunPlan, run_one

#: what CI checks: the packages of the ``thirdparty`` extra (plus timm when installed)
CI_TARGETS = ["lion-pytorch:Lion", "lion-pytorch:foreach.Lion", "pytorch-optimizer:Lion",
              "optimi:Lion", "optax:lion", "timm:Lion"]


@pytest.mark.parametrize("name", CI_TARGETS)
def test_third_party_deviations_are_exactly_the_expected_ones(name):
    entry = REGISTRY[name]
    if not entry.installed():
        pytest.skip(f"{entry.module} is not installed")
    report = run_one(name, RunPlan((name,), profile="quick", timeout=600))
    assert report["verdict"] in ("conforms", "deviates"), report.get("error")
    failed = {c["id"]: c.get("diagnosis", "") for c in report["checks"]
              if c["status"] in ("fail", "error")}
    expected = {check for (target, check), e in expectations.load().items()
                if target == name and e.kind == "xfail"}
    unexpected = {k: v for k, v in failed.items() if k not in expected}
    stale = expected - set(failed)
    assert not unexpected and not stale, (
        f"{name} {report['version']}: new deviations {unexpected}; expected but now passing "
        f"{sorted(stale)}")


def test_every_expectation_names_a_registered_target_and_check():
    from lionspec.conformance.checks import CHECKS

    for (target, check), e in expectations.load().items():
        assert target in REGISTRY, target
        assert check in CHECKS, (target, check)
        assert e.link.startswith("https://"), e

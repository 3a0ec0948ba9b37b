"""``pytest --pyargs lionspec.conformance --lionspec-target=TARGET``: one test per check, with
skips and expectation-driven xfails (run in a subprocess, as a user would)."""

from __future__ import annotations

import json
import subprocess
import sys

FROZEN = "tests.conformance._impls:lion_nan_freeze"


def _pytest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "lionspec.conformance",
                           "-q", "-rsx",
                           "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, timeout=300)


def test_a_deviation_fails_its_check_and_passes_the_others():
    r = _pytest(f"--lionspec-target={FROZEN}", "--lionspec-profile=quick",
                "--lionspec-check=nan-inf", "--lionspec-check=sign-zero")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 failed, 1 passed" in r.stdout
    assert "consistent with nan:freeze" in r.stdout


def test_an_expected_deviation_is_an_xfail_with_its_reason_code_and_link(tmp_path):
    path = tmp_path / "expected.json"
    path.write_text(json.dumps({"entries": [{
        "target": FROZEN, "check": "nan-inf", "kind": "xfail", "code": "nan:freeze",
        "link": "https://example.org/issue/1", "note": "torch.sign(NaN) = 0"}]}))
    r = _pytest(f"--lionspec-target={FROZEN}", "--lionspec-profile=quick",
                "--lionspec-check=nan-inf", f"--lionspec-expectations={path}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 xfailed" in r.stdout and "[nan:freeze]" in r.stdout
    assert "https://example.org/issue/1" in r.stdout


def test_without_a_target_every_check_is_skipped():
    r = _pytest("--lionspec-check=nan-inf")
    assert r.returncode == 0 and "1 skipped" in r.stdout, r.stdout + r.stderr

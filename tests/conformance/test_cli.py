"""``lionspec selfcheck``: exit codes, output, and that it catches a broken oracle; target
patterns of ``lionspec check``."""

from __future__ import annotations

import numpy as np
import pytest

from lionspec import spec
from lionspec.conformance import cli, selfcheck


def test_selfcheck_passes_on_the_real_oracle(capsys):
    assert cli.main(["selfcheck", "--cases", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "selfcheck passed" in out
    for algorithm in ("lion", "signum", "tiger"):
        assert f"golden vectors: {algorithm}" in out and f"exact oracle: {algorithm}" in out


def test_selfcheck_fails_with_one_line_per_mismatch_when_the_oracle_is_broken(monkeypatch, capsys):
    real = spec.lion_step

    def three_ulps_off(*args, **kwargs):  # outside the two-ulp contract everywhere: caught
        p, m = real(*args, **kwargs)
        with np.errstate(over="ignore"):
            for _ in range(3):
                p = np.nextafter(p, np.inf)
        return p, m

    monkeypatch.setattr(selfcheck.spec, "lion_step", three_ulps_off)
    assert cli.main(["selfcheck", "--algorithm", "lion", "--cases", "5"]) == 1
    out = capsys.readouterr().out
    assert "selfcheck FAILED" in out
    assert "param[0]: observed 0x" in out and "expected 0x" in out


def test_selfcheck_catches_a_wrong_sign_decision(monkeypatch):
    real = spec.lion_interp

    def naive(grad, exp_avg, *, beta1=0.9):
        c, _ = real(grad, exp_avg, beta1=beta1)
        g, m = np.asarray(grad, float), np.asarray(exp_avg, float)
        return c, np.sign(beta1 * m + (1 - beta1) * g)

    monkeypatch.setattr(selfcheck.spec, "lion_interp", naive)
    report = selfcheck.check_random("lion", cases=200, seed=1)
    assert any("sign observed" in line for line in report.failures)


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        cli.main(["selfcheck", "--cases", "-1"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main(["selfcheck", "--algorithm", "adam"])
    assert info.value.code == 2


def test_check_expands_target_patterns_over_the_registry():
    from lionspec.conformance.registry import REGISTRY
    from lionspec.conformance.runner import expand_patterns

    names, errors = expand_patterns(["lionspec-torch:*-fused", "lionspec-jax:lion",
                                     "lionspec-torch:Lion-fused"])
    assert errors == []
    assert names == ["lionspec-torch:Lion-fused", "lionspec-torch:Signum-fused",
                     "lionspec-torch:Tiger-fused", "lionspec-jax:lion"]  # no duplicates
    assert all(n in REGISTRY for n in names)


def test_check_rejects_a_pattern_that_matches_nothing(capsys):
    assert cli.main(["check", "nosuch-*"]) == 2
    assert "nosuch-*: matches no registered target" in capsys.readouterr().out

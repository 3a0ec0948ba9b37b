"""``lionspec check``: exit codes, isolation (timeouts, crashes), reports and their schema."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from importlib import resources

import jsonschema
import pytest

from lionspec.conformance import cli, registry
from lionspec.conformance.registry import Entry
from lionspec.conformance.runner import RunPlan, run_one

GOOD = "tests.conformance._impls:lion_reference"
FROZEN = "tests.conformance._impls:lion_nan_freeze"
FEW = ["--checks", "sign-zero", "nan-inf", "--profile", "quick"]


def _schema():
    text = resources.files("lionspec.conformance").joinpath("report_schema.json").read_text()
    return json.loads(text)


def test_a_conforming_target_exits_0_and_writes_valid_reports(tmp_path, capsys):
    j, x, m = tmp_path / "r.json", tmp_path / "r.xml", tmp_path / "r.md"
    assert cli.main(["check", GOOD, *FEW, "--json", str(j), "--junit", str(x),
                     "--markdown", str(m)]) == 0
    doc = json.loads(j.read_text())
    jsonschema.validate(doc, _schema())
    (target,) = doc["targets"]
    assert target["verdict"] == "conforms"
    assert [c["id"] for c in target["checks"]] == ["sign-zero", "nan-inf"]
    suites = ET.parse(x).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [GOOD] and suites[0].get("failures") == "0"
    assert "| target | version | verdict | sign-zero | nan-inf |" in m.read_text()
    assert "conforms" in capsys.readouterr().out


def test_a_deviating_target_exits_1_with_a_diagnosis_and_allow_accepts_it(tmp_path, capsys):
    j = tmp_path / "r.json"
    assert cli.main(["check", FROZEN, *FEW, "--json", str(j)]) == 1
    doc = json.loads(j.read_text())
    jsonschema.validate(doc, _schema())
    check = {c["id"]: c for c in doc["targets"][0]["checks"]}["nan-inf"]
    assert check["status"] == "fail" and check["variation"] == "nan:freeze"
    assert check["diagnosis"].startswith("consistent with nan:freeze")
    assert check["failures"] and check["repro"].startswith("Case(")
    out = capsys.readouterr().out
    assert "diagnosis: consistent with nan:freeze" in out and "reproducing case" in out
    assert cli.main(["check", FROZEN, *FEW, "--allow", "nan:freeze"]) == 0


@pytest.mark.parametrize("name", ["no-such-registered-name", "no_such_module_xyz:Lion"])
def test_an_unknown_or_unimportable_named_target_exits_2(name, capsys):
    assert cli.main(["check", name, *FEW]) == 2
    assert "error" in capsys.readouterr().out


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        cli.main(["check", GOOD, "--allow", "decay:nonsense"])
    assert exc.value.code == 2


def test_a_hanging_target_is_timed_out_and_reported():
    plan = RunPlan(("x",), "lion", "quick", checks=("sign-zero",), timeout=8.0)
    report = run_one("tests.conformance._impls:lion_hangs", plan)
    assert report["verdict"] == "error" and "timed out" in report["error"]


def test_a_crashing_target_is_reported_and_does_not_stop_the_run():
    plan = RunPlan(("x",), "lion", "quick", checks=("sign-zero",))
    report = run_one("tests.conformance._impls:lion_crashes", plan)
    assert report["verdict"] == "error" and "worker died" in report["error"]


def test_a_missing_package_is_a_not_installed_row(monkeypatch):
    entry = Entry("ghost:Lion", "lion", "no_such_package_xyz", lambda: None)
    monkeypatch.setitem(registry.REGISTRY, "ghost:Lion", entry)
    report = run_one("ghost:Lion", RunPlan(("ghost:Lion",)))
    assert report["verdict"] == "not-installed" and "no_such_package_xyz" in report["notes"][0]


def test_list_names_every_registered_target(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "lionspec-torch:Lion" in out and "lionspec-torch:Tiger-fused" in out

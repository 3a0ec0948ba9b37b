"""docs/conformance.md carries the check reference generated from the registered checks."""

from __future__ import annotations

from pathlib import Path

from lionspec.conformance.checks import CHECKS
from lionspec.conformance.docs import render

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_check_reference_in_the_docs_is_up_to_date():
    text = (DOCS / "conformance.md").read_text(encoding="utf-8")
    assert render() in text, ("docs/conformance.md is stale: regenerate its reference with "
                              "python -m lionspec.conformance.docs")


def test_every_check_documents_its_known_bad_example():
    for check in CHECKS.values():
        assert "Known-bad" in check.doc, check.id

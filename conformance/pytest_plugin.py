"""pytest entry of the conformance suite.

    pytest --pyargs lionspec.conformance --lionspec-target=TARGET [--lionspec-target=...]
           [--lionspec-algorithm=lion] [--lionspec-profile=ci] [--lionspec-expectations=PATH]
           [--lionspec-check=ID ...]

runs every check (``lionspec.conformance.test_conformance``) on each TARGET (a registered name or
``package.module:Attr``) as one pytest test per (target, check): a skipped check is a skip with
its reason, and a failure listed in the expectations (``conformance/expectations/*.json``, or
``--lionspec-expectations``) is an xfail carrying its reason code and link. Registered as a
pytest plugin (entry point ``lionspec``), so the options exist wherever lionspec is installed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pytest_addoption", "pytest_generate_tests"]


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("lionspec", "lionspec conformance suite")
    group.addoption("--lionspec-target", action="append", default=[], metavar="TARGET",
                    help="a registered name (lionspec list) or package.module:Attr; repeatable")
    group.addoption("--lionspec-algorithm", default=None,
                    choices=("lion", "signum", "tiger"),
                    help="algorithm of package.module:Attr targets (default lion)")
    group.addoption("--lionspec-profile", default="ci", choices=("quick", "ci", "thorough"),
                    help="suite profile (default ci)")
    group.addoption("--lionspec-expectations", default=None, metavar="PATH",
                    help="a JSON file of known deviations (default: the packaged ones)")
    group.addoption("--lionspec-check", action="append", default=[], metavar="ID",
                    help="run only these check ids; repeatable (default: all)")


def pytest_generate_tests(metafunc: Any) -> None:
    if "lionspec_case" not in metafunc.fixturenames:
        return
    from lionspec.conformance.checks import CHECKS

    targets = metafunc.config.getoption("--lionspec-target") or [None]
    only = metafunc.config.getoption("--lionspec-check")
    unknown = [c for c in only if c not in CHECKS]
    if unknown:
        raise ValueError(f"--lionspec-check: unknown check ids {unknown}")
    params = [(t, c) for t in targets for c in (only or CHECKS)]
    metafunc.parametrize("lionspec_case", params,
                         ids=[f"{t or 'no-target'}::{c}" for t, c in params])

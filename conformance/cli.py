"""The ``lionspec`` command line.

    lionspec check [TARGET ...] [--algorithm lion|tiger|signum] [--profile quick|ci|thorough]
                   [--json PATH] [--junit PATH] [--markdown PATH] [--allow VARIATION ...]
                   [--checks ID ...] [--timeout S] [--seed S]
    lionspec list
    lionspec selfcheck [--algorithm lion|signum|tiger ...] [--cases N] [--seed S] [--quiet]

``check`` runs the conformance suite on each TARGET (a name from ``lionspec list`` or
``package.module:Attr``; default: every registered implementation, installed or not), each in its
own subprocess with a timeout, shows progress, then a matrix of targets × checks and every
deviation with its diagnosis and a reproducing case. Exit status 0 when every checked target
conforms (deviations explained by an ``--allow``ed variation count as conforming), 1 when any
deviates or errors, 2 for usage errors and import errors of an explicitly named target.

``selfcheck`` verifies the float64 oracle: every golden vector (``lionspec.conformance.vectors``)
and ``--cases`` fresh adversarial cases per algorithm against the independent exact oracle. Exit
status 0 when everything agrees, 1 on any mismatch (each printed on one line), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import metadata
from typing import Any

from lionspec.conformance.selfcheck import Report, check_random, check_vectors

ALGORITHMS = ("lion", "signum", "tiger")


def _version() -> str:
    try:
        return metadata.version("lionspec")
    except metadata.PackageNotFoundError:  # running from a source tree without installing
        return "unknown"


def _print_report(report: Report, seconds: float, quiet: bool, limit: int = 20) -> None:
    verdict = "ok" if report.ok else f"{len(report.failures)} MISMATCHES"
    print(f"  {report.name:<48} {report.checked:>5} checked  {verdict}  ({seconds:.1f} s)",
          flush=True)
    if not quiet:
        for line in report.failures[:limit]:
            print(f"    {line}")
        if len(report.failures) > limit:
            print(f"    ... and {len(report.failures) - limit} more")


def selfcheck(algorithms: list[str], cases: int, seed: int, quiet: bool) -> int:
    print(f"lionspec {_version()} selfcheck: float64 oracle vs golden vectors and the exact oracle")
    ok = True
    for algorithm in algorithms:
        for run in (lambda a=algorithm: check_vectors(a),
                    lambda a=algorithm: check_random(a, cases=cases, seed=seed)):
            start = time.perf_counter()
            report = run()
            _print_report(report, time.perf_counter() - start, quiet)
            ok &= report.ok
    print("selfcheck passed" if ok else "selfcheck FAILED")
    return 0 if ok else 1


def _console() -> Any:
    from rich.console import Console

    # not a terminal (a pipe, a CI log, pytest's capture): wide enough for the matrix's names
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def list_targets() -> int:
    from rich.table import Table

    from lionspec.conformance.registry import REGISTRY

    table = Table(title="registered implementations (lionspec check NAME)")
    for col in ("name", "algorithm", "installed", "version", "what"):
        table.add_column(col)
    for name, e in REGISTRY.items():
        installed = e.installed()
        table.add_row(name, e.algorithm, "yes" if installed else "no",
                      e.version() if installed else "", e.description)
    _console().print(table)
    return 0


def check(args: argparse.Namespace) -> int:
    from rich.table import Table

    from lionspec.conformance import report as rep
    from lionspec.conformance.runner import (
        RunPlan,
        default_targets,
        expand_patterns,
        explicit_errors,
        run_one,
    )

    console = _console()
    named, errors = expand_patterns(args.targets)
    if named or errors:
        errors += explicit_errors(named)
        if errors:
            for line in errors:
                console.print(f"[red]error[/red] {line}")
            return 2
    names = named or default_targets(args.algorithm)
    plan = RunPlan(tuple(names), args.algorithm, args.profile, args.seed, tuple(args.allow),
                   tuple(args.checks) if args.checks else None, args.timeout)
    command = "lionspec check " + " ".join(sys.argv[2:] if argv_is_cli() else [])
    console.print(f"lionspec {_version()} check: {len(names)} target(s), profile "
                  f"{args.profile}, each in its own process (timeout {args.timeout:.0f} s)")
    results = []
    for i, name in enumerate(names, 1):
        start = time.perf_counter()
        with console.status(f"[{i}/{len(names)}] {name}") as status:
            def on_event(target: str, event: dict[str, Any], status: Any = status,
                         i: int = i) -> None:
                if event.get("event") == "check":
                    status.update(f"[{i}/{len(names)}] {target}: {event['id']} "
                                  f"({event['status']})")
            entry = run_one(name, plan, on_event)
        results.append(entry)
        colour = {"conforms": "green", "deviates": "red", "error": "magenta"}.get(
            entry["verdict"], "yellow")
        console.print(f"  [{i}/{len(names)}] {name:<40} [{colour}]{entry['verdict']}[/{colour}]"
                      f"  ({time.perf_counter() - start:.1f} s)")
    doc = rep.build(results, profile=args.profile, command=command.strip())
    header, rows = rep.matrix_rows(results)
    ids = header[3:]
    table = Table(title=f"conformance ({args.profile})", caption="✓ pass  ✗ fail  – skip  "
                  "! error;  checks: " + ", ".join(f"{n} {i}" for n, i in enumerate(ids, 1)))
    for col in header[:3]:
        table.add_column(col, no_wrap=True)
    for n in range(1, len(ids) + 1):
        table.add_column(str(n), justify="center")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for name, c in rep.deviations(results):
        console.print(f"\n[bold]{name}[/bold] [red]{c['id']}[/red]: {c.get('summary', '')}")
        if c.get("diagnosis"):
            console.print(f"  diagnosis: {c['diagnosis']}")
        for line in c.get("failures", [])[:args.lines]:
            console.print(f"  {line}", markup=False)
        if c.get("repro"):
            console.print("  reproducing case:")
            for line in c["repro"].splitlines()[:args.lines * 2]:
                console.print(f"    {line}", markup=False)
    if args.json:
        rep.write_json(doc, args.json)
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(rep.to_junit(doc))
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(rep.to_markdown(doc))
    checked = [r for r in results if r["verdict"] != "not-installed"]
    if named and any(r["verdict"] == "error" and not r.get("checks") for r in results):
        return 2
    return 0 if checked and all(r["verdict"] == "conforms" for r in checked) else 1


def argv_is_cli() -> bool:
    return len(sys.argv) > 1 and sys.argv[1] == "check"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lionspec", description="lionspec: the Lion/Tiger/SIGNUM "
                                     "reference spec and conformance tools")
    parser.add_argument("--version", action="version", version=f"lionspec {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("selfcheck",
                        help="verify the float64 oracle (golden vectors + exact oracle)")
    sc.add_argument("--algorithm", action="append", choices=ALGORITHMS,
                    help="restrict to an algorithm (repeatable; default: all)")
    sc.add_argument("--cases", type=int, default=300,
                    help="fresh adversarial cases per algorithm against the exact oracle "
                         "(default 300)")
    sc.add_argument("--seed", type=int, default=0, help="seed of the adversarial cases (default 0)")
    sc.add_argument("--quiet", action="store_true", help="print only the summary lines")
    ck = sub.add_parser("check", help="run the conformance suite on implementations "
                        "(default: every registered one)")
    ck.add_argument("targets", nargs="*", metavar="TARGET",
                    help="a name from `lionspec list` (shell patterns such as "
                         "'lionspec-torch:*' select several) or package.module:Attr")
    ck.add_argument("--algorithm", choices=ALGORITHMS, default=None,
                    help="only targets of this algorithm (and the algorithm of a "
                         "package.module:Attr target; default lion)")
    ck.add_argument("--profile", choices=("quick", "ci", "thorough"), default="quick",
                    help="how hard to look (default quick: about a minute per target)")
    ck.add_argument("--json", metavar="PATH", help="write the JSON report here")
    ck.add_argument("--junit", metavar="PATH", help="write JUnit XML here")
    ck.add_argument("--markdown", metavar="PATH", help="write a Markdown report here")
    ck.add_argument("--allow", nargs="+", default=[], metavar="VARIATION",
                    help="variations (lionspec.spec.VARIATIONS) whose deviations still conform")
    ck.add_argument("--checks", nargs="+", default=None, metavar="ID",
                    help="run only these checks")
    ck.add_argument("--timeout", type=float, default=600.0,
                    help="seconds per target before it is killed (default 600)")
    ck.add_argument("--seed", type=int, default=0, help="seed of the drawn cases (default 0)")
    ck.add_argument("--lines", type=int, default=6,
                    help="failure lines shown per deviation (default 6)")
    sub.add_parser("list", help="list the registered implementations")
    args = parser.parse_args(argv)
    if args.command == "list":
        return list_targets()
    if args.command == "check":
        from lionspec.conformance.checks import CHECKS
        from lionspec.spec import VARIATIONS

        bad = [v for v in args.allow if v not in VARIATIONS]
        if bad:
            parser.error(f"--allow: unknown variations {bad}; known: {', '.join(VARIATIONS)}")
        bad = [c for c in args.checks or [] if c not in CHECKS]
        if bad:
            parser.error(f"--checks: unknown check ids {bad}; known: {', '.join(CHECKS)}")
        if args.timeout <= 0:
            parser.error("--timeout must be > 0")
        return check(args)
    if args.cases < 0:
        parser.error("--cases must be >= 0")
    return selfcheck(args.algorithm or list(ALGORITHMS), args.cases, args.seed, args.quiet)


if __name__ == "__main__":
    sys.exit(main())

"""The ``lionspec`` command line.

    lionspec selfcheck [--algorithm lion|signum|tiger ...] [--cases N] [--seed S] [--quiet]

``selfcheck`` verifies the float64 oracle: every golden vector (``lionspec.conformance.vectors``)
and ``--cases`` fresh adversarial cases per algorithm against the independent exact oracle. Exit
status 0 when everything agrees, 1 on any mismatch (each printed on one line), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import metadata

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
    args = parser.parse_args(argv)
    if args.cases < 0:
        parser.error("--cases must be >= 0")
    return selfcheck(args.algorithm or list(ALGORITHMS), args.cases, args.seed, args.quiet)


if __name__ == "__main__":
    sys.exit(main())

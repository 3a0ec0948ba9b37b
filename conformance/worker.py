"""Run the suite on one target in this process and write its report: the runner's subprocess.

    python -m lionspec.conformance.worker TARGET --out PATH [--algorithm A] [--profile P]
                                          [--seed S] [--allow VARIATION ...] [--checks ID ...]

Progress goes to stdout as JSON lines (``{"event": "start"|"check"|"done", ...}``) that the
runner (:mod:`.runner`) turns into its progress display; the target's report (the ``targets[]``
entry of the JSON report schema) is written to ``--out``. An import or construction error is a
report with verdict ``error`` and exit status 3, so that the runner can tell it from a crash.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

__all__ = ["main"]


def _emit(event: str, **data: Any) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lionspec.conformance.worker")
    parser.add_argument("target")
    parser.add_argument("--out", required=True)
    parser.add_argument("--algorithm", default=None)
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow", nargs="*", default=[])
    parser.add_argument("--checks", nargs="*", default=None)
    args = parser.parse_args(argv)

    from .registry import REGISTRY, get_target
    from .suite import run_suite

    entry = REGISTRY.get(args.target)
    algorithm = args.algorithm or (entry.algorithm if entry else "lion")
    try:
        target = get_target(args.target, algorithm)
    except Exception as exc:  # noqa: BLE001 - any import/construction failure is this target's error
        report = {"name": args.target, "algorithm": algorithm, "version": "",
                  "verdict": "error", "profile": args.profile, "seconds": 0.0, "notes": [],
                  "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=5), "checks": []}
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f)
        _emit("done", verdict="error", error=report["error"])
        return 3
    _emit("start", name=target.name, version=target.version, algorithm=target.algorithm)

    def progress(check_id: str, result: Any) -> None:
        if result is None:
            _emit("check", id=check_id, status="running")
        else:
            _emit("check", id=check_id, status=result.status, seconds=round(result.seconds, 2))

    report = run_suite(target, profile=args.profile, checks=args.checks, seed=args.seed,
                       allow=args.allow, progress=progress)
    data = report.as_dict()
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(data, f)
    _emit("done", verdict=data["verdict"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

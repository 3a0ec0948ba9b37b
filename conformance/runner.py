"""Check many targets, each in its own subprocess with a timeout: the engine of ``lionspec check``.

Isolation: every target runs in ``python -m lionspec.conformance.worker`` so that an import
error, a crash (segfault, abort) or a hang is that target's verdict (``error``, with the reason)
and never stops the run. A target whose package is not installed is a ``not-installed`` row
without starting a process.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .registry import REGISTRY

__all__ = ["RunPlan", "run_targets"]


@dataclass(frozen=True)
class RunPlan:
    """What to run: target names, and the suite options passed to every worker."""

    targets: tuple[str, ...]
    algorithm: str | None = None
    profile: str = "ci"
    seed: int = 0
    allow: tuple[str, ...] = ()
    checks: tuple[str, ...] | None = None
    timeout: float = 600.0


def _not_installed(name: str) -> dict[str, Any]:
    entry = REGISTRY[name]
    missing = [m for m in (entry.module, *entry.needs)
               if importlib.util.find_spec(m.split(".")[0]) is None]
    return {"name": name, "algorithm": entry.algorithm, "version": "", "verdict": "not-installed",
            "profile": "", "seconds": 0.0, "notes": [f"missing: {', '.join(missing)}"],
            "checks": []}


def _error(name: str, algorithm: str, message: str, seconds: float) -> dict[str, Any]:
    return {"name": name, "algorithm": algorithm, "version": "", "verdict": "error",
            "profile": "", "seconds": round(seconds, 2), "notes": [], "error": message,
            "checks": []}


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    """Forward a worker's stdout line by line; ``None`` marks the end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def _collect(stream: Any, into: list[str]) -> None:
    into.extend(stream)


def run_one(name: str, plan: RunPlan,
            on_event: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run one target in a worker subprocess; returns its report entry."""
    entry = REGISTRY.get(name)
    algorithm = plan.algorithm or (entry.algorithm if entry else "lion")
    if entry is not None and not entry.installed():
        return _not_installed(name)
    with tempfile.TemporaryDirectory(prefix="lionspec-") as tmp:
        out = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "lionspec.conformance.worker", name, "--out", out,
               "--algorithm", algorithm, "--profile", plan.profile, "--seed", str(plan.seed)]
        if plan.allow:
            cmd += ["--allow", *plan.allow]
        if plan.checks:
            cmd += ["--checks", *plan.checks]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        errors: list[str] = []
        threading.Thread(target=_collect, args=(proc.stderr, errors), daemon=True).start()
        deadline = start + plan.timeout
        while True:
            try:
                line = lines.get(timeout=max(0.01, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line.startswith("{") and on_event:
                with contextlib.suppress(json.JSONDecodeError):
                    on_event(name, json.loads(line))
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return _error(name, algorithm, f"timed out after {plan.timeout:.0f} s (killed)",
                              time.monotonic() - start)
        proc.wait()
        stderr = "".join(errors)
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                report: dict[str, Any] = json.load(f)
            return report
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        return _error(name, algorithm, f"the worker died with exit status {proc.returncode}"
                      + (f": {tail}" if tail else ""), time.monotonic() - start)


def run_targets(plan: RunPlan,
                on_event: Callable[[str, dict[str, Any]], None] | None = None
                ) -> list[dict[str, Any]]:
    """Run every target of ``plan`` in turn (each in its own process)."""
    return [run_one(name, plan, on_event) for name in plan.targets]


def default_targets(algorithm: str | None) -> list[str]:
    """Every registered target (for ``algorithm``, when given), installed or not."""
    return [name for name, e in REGISTRY.items() if algorithm in (None, e.algorithm)]


_GLOB = frozenset("*?[")


def expand_patterns(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Named targets with shell-style patterns (``lionspec-torch:*``) expanded over the registry,
    in registry order, each name once; returns ``(names, errors)``, an error for a pattern that
    matches nothing.

    >>> expand_patterns(["lionspec-jax:l*"])
    (['lionspec-jax:lion'], [])
    """
    out: list[str] = []
    errors = []
    for name in names:
        if not _GLOB & set(name):
            if name not in out:
                out.append(name)
            continue
        hits = [t for t in REGISTRY if fnmatch.fnmatchcase(t, name)]
        if not hits:
            errors.append(f"{name}: matches no registered target (`lionspec list`)")
        out += [t for t in hits if t not in out]
    return out, errors


def explicit_errors(names: Sequence[str]) -> list[str]:
    """Usage errors of explicitly named targets: unknown names, unimportable modules."""
    errors = []
    for name in names:
        if name in REGISTRY:
            if not REGISTRY[name].installed():
                errors.append(f"{name}: not installed ({REGISTRY[name].module})")
            continue
        module, sep, attr = name.partition(":")
        if not sep or not attr:
            errors.append(f"{name}: not a registered target (`lionspec list`) nor "
                          "package.module:Attr")
        elif importlib.util.find_spec(module.split(".")[0]) is None:
            errors.append(f"{name}: cannot import {module}")
    return errors

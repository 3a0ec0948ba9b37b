"""Known deviations of third-party targets: per-package skip/xfail files.

Each ``conformance/expectations/<package>.json`` lists entries ``{"target", "check", "kind",
"code", "link", "note"}``: ``kind`` is ``xfail`` (the check is known to fail) or ``skip`` (it
cannot run there); ``code`` is machine-readable — the name of a variation of the spec
(:data:`lionspec.spec.VARIATIONS`, e.g. ``nan:freeze``) or one of :data:`CODES` — and ``link``
points at the code or issue that explains it. The pytest entry (``pytest --pyargs
lionspec.conformance --lionspec-target=...``) turns them into xfail/skip marks; the third-party
tests assert that every failure is expected and every expectation still holds.

>>> sorted(CODES)[:3]
['algorithm', 'copysign-zero', 'cuda-only']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lionspec.spec.variations import VARIATIONS

__all__ = ["CODES", "Expectation", "load"]

#: reason codes that are not variations of the spec
CODES = {
    "algorithm": "a different algorithm under the same name (e.g. cautious Lion masks updates)",
    "copysign-zero": "sign taken with copysign: ±0 moves θ by ∓η (sign(0) depends on the zero's "
                     "sign)",
    "cuda-only": "the implementation needs a CUDA device",
    "fp32-lr": "the learning rate is held in float32, also for float64 parameters",
    "ftz": "subnormals flushed to zero (platform FTZ/DAZ) without declaring it",
    "lerp-inf": "momentum formed with lerp: lerp(±Inf, g, w) is NaN where the spec's "
                "β·m + (1 − β)·g is ±Inf",
    "lr-squared-decay": "decay scaled by lr²/lr₀",
    "mutates-grad": "step() modifies the gradient",
    "narrow-term": "the gradient term (1 − β)·g is formed in the gradient's 16-bit dtype before "
                   "it meets a wider momentum (it underflows or rounds there)",
    "quantized-state": "the momentum is stored quantized (8-bit)",
    "simplified-tiger": "Tiger without its RMS learning rate, NaN rule or accumulation",
}


@dataclass(frozen=True)
class Expectation:
    """One known deviation of one target's check."""

    target: str
    check: str
    kind: str
    code: str
    link: str
    note: str = ""

    def reason(self) -> str:
        return f"[{self.code}] {self.note} ({self.link})".replace(" ()", "")


def _validate(entry: dict[str, Any], source: str) -> Expectation:
    missing = {"target", "check", "kind", "code", "link"} - set(entry)
    if missing:
        raise ValueError(f"{source}: entry {entry} lacks {sorted(missing)}")
    if entry["kind"] not in ("xfail", "skip"):
        raise ValueError(f"{source}: kind must be 'xfail' or 'skip', got {entry['kind']!r}")
    if entry["code"] not in VARIATIONS and entry["code"] not in CODES:
        raise ValueError(f"{source}: code {entry['code']!r} is neither a variation nor one of "
                         f"{sorted(CODES)}")
    return Expectation(entry["target"], entry["check"], entry["kind"], entry["code"],
                       entry["link"], entry.get("note", ""))


def load(path: str | None = None) -> dict[tuple[str, str], Expectation]:
    """Every expectation by (target, check): the packaged files, or the JSON file ``path``."""
    texts: list[tuple[str, str]] = []
    if path is not None:
        with open(path, encoding="utf-8") as f:
            texts.append((path, f.read()))
    else:
        folder = resources.files("lionspec.conformance").joinpath("expectations")
        for item in sorted(folder.iterdir(), key=lambda p: p.name):
            if item.name.endswith(".json"):
                texts.append((item.name, item.read_text(encoding="utf-8")))
    out: dict[tuple[str, str], Expectation] = {}
    for source, text in texts:
        for entry in json.loads(text)["entries"]:
            e = _validate(entry, source)
            out[(e.target, e.check)] = e
    return out

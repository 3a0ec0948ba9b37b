"""Render the check reference of ``docs/conformance.md`` from the registered checks.

    python -m lionspec.conformance.docs > docs/_checks.md

Every check's documentation paragraph is its docstring (what it proves, its bound and where that
bound is derived, its known-bad example), so the reference cannot drift from the code; a test
asserts that ``docs/conformance.md`` contains the rendered reference.
"""

from __future__ import annotations

import re
import sys

from .checks import CHECKS

__all__ = ["render"]


def _paragraphs(doc: str) -> str:
    text = re.sub(r"\n[ \t]+", "\n", doc.strip())
    return "\n".join(line.rstrip() for line in text.splitlines())


def render() -> str:
    """The Markdown reference of every registered check, in registration order."""
    out = ["| id | title | algorithms | needs |", "|---|---|---|---|"]
    for c in CHECKS.values():
        out.append(f"| [`{c.id}`](#{c.id}) | {c.title} | {', '.join(c.algorithms)} | "
                   f"{', '.join(c.requires) or '—'} |")
    out.append("")
    for c in CHECKS.values():
        out += [f"### `{c.id}`", "", f"*{c.title}.* Algorithms: {', '.join(c.algorithms)}"
                + (f"; needs: {', '.join(c.requires)}" if c.requires else "") + ".", "",
                _paragraphs(c.doc), ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())

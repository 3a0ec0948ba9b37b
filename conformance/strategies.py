"""Hypothesis strategies for conformance cases, and the driver that runs a property with them.

Values are drawn per storage dtype with subnormals and signed zeros always in scope (bfloat16
values are float32 draws rounded to bfloat16: hypothesis has no bfloat16 width). Gradients are
either free draws or *constructed* to nearly cancel the decision variable ``a·m + b·g``, where
sign decisions are hard; every draw is labelled, so a falsifying example reads as a case.

:func:`explore` runs a property over drawn cases with the suite profile's settings and returns
the minimal failing result hypothesis shrank to (or ``None``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from lionspec.spec.formats import get_format, round_to

__all__ = ["explore", "hard_grad", "values"]

_WIDTH = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 32}


def _st() -> Any:
    try:
        import hypothesis.strategies as st
    except ImportError as exc:  # pragma: no cover - hypothesis is a dependency
        raise ImportError("the conformance suite needs hypothesis: pip install hypothesis") from exc
    return st


def values(dtype: str, *, max_magnitude: float = 1e4, finite: bool = True) -> Any:
    """Floats representable in ``dtype``: subnormals, ±0 and (unless ``finite``) ±Inf/NaN in
    scope; magnitudes up to ``max_magnitude`` (keeps products and sums far from overflow)."""
    st = _st()
    width = _WIDTH[dtype]
    base = st.floats(min_value=-max_magnitude, max_value=max_magnitude, width=width,
                     allow_subnormal=True)
    pieces = [base, st.sampled_from([0.0, -0.0]),
              st.just(float(get_format(dtype).subnormal_min)),
              st.just(-float(get_format(dtype).subnormal_min))]
    if not finite:
        pieces.append(st.sampled_from([float("inf"), float("-inf"), float("nan")]))
    strategy = st.one_of(*pieces)
    if dtype == "bfloat16":
        strategy = strategy.map(lambda x: float(round_to(np.float64(x), "bfloat16")))
    return strategy


def hard_grad(m: np.ndarray, a: float, b: float, dtype: str, offsets: np.ndarray
              ) -> np.ndarray:
    """Gradients that nearly cancel ``a·m + b·g``: ``g = RN(−a·m/b)`` moved ``offsets`` ulps."""
    with np.errstate(all="ignore"):
        g = round_to(-a * m / b, dtype) if b else np.zeros_like(m)
    f = get_format(dtype)
    out = np.asarray(g, dtype=np.float64).copy()
    for _ in range(int(np.max(np.abs(offsets), initial=0))):
        step = np.sign(offsets) * (np.abs(offsets) > 0)
        ulp = np.maximum(np.abs(out) * 2.0 ** (1 - f.p), float(f.subnormal_min))
        out = round_to(out + step * ulp, dtype)
        offsets = offsets - step
    return np.where(np.isfinite(out), out, 0.0)


class _Found(AssertionError):
    """Raised inside a property to hand a failing result to :func:`explore`."""

    def __init__(self, result: Any) -> None:
        super().__init__("deviation found")
        self.result = result


def explore(settings: Any, draw_case: Callable[[Any], Any], judge: Callable[[Any], Any],
            failed: Callable[[Any], bool]) -> tuple[Any | None, int, str]:
    """Run ``judge(draw_case(data))`` over hypothesis-drawn ``data`` with the suite settings.

    Returns ``(first minimal failing result or None, examples run, hypothesis's report)``; the
    report holds the labelled draws of the falsifying example.
    """
    from hypothesis import HealthCheck, Phase, given, reporting, seed
    from hypothesis import settings as hsettings

    st = _st()
    count = [0]
    found: list[Any] = []

    phases = tuple(Phase) if getattr(settings, "shrink", True) else \
        tuple(p for p in Phase if p != Phase.shrink)

    @hsettings(max_examples=settings.max_examples, derandomize=settings.derandomize,
               phases=phases,
               database=None, deadline=None, print_blob=False, report_multiple_bugs=False,
               suppress_health_check=list(HealthCheck))
    @given(st.data())
    def prop(data: Any) -> None:
        count[0] += 1
        result = judge(draw_case(data))
        if failed(result):
            found.append(result)
            raise _Found(result)

    if not settings.derandomize:
        prop = seed(settings.seed)(prop)
    buffer = io.StringIO()
    with reporting.with_reporter(lambda text: buffer.write(f"{text}\n")):
        try:
            prop()
        except _Found as exc:
            return exc.result, count[0], buffer.getvalue()
    return None, count[0], buffer.getvalue()

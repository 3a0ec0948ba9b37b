"""Fixtures shared by the torch implementation tests."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

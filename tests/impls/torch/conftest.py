"""Fixtures shared by the torch implementation tests."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=["native", "compile"])
def fused_cpu(request, monkeypatch):
    """Run a ``fused=True`` test under each CPU backend (the C kernel, torch.compile)."""
    monkeypatch.setenv("LIONSPEC_FUSED_CPU", request.param)
    return request.param

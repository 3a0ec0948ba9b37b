"""The JAX implementation's tests need jax and optax; they skip cleanly without them."""

from __future__ import annotations

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

"""Verified implementations of Lion, Tiger and SIGNUM (torch, Triton, JAX/optax).

Each backend lives in its own subpackage and is imported explicitly, e.g.
``from lionspec.impls.torch import Lion``, so that importing :mod:`lionspec.impls` pulls in no
framework. Implementations never call :mod:`lionspec.spec` arithmetic; the conformance suite
checks them against it.
"""

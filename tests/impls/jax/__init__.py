"""Tests of lionspec.impls.jax: optax transformations checked against the spec."""

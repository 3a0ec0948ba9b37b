"""The public signatures external checks rely on, the input contract, and the docstring examples."""

from __future__ import annotations

import doctest
import importlib
import inspect

import ml_dtypes
import numpy as np
import pytest

from lionspec import spec

MODULES = ["lionspec.spec", "lionspec.spec.lion", "lionspec.spec.signum", "lionspec.spec.tiger",
           "lionspec.spec.variations", "lionspec.spec._accurate", "lionspec.spec.formats",
           "lionspec.spec.bounds", "lionspec.spec.exact", "lionspec.conformance.vectors",
           "lionspec.conformance.selfcheck", "lionspec.conformance.verdict"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0


SIGNATURES = {
    "lion_step": "(param, grad, exp_avg, *, lr, beta1=0.9, beta2=0.99, weight_decay=0.0)",
    "signum_step": "(param, grad, exp_avg, *, lr, beta=0.9, weight_decay=0.0)",
    "tiger_step": "(param, grad, exp_avg, *, step, lr, beta=0.965, weight_decay=0.01, "
                  "accumulation_steps=1, role='weight', shrink_ratio=0.99)",
}


@pytest.mark.parametrize(("name", "expected"), SIGNATURES.items())
def test_public_signature(name, expected):
    sig = inspect.signature(getattr(spec, name))
    plain = sig.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                    for p in sig.parameters.values()],
                        return_annotation=inspect.Signature.empty)
    assert str(plain) == expected


STEPS = {
    "lion": lambda p, g, m: spec.lion_step(p, g, m, lr=0.01, weight_decay=0.1),
    "signum": lambda p, g, m: spec.signum_step(p, g, m, lr=0.01, weight_decay=0.1),
    "tiger": lambda p, g, m: spec.tiger_step(p, g, m, step=0, lr=0.01),
}


@pytest.mark.parametrize("algorithm", STEPS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ml_dtypes.bfloat16])
def test_any_float_dtype_is_converted_exactly_and_never_mutated(algorithm, dtype):
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3, 4)).astype(dtype)
    g = rng.normal(size=(3, 4)).astype(dtype)
    m = rng.normal(size=(3, 4)).astype(dtype)
    copies = [a.copy() for a in (p, g, m)]
    new_p, new_m = STEPS[algorithm](p, g, m)
    for before, after in zip(copies, (p, g, m), strict=True):
        assert after.dtype == before.dtype
        assert np.array_equal(before.view(np.uint8), after.view(np.uint8))
    assert new_p.dtype == np.float64 and new_m.dtype == np.float64
    assert not np.shares_memory(new_p, p) and not np.shares_memory(new_m, m)
    ref_p, ref_m = STEPS[algorithm](p.astype(np.float64), g.astype(np.float64),
                                    m.astype(np.float64))
    assert np.array_equal(new_p, ref_p) and np.array_equal(new_m, ref_m)


@pytest.mark.parametrize("algorithm", STEPS)
def test_float64_inputs_are_not_mutated_or_aliased(algorithm):
    p, g, m = np.ones(5), np.full(5, -0.5), np.full(5, 0.25)
    new_p, new_m = STEPS[algorithm](p, g, m)
    assert np.all(p == 1.0) and np.all(g == -0.5) and np.all(m == 0.25)
    assert not np.shares_memory(new_p, p) and not np.shares_memory(new_m, m)


@pytest.mark.parametrize("algorithm", STEPS)
@pytest.mark.parametrize("shape", [(), (0,), (1,), (2, 0, 3)])
def test_zero_size_and_zero_dim(algorithm, shape):
    p, g, m = np.full(shape, 0.5), np.full(shape, 1.0), np.zeros(shape)
    new_p, new_m = STEPS[algorithm](p, g, m)
    assert new_p.shape == shape and new_m.shape == shape
    if new_p.size:
        assert np.all(new_p < 0.5)  # the gradient is positive: θ moves down


def _bad(algorithm, **override):
    base = {"lion": dict(lr=0.1), "signum": dict(lr=0.1), "tiger": dict(step=0, lr=0.1)}[algorithm]
    fn = {"lion": spec.lion_step, "signum": spec.signum_step, "tiger": spec.tiger_step}[algorithm]
    args = override.pop("_arrays", (np.ones(3), np.ones(3), np.zeros(3)))
    return lambda: fn(*args, **{**base, **override})


ERRORS = [
    ("lion", dict(lr=-1e-3), r"lr must be >= 0"),
    ("lion", dict(lr=float("nan")), r"lr must be finite"),
    ("lion", dict(lr="0.1"), r"lr must be a real number"),
    ("lion", dict(beta1=1.0), r"beta1 must be in \[0, 1\)"),
    ("lion", dict(beta2=-0.1), r"beta2 must be in \[0, 1\)"),
    ("lion", dict(weight_decay=-0.1), r"weight_decay must be >= 0"),
    ("lion", dict(_arrays=(np.ones(3), np.ones(4), np.zeros(3))), r"grad must have the same shape"),
    ("lion", dict(_arrays=(np.ones(3), np.ones(3), np.zeros((3, 1)))), r"exp_avg must have the"),
    ("lion", dict(_arrays=(np.ones(3, complex), np.ones(3), np.zeros(3))), r"param must be real"),
    ("lion", dict(_arrays=(np.ones(3, np.longdouble) / 3, np.ones(3), np.zeros(3))),
     r"param has values that float64 cannot represent exactly"),
    ("lion", dict(_arrays=(np.array([2**60 + 1]), np.ones(1), np.zeros(1))), r"param has values"),
    ("lion", dict(_arrays=(np.array(["a"]), np.ones(1), np.zeros(1))), r"param must be an array"),
    ("signum", dict(beta=1.5), r"beta must be in \[0, 1\)"),
    ("signum", dict(lr=float("inf")), r"lr must be finite"),
    ("tiger", dict(accumulation_steps=0), r"accumulation_steps must be an integer >= 1"),
    ("tiger", dict(accumulation_steps=2.0), r"accumulation_steps must be an integer >= 1"),
    ("tiger", dict(accumulation_steps=True), r"accumulation_steps must be an integer"),
    ("tiger", dict(step=-1), r"step must be an integer >= 0"),
    ("tiger", dict(step=1.5), r"step must be an integer >= 0"),
    ("tiger", dict(role="gamma"), r"role must be one of 'weight', 'embedding', 'bias', 'scale'"),
    ("tiger", dict(shrink_ratio=0.0), r"shrink_ratio must be in \(0, 1\]"),
    ("tiger", dict(shrink_ratio=1.01), r"shrink_ratio must be in \(0, 1\]"),
    ("tiger", dict(beta=1.0), r"beta must be in \[0, 1\)"),
    ("tiger", dict(weight_decay=-1.0), r"weight_decay must be >= 0"),
]


@pytest.mark.parametrize(("algorithm", "override", "message"), ERRORS)
def test_bad_input_raises_value_error_naming_the_parameter(algorithm, override, message):
    with pytest.raises(ValueError, match=message):
        _bad(algorithm, **override)()


def test_longdouble_that_fits_float64_is_accepted():
    p = np.array([0.5, 0.25], dtype=np.longdouble)
    new_p, _ = spec.lion_step(p, [1.0, -1.0], [0.0, 0.0], lr=0.125)
    assert new_p.tolist() == [0.375, 0.375]

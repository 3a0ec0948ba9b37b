"""The committed golden vectors: structure, reproducibility, and agreement with the exact oracle."""

from __future__ import annotations

import doctest
import json
import math
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lionspec.conformance import vectors as V
from lionspec.conformance.vectors import generate as G
from lionspec.spec import exact

ALGORITHMS = V.ALGORITHMS
HEX = re.compile(r"^(-?0x[01]\.[0-9a-f]+p[+-][0-9]+|nan|-?inf)$")
HYPER_KEYS = {
    "lion": {"lr", "beta1", "beta2", "weight_decay"},
    "signum": {"lr", "beta", "weight_decay"},
    "tiger": {"lr", "beta", "weight_decay", "accumulation_steps", "role", "shrink_ratio"},
}
REQUIRED_CLASSES = {
    "random", "near_cancellation", "exact_cancellation", "zero_grad", "signed_zero", "subnormal",
    "nan", "inf", "large_magnitude", "update_order", "decay_lambda_positive",
}  # fmt: skip
TIGER_CLASSES = {
    "accumulation_window", "nan_non_update_step", "role_weight", "role_embedding", "role_bias",
    "role_scale",
}  # fmt: skip


@pytest.fixture(scope="module", params=ALGORITHMS)
def doc(request: pytest.FixtureRequest) -> dict:
    return V.load(request.param)


# ------------------------------------------------------------------------------ structure


def _check_values(values: object, n: int, where: str) -> None:
    assert isinstance(values, list), where
    assert len(values) == n, f"{where}: {len(values)} values for {n} elements"
    for v in values:
        assert isinstance(v, str) and HEX.match(v), f"{where}: bad hex float {v!r}"


def _check_expected(expected: dict, n: int, where: str) -> None:
    assert set(expected) == {"param", "exp_avg", "direction"}, where
    _check_values(expected["param"], n, f"{where}.param")
    _check_values(expected["exp_avg"], n, f"{where}.exp_avg")
    assert len(expected["direction"]) == n, where
    for d in expected["direction"]:
        assert d in (-1, 0, 1, "nan") and not isinstance(d, bool), f"{where}: direction {d!r}"


def test_structure(doc: dict) -> None:
    """A small structural validator (independent of the jsonschema package)."""
    algorithm = doc["algorithm"]
    assert set(doc) == {
        "schema_version", "algorithm", "generator", "generator_seed", "lionspec_version",
        "semantics", "case_count", "cases",
    }  # fmt: skip
    assert doc["schema_version"] == V.SCHEMA_VERSION
    assert doc["case_count"] == len(doc["cases"])
    ids = [c["id"] for c in doc["cases"]]
    assert len(ids) == len(set(ids))
    for case in doc["cases"]:
        where = case["id"]
        assert case["id"].startswith(f"{algorithm}-{case['edge_class']}-{case['input_dtype']}-")
        assert case["input_dtype"] in V.INPUT_DTYPES
        hp = case["hyperparameters"]
        assert set(hp) == HYPER_KEYS[algorithm], where
        for key, value in hp.items():
            if key == "accumulation_steps":
                assert isinstance(value, int) and value >= 1
            elif key == "role":
                assert value in ("weight", "embedding", "bias", "scale")
            else:
                assert set(value) == {"hex", "decimal"} and HEX.match(value["hex"]), where
                assert float(value["decimal"]) == float.fromhex(value["hex"]), where
        assert all(isinstance(d, int) and d >= 0 for d in case["shape"])
        n = math.prod(case["shape"])
        if algorithm == "tiger":
            assert set(case) == {
                "id", "edge_class", "input_dtype", "description", "hyperparameters", "shape",
                "inputs", "steps",
            }  # fmt: skip
            assert set(case["inputs"]) == {"param", "exp_avg"}
            assert case["steps"], where
            for s in case["steps"]:
                assert set(s) == {"step", "grad", "nan_rule", "updates_param", "expected"}
                _check_values(s["grad"], n, f"{where}.grad")
                _check_expected(s["expected"], n, f"{where}.steps")
        else:
            assert set(case) == {
                "id", "edge_class", "input_dtype", "description", "hyperparameters", "shape",
                "inputs", "expected",
            }  # fmt: skip
            assert set(case["inputs"]) == {"param", "grad", "exp_avg"}
            _check_expected(case["expected"], n, where)
        for key, values in case["inputs"].items():
            _check_values(values, n, f"{where}.{key}")


def test_json_schema(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = V.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    broken = json.loads(json.dumps(doc))
    broken["cases"][0]["inputs"]["param"][0] = "0.5"
    assert not validator.is_valid(broken)


def test_coverage_and_size(doc: dict) -> None:
    algorithm = doc["algorithm"]
    classes = {c["edge_class"] for c in doc["cases"]}
    required = REQUIRED_CLASSES | (TIGER_CLASSES if algorithm == "tiger" else set())
    assert required <= classes, required - classes
    assert {c["input_dtype"] for c in doc["cases"]} == set(V.INPUT_DTYPES)
    assert 150 <= len(doc["cases"]) <= 1000
    assert V.path(algorithm).stat().st_size < 1_500_000
    if algorithm == "tiger":
        roles = {c["hyperparameters"]["role"] for c in doc["cases"]}
        assert roles == {"weight", "embedding", "bias", "scale"}
        assert any(len(c["steps"]) > 1 for c in doc["cases"])


# ------------------------------------------------------------------------- reproducibility


def test_regeneration_is_byte_for_byte(tmp_path: Path) -> None:
    versions = {a: V.load(a)["lionspec_version"] for a in ALGORITHMS}
    assert len(set(versions.values())) == 1
    G.write_all(tmp_path, lionspec_version=versions["lion"])
    for algorithm in ALGORITHMS:
        fresh = (tmp_path / f"{algorithm}.json").read_bytes()
        assert fresh == V.path(algorithm).read_bytes(), (
            f"{algorithm}.json is stale: run python -m lionspec.conformance.vectors.generate"
        )


@pytest.mark.parametrize("how", ["module", "script"])
def test_generator_command_line(how: str, tmp_path: Path) -> None:
    version = V.load("lion")["lionspec_version"]
    target = ["-m", "lionspec.conformance.vectors.generate"] if how == "module" else [G.__file__]
    args = [sys.executable, *target, "--out", str(tmp_path), "--lionspec-version", version]
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "tiger.json").read_bytes() == V.path("tiger").read_bytes()
    check = [sys.executable, *target, "--check", "--out", str(tmp_path)]
    assert subprocess.run(check, capture_output=True, timeout=120).returncode == 0
    (tmp_path / "lion.json").write_text("{}", encoding="ascii")
    assert subprocess.run(check, capture_output=True, timeout=120).returncode == 1


# -------------------------------------------------------------------- agreement with the oracle


def _expected_matches(p, m, direction, expected: dict, where: str) -> None:
    assert [V.encode_hex(x) for x in exact.to_float64(p).reshape(-1)] == expected["param"], where
    assert [V.encode_hex(x) for x in exact.to_float64(m).reshape(-1)] == expected["exp_avg"], where
    assert V.encode_direction(exact.exact_sign(direction)) == expected["direction"], where


def test_cases_reevaluate_in_exact_oracle(doc: dict) -> None:
    algorithm = doc["algorithm"]
    for case in doc["cases"]:
        c = V.decode_case(case)
        hp, inp = c["hyperparameters"], c["inputs"]
        if algorithm == "lion":
            p, m = exact.lion_step_exact(inp["param"], inp["grad"], inp["exp_avg"], **hp)
            d = exact.lion_interp_exact(inp["grad"], inp["exp_avg"], beta1=hp["beta1"])
            _expected_matches(p, m, d, case["expected"], c["id"])
        elif algorithm == "signum":
            p, m = exact.signum_step_exact(inp["param"], inp["grad"], inp["exp_avg"], **hp)
            _expected_matches(p, m, m, case["expected"], c["id"])
        else:
            p, m = inp["param"], inp["exp_avg"]
            k = hp["accumulation_steps"]
            for s, raw in zip(c["steps"], case["steps"], strict=True):
                before = p
                p, m = exact.tiger_step_exact(p, s["grad"], m, step=s["step"], **hp)
                _expected_matches(p, m, m, raw["expected"], f"{c['id']} step {s['step']}")
                nan_rule = bool(np.isnan(s["grad"]).any())
                assert s["nan_rule"] == nan_rule
                assert s["updates_param"] == ((not nan_rule) and (s["step"] + 1) % k == 0)
                if not s["nan_rule"] and not s["updates_param"]:
                    assert exact.to_float64(p).tobytes() == exact.to_float64(before).tobytes()


@pytest.mark.parametrize("algorithm", ["signum", "tiger"])  # Lion's direction is sign(c)
def test_direction_is_consistent_with_rounded_momentum(algorithm: str) -> None:
    """Where the rounded exp_avg is non-zero its sign is the direction (SIGNUM, Tiger)."""
    for case in V.load(algorithm)["cases"]:
        expected = (
            [case["expected"]] if "expected" in case else [s["expected"] for s in case["steps"]]
        )
        for e in expected:
            for v, d in zip(e["exp_avg"], e["direction"], strict=True):
                x = V.decode_hex(v)
                if math.isnan(x):
                    assert d == "nan"
                elif x != 0:
                    assert d == (1 if x > 0 else -1)


def test_vectors_have_teeth() -> None:
    """Some float64 near-cancellation cases flip sign under naive float64 mul+add."""
    flips = 0
    for case in V.cases("lion", edge_class="near_cancellation", input_dtype="float64"):
        c = V.decode_case(case)
        b1 = c["hyperparameters"]["beta1"]
        naive = b1 * c["inputs"]["exp_avg"] + (1 - b1) * c["inputs"]["grad"]
        flips += int(np.sum(np.sign(naive) != c["expected"]["direction"]))
    assert flips > 0
    rounds_to_zero = 0
    for case in V.cases("signum", edge_class="subnormal"):
        e = case["expected"]
        rounds_to_zero += sum(
            1 for v, d in zip(e["exp_avg"], e["direction"], strict=True)
            if V.decode_hex(v) == 0 and d != 0
        )  # fmt: skip
    assert rounds_to_zero >= 2  # m' = (1-beta)*(+-2^-1074) rounds to 0, its sign does not


# ------------------------------------------------------------------------------- hex floats


def _representable(dtype: str, x: float) -> bool:
    if math.isnan(x) or math.isinf(x):
        return True
    if dtype == "float64":
        return True
    if dtype == "float32":
        return float(np.float32(x)) == x
    if dtype == "float16":
        with np.errstate(over="ignore"):
            return float(np.float16(x)) == x
    if float(np.float32(x)) != x:
        return False
    (u,) = struct.unpack("<I", struct.pack("<f", x))
    return u & 0xFFFF == 0


def test_hex_round_trips_and_input_dtypes(doc: dict) -> None:
    for case in doc["cases"]:
        arrays = list(case["inputs"].values())
        if "steps" in case:
            arrays += [s["grad"] for s in case["steps"]]
            outs = [s["expected"] for s in case["steps"]]
        else:
            outs = [case["expected"]]
        for values in arrays:
            for v in values:
                x = V.decode_hex(v)
                assert V.encode_hex(x) == v
                assert _representable(case["input_dtype"], x), (case["id"], v)
        for e in outs:
            for v in e["param"] + e["exp_avg"]:
                assert V.encode_hex(V.decode_hex(v)) == v
        for value in case["hyperparameters"].values():
            if isinstance(value, dict):
                assert V.encode_hex(V.decode_hex(value["hex"])) == value["hex"]
    assert V.encode_hex(-0.0) == "-0x0.0p+0" and math.copysign(1, V.decode_hex("-0x0.0p+0")) < 0


def test_signed_zero_inputs_are_kept() -> None:
    values = [v for c in V.cases("lion", edge_class="signed_zero") for v in c["inputs"]["grad"]]
    assert "-0x0.0p+0" in values and "0x0.0p+0" in values


def test_bfloat16_rounding_helper_matches_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.standard_normal(2000) * 10.0 ** rng.integers(-40, 39, 2000),
                         [0.0, -0.0, 3.3895313892515355e38, 1e39, -1e-45]])  # fmt: skip
    for x in xs.tolist():
        with np.errstate(over="ignore"):
            via32 = float(np.float32(x).astype(ml_dtypes.bfloat16).astype(np.float64))
        assert G.round_to("bfloat16", x) == via32 or (math.isnan(via32))


def test_next_toward_is_the_neighbour() -> None:
    for dt in G.DTYPES:
        for x in (1.0, -1.0, 0.0, G.fmt_min_sub(dt), G.fmt_max(dt) / 2):
            up, down = G.next_toward(dt, x, True), G.next_toward(dt, x, False)
            assert down < x < up or (x == 0 and down < 0 < up)
            assert _representable(dt, up) and _representable(dt, down)


# ---------------------------------------------------------------------------------- loader


def test_loader_api() -> None:
    assert doctest.testmod(V).failed == 0
    assert V.decode_hex("inf") == math.inf and math.isnan(V.decode_hex("nan"))
    np.testing.assert_array_equal(
        V.decode_array(["0x1.0p+0", "-inf"], [2, 1]), [[1.0], [-math.inf]]
    )
    np.testing.assert_array_equal(V.decode_direction([1, "nan", 0], [3]), [1.0, math.nan, 0.0])
    hp = {"lr": {"hex": "0x1.0p-1", "decimal": "0.5"}, "role": "bias"}
    assert V.decode_hyperparameters(hp) == {"lr": 0.5, "role": "bias"}
    tiger = V.cases("tiger", edge_class="accumulation_window", input_dtype="bfloat16")
    assert tiger and all(c["input_dtype"] == "bfloat16" for c in tiger)
    assert V.load("lion") is not V.load("lion")  # fresh dicts
    with pytest.raises(ValueError, match="algorithm"):
        V.load("adam")
    with pytest.raises(ValueError, match="hex"):
        V.decode_hex(0.5)  # type: ignore[arg-type]

"""The native CPU kernel of ``fused=True``: one C function per configuration, built once, cached.

``_native_kernel.c`` holds the per-element math of :mod:`._math` written out in C, operation for
operation (each product and sum rounded once in the compute type, no FMA contraction, each
store rounded once into its dtype), and a driver that steps *every* tensor of a call in one
OpenMP parallel loop over fixed work items. Each configuration (algorithm, dtypes, and the
structural switches that :func:`._fused.pack` also compiles in: which coefficient is exactly
0 or 1, maximize, compensation, Tiger's role, window position and NaN mode) is compiled once,
with the system C compiler::

    cc -O3 -march=native -ffp-contract=off -fno-math-errno -fopenmp -shared -fPIC -D...

into ``$LIONSPEC_CACHE_DIR`` (default ``$XDG_CACHE_HOME/lionspec/native``, else
``~/.cache/lionspec/native``), named by a hash of the source, the flags, the compiler's version
and the CPU's model and feature flags (so a cache shared by different machines never loads code
built for another CPU). A build takes ~0.3 s; a cached kernel loads in ~1 ms. The shared object
links ``libgomp.so.1`` by soname, so it runs on the OpenMP runtime torch has already loaded.

Why not ``torch.compile`` (still used when no C compiler is found, or with
``LIONSPEC_FUSED_CPU=compile``): on CPU its per-call dynamo guards cost ~11 ms per step for
GPT-2's 148 tensors, inductor vectorises bf16↔fp32 conversions with partial 8-lane loads, and
importing inductor alone takes 2–3 s of the first step. One C call per step has none of these.

``LIONSPEC_FUSED_CPU``: ``auto`` (default: native when a compiler works, else compile, with one
warning if a compiler exists but the build fails), ``native`` (an error if it cannot be built),
``compile`` (always ``torch.compile``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["BACKENDS", "NativeBuildError", "backend", "cache_dir", "kernels", "kernels_or_none",
           "launch", "takes", "vectorised"]

SOURCE = Path(__file__).with_name("_native_kernel.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
         "-fopenmp", "-fPIC",
         "-shared", "-std=gnu11")
#: values of ``LIONSPEC_FUSED_CPU``
BACKENDS = ("auto", "native", "compile")
_DTYPES = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16",
           torch.float16: "f16"}
_ALGOS = {"lion": 0, "signum": 1, "tiger": 2}

#: every switch of the kernel, off unless a configuration sets it (see ``_native_kernel.c``)
SWITCHES = ("COMP", "MAXIMIZE", "LR_ZERO", "B1_ZERO", "B2_ZERO", "B_ZERO", "KEEP_ZERO",
            "KEEP_ONE", "RMS", "ROWS", "FIRST", "LAST", "NAN_MODE", "CENTRE")

Config = tuple[tuple[str, int | str], ...]


class NativeBuildError(RuntimeError):
    """The C compiler is missing or failed on a configuration (its message is included)."""


def backend() -> str:
    """What ``fused=True`` runs on CPU: ``"native"`` or ``"compile"`` (see the module doc)."""
    choice = os.environ.get("LIONSPEC_FUSED_CPU", "auto")
    if choice not in BACKENDS:
        raise ValueError(f"LIONSPEC_FUSED_CPU must be one of {BACKENDS}, got {choice!r}")
    if choice == "compile" or _broken():
        return "compile"
    if choice == "native" or _compiler() is not None:
        return "native"
    return "compile"


_BROKEN: list[str] = []


def _broken() -> bool:
    return bool(_BROKEN) and os.environ.get("LIONSPEC_FUSED_CPU", "auto") == "auto"


def note_failure(error: NativeBuildError) -> None:
    """Under ``auto``, a failed build switches this process to ``torch.compile`` (one warning)."""
    if os.environ.get("LIONSPEC_FUSED_CPU", "auto") != "auto":
        raise error
    if not _BROKEN:
        warnings.warn(f"lionspec: the native fused kernel could not be built, using "
                      f"torch.compile instead: {error}", RuntimeWarning, stacklevel=4)
    _BROKEN.append(str(error))


def takes(dtype: torch.dtype) -> bool:
    """Whether the kernel handles tensors of ``dtype`` (float16/bfloat16/float32/float64)."""
    return dtype in _DTYPES


@functools.cache
def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@functools.cache
def _fingerprint() -> str:
    """Compiler version and CPU identity: part of every cache key."""
    cc = _compiler() or ""
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    cpu = platform.processor() + platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features")):
                cpu += line
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        pass
    return cc + version + cpu


def cache_dir() -> Path:
    """Where built kernels are kept (see the module doc)."""
    env = os.environ.get("LIONSPEC_CACHE_DIR")
    if env:
        return Path(env) / "native"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lionspec" / "native"


def config(algorithm: str, theta: torch.dtype, grad: torch.dtype, exp_avg: torch.dtype,
           compute: torch.dtype, switches: dict[str, int]) -> Config:
    """The macros of one configuration (the cache key, with the source and fingerprint)."""
    for name, dt in (("param", theta), ("grad", grad), ("momentum", exp_avg)):
        if dt not in _DTYPES:
            raise TypeError(f"the native kernel takes float16/bfloat16/float32/float64 {name}s, "
                            f"got {dt}")
    macros: dict[str, int | str] = {"ALGO": _ALGOS[algorithm],
                                    "CT_DOUBLE": int(compute == torch.float64),
                                    "TT": _DTYPES[theta], "GT": _DTYPES[grad],
                                    "MT": _DTYPES[exp_avg]}
    unknown = set(switches) - set(SWITCHES)
    if unknown:
        raise ValueError(f"unknown native kernel switches: {sorted(unknown)}")
    macros.update(dict.fromkeys(SWITCHES, 0))
    macros.update({k: int(v) for k, v in switches.items()})
    return tuple(sorted(macros.items()))


def _path(cfg: Config) -> Path:
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update(repr((FLAGS, cfg, _fingerprint())).encode())
    return cache_dir() / f"lionspec_{digest.hexdigest()[:24]}.so"


_LOADED: dict[Config, ctypes._CFuncPtr] = {}
_LIBS: dict[Config, ctypes.CDLL] = {}


def kernels(configs: Sequence[Config]) -> list[ctypes._CFuncPtr]:
    """The compiled step function of each configuration: loaded from the cache, or built (the
    missing ones concurrently, each by one compiler process). ``NativeBuildError`` if one fails."""
    missing = {cfg: _path(cfg) for cfg in dict.fromkeys(configs) if cfg not in _LOADED}
    to_build = {cfg: path for cfg, path in missing.items() if not path.exists()}
    if to_build:
        _build(to_build)
    for cfg, path in missing.items():
        try:
            lib = ctypes.CDLL(str(path))
            fn = lib.lionspec_step
        except (OSError, AttributeError) as error:
            raise NativeBuildError(f"cannot load the cached kernel {path} ({error}); delete it "
                                   f"to rebuild") from error
        fn.restype = None
        fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        _LOADED[cfg] = fn
        _LIBS[cfg] = lib
    return [_LOADED[cfg] for cfg in configs]


def vectorised(cfg: Config) -> bool:
    """Whether the kernel of ``cfg`` runs its AVX2 16-wide loops (configurations with a 16-bit
    dtype, no compensation and float compute, on a CPU with AVX2, and F16C for float16; the
    others are scalar C that the compiler vectorises). Builds the kernel if need be."""
    kernels([cfg])
    return bool(ctypes.c_int.in_dll(_LIBS[cfg], "lionspec_vectorised").value)


def kernels_or_none(configs: Sequence[Config]) -> list[ctypes._CFuncPtr] | None:
    """:func:`kernels`, or ``None`` after :func:`note_failure` (under ``auto``: fall back)."""
    try:
        return kernels(configs)
    except NativeBuildError as error:
        note_failure(error)
        return None


def _build(targets: dict[Config, Path]) -> None:
    cc = _compiler()
    if cc is None:
        raise NativeBuildError("no C compiler found (set CC, or install gcc or clang)")
    out = next(iter(targets.values())).parent
    jobs = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        temps = []
        for _ in targets:
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out)
            os.close(fd)
            temps.append(tmp)
    except OSError as error:
        raise NativeBuildError(f"cannot write the kernel cache {out} ({error}); set "
                               f"LIONSPEC_CACHE_DIR to a writable directory") from error
    for (cfg, path), tmp in zip(targets.items(), temps, strict=True):
        cmd = [cc, *FLAGS, *(f"-D{k}={v}" for k, v in cfg), str(SOURCE), "-o", tmp, "-lm"]
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        except OSError as error:
            for _, _, started, _, running in jobs:
                running.wait()
                Path(started).unlink(missing_ok=True)
            for leftover in temps:
                Path(leftover).unlink(missing_ok=True)
            raise NativeBuildError(f"cannot run the C compiler {cc}: {error}") from error
        jobs.append((cfg, path, tmp, cmd, proc))
    failure = None
    for _, path, tmp, cmd, proc in jobs:
        _, err = proc.communicate()
        if proc.returncode == 0:
            os.replace(tmp, path)  # atomic: a concurrent process sees all of it or nothing
            continue
        Path(tmp).unlink(missing_ok=True)
        failure = failure or NativeBuildError(
            f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{err.strip()[-2000:]}")
    if failure is not None:
        raise failure


def launch(fn: ctypes._CFuncPtr, tensors: Sequence[Sequence[torch.Tensor | None]],
           numels: Sequence[int], rowlens: Sequence[int], hp: Sequence[float]) -> list[bool]:
    """Run one compiled step on contiguous CPU tensors ``(θ, g, m, comp)``; returns the Tiger
    NaN-rule flag of each tensor (False for Lion and SIGNUM)."""
    count = len(tensors)
    ptrs = (ctypes.c_int64 * (4 * count))(
        *(0 if t is None else t.data_ptr() for row in tensors for t in row))
    n = (ctypes.c_int64 * count)(*numels)
    rows = (ctypes.c_int64 * count)(*rowlens)
    values = (ctypes.c_double * len(hp))(*hp)
    flags = (ctypes.c_uint8 * (count + 1))()
    fn(count, ptrs, n, rows, values, torch.get_num_threads(), flags)
    if not flags[count]:
        raise MemoryError("the native lionspec kernel could not allocate its work list")
    return [bool(f) for f in flags[:count]]

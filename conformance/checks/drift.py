"""The drift check: a free-running trajectory against the spec's float64 trajectory, within a
derived bound (no resync)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lionspec import spec
from lionspec.spec import bounds
from lionspec.spec.formats import round_to
from lionspec.spec.variations import trajectory

from ..target import Case
from ..verdict import _decision, _eta_lambda, _momentum_bound, _oracle_err
from ._support import CheckResult, Context, check, failure, merge, passed
from .core import default_hyper

__all__ = ["drift", "drift_bounds", "drift_steps"]


def drift_steps(settings: Any) -> int:
    """N: ten times the profile's steps per trace, at most 50 (quick 30, ci 40)."""
    return min(10 * int(settings.steps), 50)


def _ema_beta(algorithm: str, hyper: dict[str, Any]) -> float:
    return float(hyper["beta2"] if algorithm == "lion" else hyper["beta"])


def drift_bounds(case: Case, params: list[np.ndarray], momenta: list[np.ndarray],
                 spec_params: list[np.ndarray], spec_momenta: list[np.ndarray],
                 arithmetic: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step t = 1..N the bounds Δθ_t, Δm_t on |θ_t − θ*_t|, |m_t − m*_t| and the mask of
    elements whose decision kept its sign at every step (``judged``); one tensor.

    ``params``/``momenta`` are the target's stored states (index 0: initial), ``spec_*`` the
    spec's float64 trajectory (index 0: initial). Each per-step bound is evaluated at the
    target's own stored inputs (θ_t, m_t, g_t), where it holds by construction.
    """
    alg = case.algorithm
    a = arithmetic
    n_steps = case.steps
    beta = _ema_beta(alg, dict(case.hyper))
    dm = np.zeros_like(params[0])
    dth = np.zeros_like(params[0])
    judged = np.ones(params[0].shape, dtype=bool)
    out_th, out_m = [dth.copy()], [dm.copy()]
    for t in range(n_steps):
        th, m, g = params[t], momenta[t], case.grads[t][0]
        hyper = case.spec_hyper(t, 0)
        with np.errstate(all="ignore"):
            bm = _momentum_bound(alg, g, m, hyper, a) + _oracle_err(spec_momenta[t + 1])
            new_dm = beta * dm + bm
            if alg == "lion":
                _, _, bc = _decision(alg, g, m, hyper, a)
                c_star, _ = spec.lion_interp(g, spec_momenta[t], beta1=hyper["beta1"])
                keeps = np.abs(c_star) > hyper["beta1"] * dm + bc + _oracle_err(c_star)
                s = np.sign(c_star)
            else:
                keeps = np.abs(spec_momenta[t + 1]) > new_dm
                s = np.sign(spec_momenta[t + 1])
            judged &= keeps
            eta, lam, extra = _eta_lambda(alg, th, hyper, a)
            p = bounds.param_update_bound(th, eta, lam, np.where(np.isfinite(s), s, 0.0),
                                          compute=a.compute, storage=a.param_dtype,
                                          storage_roundings=a.storage_roundings,
                                          form=a.param_form)
            p = p + extra + _oracle_err(spec_params[t + 1])
            shrink = np.abs(1.0 - eta * lam)
            if alg == "tiger":
                # η_t = α·RMS(θ_t) against η*_t = α·RMS(θ*_t): |η_t − η*_t| <= α·RMS(θ_t − θ*_t)
                # (Minkowski), plus the float64 RMS of the spec's own trajectory
                alpha = hyper["lr"]
                d_eta = (alpha * np.sqrt(np.mean(dth * dth)) * (1 + 2.0**-50)
                         + 2 * spec.RMS_REL_ERR * eta)
                p = p + d_eta * (1.0 + lam * np.abs(spec_params[t]))
            dth = shrink * dth + p
            dm = new_dm
        out_th.append(dth.copy())
        out_m.append(dm.copy())
    return np.array(out_th), np.array(out_m), judged


def _case(ctx: Context, dtype: str, n_steps: int) -> Case:
    """Per element a fixed gradient sign and magnitudes in [0.5, 1.5]: the momentum never
    crosses 0 and the decision variables stay >= (1 − β1)·0.5 away from it."""
    rng = ctx.rng
    n = max(4, ctx.settings.max_size)
    sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    theta = round_to(rng.choice([-1.0, 1.0], n) * rng.uniform(1.0, 1.5, n), dtype)
    grads = tuple((round_to(sign * rng.uniform(0.5, 1.5, n), dtype),) for _ in range(n_steps))
    hyper = default_hyper(ctx.algorithm, lr=2.0**-12)
    return Case(ctx.algorithm, (theta,), grads, hyper, param_dtype=dtype)


def _drift_one(ctx: Context, dtype: str, n_steps: int) -> CheckResult:
    case = _case(ctx, dtype, n_steps)
    trace = ctx.run(case)
    hyper = {k: v for k, v in case.hyper.items() if k != "lr"}
    if ctx.algorithm != "tiger":
        hyper.pop("accumulation_steps", None)
    ref = list(trajectory(ctx.algorithm, case.params[0], [g[0] for g in case.grads],
                          lr=case.hyper["lr"], **hyper))
    spec_p = [case.params[0], *[r[0] for r in ref]]
    spec_m = [np.zeros_like(case.params[0]), *[r[1] for r in ref]]
    params = [p[0] for p in trace.params]
    if any(m is None for m in trace.momenta):
        return CheckResult("drift", "skip", f"{dtype}: the momentum is not observable; the "
                           "drift bound is evaluated at the target's own stored inputs")
    momenta = [m[0] for m in trace.momenta]
    a = ctx.profile.arithmetic(dtype, None)
    dth, dm, judged = drift_bounds(case, params, momenta, spec_p, spec_m, a)
    lines = []
    worst = 0.0
    for t in range(1, n_steps + 1):
        err_p = np.abs(params[t] - spec_p[t])
        err_m = np.abs(momenta[t] - spec_m[t])
        bad_p = judged & ~(err_p <= dth[t])
        bad_m = ~(err_m <= dm[t])
        with np.errstate(all="ignore"):
            worst = max(worst, float(np.max(np.where(judged, err_p / dth[t], 0.0))))
        for i in np.flatnonzero(bad_p):
            lines.append(f"step {t} param[{i}]: observed {float(params[t][i]).hex()} spec "
                         f"{float(spec_p[t][i]).hex()}: |θ − θ*| = {err_p[i]:.3g} exceeds the "
                         f"drift bound {dth[t][i]:.3g}")
        for i in np.flatnonzero(bad_m):
            lines.append(f"step {t} exp_avg[{i}]: observed {float(momenta[t][i]).hex()} spec "
                         f"{float(spec_m[t][i]).hex()}: |m − m*| = {err_m[i]:.3g} exceeds the "
                         f"drift bound {dm[t][i]:.3g}")
    if lines:
        return failure("drift", f"{dtype}: the free-running trajectory left its drift bound "
                       f"({len(lines)} (step, element) pairs)", lines=lines[:20],
                       repro=case.describe(),
                       diagnosis="a one-directional error per step (e.g. truncation, or a "
                       "rounding more than declared) accumulates beyond the bound")
    skipped = int((~judged).sum())
    return passed("drift", f"{dtype}: {n_steps} free steps within the bound (max |θ − θ*| / "
                  f"bound = {worst:.2f}" + (f"; {skipped} elements not judged: decision within "
                                            "its accumulated bound" if skipped else "") + ")")


@check("drift", "A free-running trajectory stays within a derived drift bound of the spec's")
def drift(ctx: Context) -> CheckResult:
    """N steps (ten times the profile's steps, at most 50) run free — no resync — and compared
    with the spec's float64 ``trajectory`` at every step. Derivation (NUMERICS.md "multi-step
    runs"): with the target's stored m_t, the exact m*_t and |e_t| <= B_m(m_t, g_t) the
    per-step momentum bound (``momentum_update_bound`` for the declared arithmetic, at the
    target's own inputs), m_{t+1} − m*_{t+1} = β(m_t − m*_t) + e_t − o_t (o_t the float64
    oracle's error), so |m_t − m*_t| <= Δm_t with Δm_{t+1} = β·Δm_t + B_m + o: the momentum
    error is amplified up to 1/(1 − β). The decision variable keeps the spec's sign wherever
    |c*_t| > β1·Δm_t + B_c(m_t, g_t) (Lion; ``c_error_bound``) or |m*_{t+1}| > Δm_{t+1}
    (SIGNUM, Tiger); the gradients are chosen so that this holds everywhere (fixed sign per
    element, magnitudes in [0.5, 1.5]: m never crosses 0, |c*| >= (1 − β1)/2, while Δm grows
    by about u·|m| per step), elements where it would not are reported and not judged. With
    the same sign s_t, θ_{t+1} − θ*_{t+1} = (1 − ηλ)(θ_t − θ*_t) + f_t − o_t with
    |f_t| <= P_t = ``param_update_bound``(θ_t, η, λ, s_t) (+ Tiger's RMS term), so
    Δθ_{t+1} = |1 − ηλ|·Δθ_t + P_t + o: the momentum error reaches θ only through a sign flip,
    which the inputs exclude. Tiger's η_t = α·RMS(θ_t) differs from α·RMS(θ*_t) by at most
    α·RMS(θ_t − θ*_t) (Minkowski), which adds α·sqrt(mean Δθ_t²)·(1 + λ|θ*_t|). Every element
    of θ_t and m_t must be within Δθ_t and Δm_t at every step. η = 2^-12 is below half a bf16
    ulp, so a correctly rounding bf16 target loses every step (within the bound: u|θ| > η per
    step). Known-bad: a target that stores θ twice per step into bf16 by truncation (one
    storage ulp toward zero per step, against a bound of u·|θ|, u = 2^-8)."""
    n_steps = drift_steps(ctx.settings)
    return merge("drift", [_drift_one(ctx, dtype, n_steps) for dtype in ctx.dtypes()])

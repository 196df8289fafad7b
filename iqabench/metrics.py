"""Correlation metrics, computed from saved predictions only.

Sign-aware: predictions and labels are first oriented so that higher means better quality
(a lower-better method or a DMOS dataset is negated), and never passed through abs().
PLCC is given raw and after the VQEG four-parameter logistic fit.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import optimize, stats


def orient(values: np.ndarray, higher_better: bool) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values if higher_better else -values


def srcc(pred: np.ndarray, label: np.ndarray) -> float:
    return float(stats.spearmanr(pred, label).statistic)


def krcc(pred: np.ndarray, label: np.ndarray) -> float:
    return float(stats.kendalltau(pred, label).statistic)


def plcc(pred: np.ndarray, label: np.ndarray) -> float:
    return float(stats.pearsonr(pred, label).statistic)


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    z = np.clip(-(x - b3) / (abs(b4) + 1e-12), -500, 500)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def fit_logistic(pred: np.ndarray, label: np.ndarray) -> np.ndarray | None:
    """Fitted (b1, b2, b3, b4), or None when the fit does not converge."""
    pred = np.asarray(pred, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    spread = float(np.std(pred)) or 1.0
    p0 = [float(np.max(label)), float(np.min(label)), float(np.mean(pred)), spread]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, pred, label, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError, TypeError, optimize.OptimizeWarning):  # TypeError: n < 4
        return None
    return params if np.all(np.isfinite(params)) else None


def compute(pred: np.ndarray, label: np.ndarray, *, method_higher_better: bool = True,
            dataset_higher_better: bool = True, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All metrics for one run. Inputs are raw; orientation is applied here and recorded."""
    p = orient(pred, method_higher_better)
    y = orient(label, dataset_higher_better)
    out: dict[str, Any] = {"n_scored": int(len(p)), "orientation": {
        "prediction_negated": not method_higher_better, "label_negated": not dataset_higher_better}}
    if len(p) < 3 or np.ptp(p) == 0 or np.ptp(y) == 0:
        reason = "fewer than 3 scored images" if len(p) < 3 else "constant predictions or labels"
        out.update({k: None for k in ("srcc", "krcc", "plcc", "plcc_raw", "rmse")})
        out["undefined_reason"] = reason
        return out
    out["srcc"] = srcc(p, y)
    out["krcc"] = krcc(p, y)
    out["plcc_raw"] = plcc(p, y)
    params = fit_logistic(p, y)
    if params is None:
        out.update({"plcc": None, "rmse": None, "logistic_fit": "did not converge"})
    else:
        fitted = logistic4(p, *params)
        # A decreasing fit correlates positively with the labels even when the method ranks
        # images backwards; the sign of the fitted map's direction keeps that visible.
        direction = 1.0 if params[0] >= params[1] else -1.0
        out["logistic_direction"] = "increasing" if direction > 0 else "decreasing"
        out["plcc"] = direction * plcc(fitted, y) if np.ptp(fitted) > 0 else None
        out["rmse"] = float(np.sqrt(np.mean((fitted - y) ** 2)))
        # rmse is in oriented label units; for a DMOS set that is the negated DMOS scale
        out["logistic_params"] = [float(v) for v in params]
    out["ci95"] = bootstrap(p, y, n_boot=n_boot, seed=seed)
    out["bootstrap"] = {"n": n_boot, "seed": seed}
    return out


def bootstrap(p: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict[str, list[float] | None]:
    """Percentile 95 % intervals of SRCC, KRCC and raw PLCC over image resamples.

    SRCC and PLCC are computed for all resamples at once (ranks with ties averaged, as scipy);
    resamples with constant predictions or labels are left out."""
    rng = np.random.default_rng(seed)
    n = len(p)
    idx = rng.integers(0, n, (n_boot, n))
    pp, yy = p[idx], y[idx]
    ok = (np.ptp(pp, axis=1) > 0) & (np.ptp(yy, axis=1) > 0)
    pp, yy = pp[ok], yy[ok]
    draws = {
        "srcc": _rowwise_pearson(stats.rankdata(pp, axis=1), stats.rankdata(yy, axis=1)),
        "krcc": np.array([krcc(a, b) for a, b in zip(pp, yy)]),
        "plcc_raw": _rowwise_pearson(pp, yy),
    }
    out: dict[str, list[float] | None] = {}
    for key, vals in draws.items():
        vals = vals[np.isfinite(vals)]
        out[key] = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if len(vals) else None
    return out


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def selection_score(pred: np.ndarray, label: np.ndarray) -> float:
    """(SRCC + PLCC_raw) / 2, the model-selection criterion of seed 000; -inf if undefined."""
    pred = np.asarray(pred, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(label) == 0:
        return float("-inf")
    return (srcc(pred, label) + plcc(pred, label)) / 2.0

"""The bootstrap in O(n) memory: resamples as multiplicities, chunk by chunk, equal to a plain loop over the
same resample indices (scipy's statistics on the resampled values), for images and for references."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import stats

from iqabench import metrics, significance
from iqabench.metrics import ResampleUnit


def _data(n: int, seed: int = 0, decimals: int = 1):
    rng = np.random.default_rng(seed)
    p = np.round(rng.normal(size=n), decimals)  # rounded: ties in ranks, as real scores have
    y = np.round(p + rng.normal(size=n), decimals)
    return p, y


def _image_indices(n, n_boot, seed):
    """The documented resample indices: default_rng(seed).integers(0, n, (n_boot, n))."""
    return list(np.random.default_rng(seed).integers(0, n, (n_boot, n)))


def _reference_indices(codes, n_clusters, n_boot, seed):
    """Draw references with replacement and take every image of each drawn reference."""
    draws = np.random.default_rng(seed).integers(0, n_clusters, (n_boot, n_clusters))
    members = [np.flatnonzero(codes == c) for c in range(n_clusters)]
    return [np.concatenate([members[c] for c in row]) for row in draws]


def _plain(p, y, indices):
    out = {"srcc": [], "krcc": [], "plcc_raw": []}
    for idx in indices:
        a, b = p[idx], y[idx]
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        out["srcc"].append(stats.spearmanr(a, b).statistic)
        out["krcc"].append(stats.kendalltau(a, b).statistic)
        out["plcc_raw"].append(stats.pearsonr(a, b).statistic)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in out.items()}


@pytest.mark.parametrize("chunk", [1 << 21, 2 * 401])  # one chunk, and chunks of two resamples
def test_image_bootstrap_equals_a_plain_loop(monkeypatch, chunk):
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", chunk)
    p, y = _data(401)
    got = metrics.bootstrap(p, y, n_boot=60, seed=3)
    want = _plain(p, y, _image_indices(401, 60, 3))
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-12)


def test_reference_bootstrap_equals_a_plain_loop_over_the_drawn_references():
    p, y = _data(300, seed=1)
    refs = [f"ref{i % 12}" for i in range(300)]
    unit = ResampleUnit.by_reference(refs)
    assert unit.n_clusters == 12
    got = metrics.bootstrap(p, y, n_boot=50, seed=9, unit=unit)
    want = _plain(p, y, _reference_indices(unit.codes, 12, 50, 9))
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-12)


def test_each_resample_statistic_equals_scipy_on_the_same_indices():
    p, y = _data(250, seed=2)
    (w,) = list(metrics.resample_chunks(250, 16, 5))
    got = metrics.ResampledStatistics(p, y).many(("srcc", "krcc", "plcc_raw"), w)
    for b, idx in enumerate(_image_indices(250, 16, 5)):
        assert got["srcc"][b] == pytest.approx(stats.spearmanr(p[idx], y[idx]).statistic, abs=1e-12)
        assert got["krcc"][b] == pytest.approx(stats.kendalltau(p[idx], y[idx]).statistic, abs=1e-12)
        assert got["plcc_raw"][b] == pytest.approx(stats.pearsonr(p[idx], y[idx]).statistic, abs=1e-12)


def test_a_constant_resample_is_left_out():
    p = np.array([1.0, 1.0, 1.0, 2.0])
    w = np.array([[3.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])  # the first draws only the value 1
    got = metrics.ResampledStatistics(p, p).many(("srcc", "krcc", "plcc_raw"), w)
    assert all(np.isnan(v[0]) and np.isfinite(v[1]) for v in got.values())


def _peak(f) -> int:
    tracemalloc.start()
    f()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_memory_does_not_grow_with_n_boot(monkeypatch):
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 1 << 16)
    n = 20_000
    p, y = _data(n, decimals=3)
    peaks = [_peak(lambda k=k: (metrics.bootstrap(p, y, n_boot=k, seed=0),
                                significance.paired_bootstrap(p, y + 0.1, y, "srcc", n_boot=k, seed=0)))
             for k in (10, 200)]
    assert peaks[1] < 1.5 * peaks[0], peaks  # O(n) memory: more resamples, the same peak
    assert peaks[1] < 200 * n * 8 / 4, peaks  # far under one (n_boot x n) float64 array


@pytest.mark.parametrize("statistic", ["srcc", "plcc", "krcc"])
@pytest.mark.parametrize("by_reference", [False, True])
def test_paired_bootstrap_equals_a_plain_loop(statistic, by_reference):
    n, n_boot, seed = 240, 40, 4
    rng = np.random.default_rng(0)
    y = rng.normal(size=n)
    a, b = np.round(y + rng.normal(size=n), 1), np.round(y + 2 * rng.normal(size=n), 1)
    if by_reference:
        unit = ResampleUnit.by_reference([i // 20 for i in range(n)])
        indices = _reference_indices(unit.codes, unit.n_clusters, n_boot, seed)
    else:
        unit, indices = None, _image_indices(n, n_boot, seed)
    f = {"srcc": lambda u, v: stats.spearmanr(u, v).statistic, "plcc": lambda u, v: stats.pearsonr(u, v).statistic,
         "krcc": lambda u, v: stats.kendalltau(u, v).statistic}[statistic]
    diffs = np.array([f(a[i], y[i]) - f(b[i], y[i]) for i in indices])
    got = significance.paired_bootstrap(a, b, y, statistic, n_boot=n_boot, seed=seed, unit=unit)
    np.testing.assert_allclose(got.ci95, np.percentile(diffs, [2.5, 97.5]), rtol=0, atol=1e-12)
    below, above = (np.sum(diffs <= 0) + 1) / (n_boot + 1), (np.sum(diffs >= 0) + 1) / (n_boot + 1)
    assert got.p_value == pytest.approx(min(1.0, 2 * min(below, above)), abs=1e-12)
    assert got.n_valid == n_boot


@pytest.mark.parametrize("n", [2, 3, 37, 64, 129])
def test_weighted_kendall_equals_scipy_on_the_repeated_values(n):
    """The merge-sort count against scipy's tau-b of the resampled values themselves: heavy ties in
    x, in y and in both, sizes on and off powers of two, images drawn many times."""
    rng = np.random.default_rng(n)
    x = rng.integers(0, 4, n).astype(float)
    y = np.round(x + rng.integers(0, 3, n), 0)
    w = rng.integers(0, 5, (12, n)).astype(float)
    w[0] = 1.0  # the original sample
    got = metrics.WeightedKendall(x, y).of(w)
    for b in range(len(w)):
        take = np.repeat(np.arange(n), w[b].astype(int))
        want = stats.kendalltau(x[take], y[take]).statistic if len(take) > 1 else np.nan
        if np.isnan(want):
            assert np.isnan(got[b])
        else:
            assert got[b] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("decimals", [0, 1, 6])
def test_the_point_correlations_equal_scipy(decimals):
    p, y = _data(157, seed=decimals, decimals=decimals)
    assert metrics.srcc(p, y) == pytest.approx(stats.spearmanr(p, y).statistic, abs=1e-12)
    assert metrics.krcc(p, y) == pytest.approx(stats.kendalltau(p, y).statistic, abs=1e-12)
    assert metrics.plcc(p, y) == pytest.approx(stats.pearsonr(p, y).statistic, abs=1e-12)
    assert np.isnan(metrics.srcc(np.ones(5), np.arange(5.0)))  # constant: undefined, as scipy says

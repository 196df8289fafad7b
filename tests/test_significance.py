"""Paired bootstrap and Williams' t, checked against independent computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from iqabench.significance import paired_bootstrap, williams_t, williams_t_from_r


def data(n=120, seed=0, noise_a=0.5, noise_b=0.9):
    rng = np.random.default_rng(seed)
    y = rng.uniform(1, 5, n)
    a = y + rng.normal(0, noise_a, n)
    b = y + rng.normal(0, noise_b, n)
    return np.round(a, 1), np.round(b, 1), np.round(y, 1)  # rounding makes ties, as real scores have


@pytest.mark.parametrize("statistic", ["srcc", "plcc", "krcc"])
def test_paired_bootstrap_equals_a_plain_loop(statistic):
    a, b, y = data(n=121)  # odd: blocks of resamples must still draw the same stream as one big draw
    n_boot, seed = 150, 7
    result = paired_bootstrap(a, b, y, statistic, n_boot=n_boot, seed=seed)
    # independent: one draw of every resample's indices, scipy's correlations, a Python loop
    corr = {"srcc": stats.spearmanr, "plcc": stats.pearsonr, "krcc": stats.kendalltau}[statistic]
    idx = np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))
    diffs = np.array([corr(a[i], y[i]).statistic - corr(b[i], y[i]).statistic for i in idx])
    assert result.diff == pytest.approx(corr(a, y).statistic - corr(b, y).statistic, abs=1e-12)
    assert result.n_valid == n_boot and result.n_boot == n_boot and result.seed == seed
    assert result.ci95 == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)
    p = min(1.0, 2 * min((np.sum(diffs <= 0) + 1) / (n_boot + 1), (np.sum(diffs >= 0) + 1) / (n_boot + 1)))
    assert result.p_value == pytest.approx(p, abs=1e-12)


def test_bootstrap_separates_a_better_method_and_not_a_copy():
    a, b, y = data(n=200, noise_a=0.3, noise_b=1.5)
    better = paired_bootstrap(a, b, y, "srcc", n_boot=400, seed=1)
    assert better.diff > 0.2 and better.ci95[0] > 0 and better.p_value < 0.01
    same = paired_bootstrap(a, a, y, "srcc", n_boot=400, seed=1)
    assert same.diff == 0 and same.ci95 == (0.0, 0.0) and same.p_value == 1.0
    # a method ranking backwards is worse, not "as good in absolute value"
    backwards = paired_bootstrap(a, -a, y, "srcc", n_boot=200, seed=1)
    assert backwards.value_b == pytest.approx(-backwards.value_a) and backwards.diff > 1.5
    assert backwards.p_value < 0.05
    # the same seed gives the same answer; another seed another sample of the same distribution
    again = paired_bootstrap(a, b, y, "srcc", n_boot=400, seed=1)
    assert again == better
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap(a[:-1], b, y)


def test_williams_t_hand_computed_example():
    # r12 = .8, r13 = .7, r23 = .6, n = 100, by hand:
    # |R| = 1 - .64 - .49 - .36 + 2(.8)(.7)(.6) = 0.182; rbar = .75; (1 - r23)^3 = 0.064
    # den = 2 (99/97) 0.182 + .5625 (0.064) = 0.371505... + 0.036 = 0.407505...
    # t = 0.1 sqrt(99 (1.6) / den) = 0.1 sqrt(158.4 / 0.40750515) = 0.1 sqrt(388.70676) = 1.9715647
    den = 2 * 99 / 97 * 0.182 + 0.5625 * 0.064
    assert den == pytest.approx(0.40750515, abs=1e-8)
    result = williams_t_from_r(0.8, 0.7, 0.6, 100)
    assert result.t == pytest.approx(1.9715647, abs=1e-6) and result.df == 97
    assert result.p_value == pytest.approx(2 * stats.t.sf(1.9715647, 97), abs=1e-6)
    assert 0.05 < result.p_value < 0.06
    assert williams_t_from_r(0.7, 0.8, 0.6, 100).t == pytest.approx(-result.t)


def test_williams_t_has_its_nominal_size_and_power():
    """Monte Carlo: under rho12 = rho13 the test rejects about 5 % of samples; with a real gap, most."""
    rng = np.random.default_rng(3)

    def rejection_rate(r12, r13, r23, n=40, sims=2000):
        cov = np.array([[1, r12, r13], [r12, 1, r23], [r13, r23, 1]])
        z = rng.multivariate_normal(np.zeros(3), cov, size=(sims, n))
        zc = z - z.mean(axis=1, keepdims=True)
        c = np.einsum("sni,snj->sij", zc, zc)
        d = np.sqrt(np.einsum("sii->si", c))
        r = c / d[:, :, None] / d[:, None, :]
        ps = [williams_t_from_r(r[s, 0, 1], r[s, 0, 2], r[s, 1, 2], n).p_value for s in range(sims)]
        return float(np.mean(np.array(ps) < 0.05))

    size = rejection_rate(0.5, 0.5, 0.6)
    assert 0.035 <= size <= 0.065, size  # binomial sd at 2000 sims is 0.005
    assert rejection_rate(0.8, 0.4, 0.5, sims=400) > 0.8


def test_williams_on_ranks_is_spearman():
    a, b, y = data(n=90, seed=4)
    result = williams_t(a, b, y, "srcc")
    r12, r13, r23 = (stats.spearmanr(u, v).statistic for u, v in ((y, a), (y, b), (a, b)))
    expect = williams_t_from_r(r12, r13, r23, 90)
    assert (result.r12, result.r13, result.r23) == pytest.approx((r12, r13, r23), abs=1e-12)
    assert result.t == pytest.approx(expect.t, abs=1e-9) and result.t > 0
    plain = williams_t(a, b, y, "plcc")
    assert plain.r12 == pytest.approx(stats.pearsonr(y, a).statistic, abs=1e-12)
    assert williams_t(a[:3], b[:3], y[:3]) is None  # n - 3 degrees of freedom: needs n > 3
    assert math.isclose(williams_t(a, a, y).t, 0.0, abs_tol=1e-12)

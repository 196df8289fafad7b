import numpy as np
import pytest
from scipy import stats

from iqabench import metrics


@pytest.fixture
def arrays():
    rng = np.random.default_rng(3)
    label = rng.uniform(1, 5, 200)
    pred = np.tanh(label - 3) + rng.normal(0, 0.3, 200)
    return pred, label


def test_correlations_equal_scipy(arrays):
    pred, label = arrays
    out = metrics.compute(pred, label, n_boot=50)
    assert out["srcc"] == pytest.approx(stats.spearmanr(pred, label).statistic, abs=1e-12)
    assert out["krcc"] == pytest.approx(stats.kendalltau(pred, label).statistic, abs=1e-12)
    assert out["plcc_raw"] == pytest.approx(stats.pearsonr(pred, label).statistic, abs=1e-12)


def test_logistic_plcc_equals_pearson_of_fitted_values(arrays):
    pred, label = arrays
    out = metrics.compute(pred, label, n_boot=10)
    fitted = metrics.logistic4(pred, *out["logistic_params"])
    assert out["plcc"] == pytest.approx(stats.pearsonr(fitted, label).statistic, abs=1e-12)
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((fitted - label) ** 2)), abs=1e-12)
    assert out["plcc"] > out["plcc_raw"]  # the tanh relation is non-linear: the fit must help


def test_sign_is_kept_for_a_backwards_method(arrays):
    pred, label = arrays
    out = metrics.compute(-pred, label, n_boot=10)
    assert out["srcc"] < -0.5 and out["plcc_raw"] < -0.5 and out["plcc"] < -0.5
    assert out["logistic_direction"] == "decreasing"


def test_orientation_of_lower_better_methods_and_dmos_sets(arrays):
    pred, label = arrays
    plain = metrics.compute(pred, label, n_boot=10)
    both_flipped = metrics.compute(-pred, -label, method_higher_better=False, dataset_higher_better=False, n_boot=10)
    assert both_flipped["srcc"] == pytest.approx(plain["srcc"], abs=1e-12)
    one_flipped = metrics.compute(-pred, label, method_higher_better=False, n_boot=10)
    assert one_flipped["srcc"] == pytest.approx(plain["srcc"], abs=1e-12)
    assert one_flipped["orientation"] == {"prediction_negated": True, "label_negated": False}


def test_bootstrap_interval_is_seeded_and_contains_estimate(arrays):
    pred, label = arrays
    a = metrics.compute(pred, label, n_boot=200, seed=1)
    b = metrics.compute(pred, label, n_boot=200, seed=1)
    c = metrics.compute(pred, label, n_boot=200, seed=2)
    assert a["ci95"] == b["ci95"] and a["ci95"] != c["ci95"]
    lo, hi = a["ci95"]["srcc"]
    assert lo < a["srcc"] < hi


def test_undefined_metrics_are_null_with_a_reason():
    out = metrics.compute(np.ones(10), np.arange(10.0))
    assert out["srcc"] is None and out["plcc"] is None and "constant" in out["undefined_reason"]
    out = metrics.compute(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert out["srcc"] is None and "fewer than 3" in out["undefined_reason"]


def test_vectorised_bootstrap_equals_a_loop_over_scipy(arrays):
    pred, label = arrays
    pred = np.round(pred, 1)  # ties, so rank averaging matters
    out = metrics.bootstrap(pred, label, n_boot=60, seed=5)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, len(pred), (60, len(pred)))
    s = [stats.spearmanr(pred[i], label[i]).statistic for i in idx]
    p = [stats.pearsonr(pred[i], label[i]).statistic for i in idx]
    assert out["srcc"] == pytest.approx([np.percentile(s, 2.5), np.percentile(s, 97.5)], abs=1e-12)
    assert out["plcc_raw"] == pytest.approx([np.percentile(p, 2.5), np.percentile(p, 97.5)], abs=1e-12)

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


# -- the multi-start logistic fit -----------------------------------------------------------
# Arrays found by a search over seeds of these generators (realistic MOS on [1, 5], n = 200) for
# cases where the VQEG data-driven start alone ends in a worse local minimum.

def _wild_outputs(seed: int = 149, n: int = 200):
    """A method that follows MOS through tanh, with noise and three wild outputs, read backwards
    (it ranks images the wrong way round)."""
    rng = np.random.default_rng(seed)
    mos = np.clip(rng.normal(3.2, 0.7, n), 1, 5)
    z = (mos - mos.mean()) / mos.std()
    pred = np.tanh(rng.uniform(0.5, 3) * z) + rng.normal(0, 0.2, n)
    idx = rng.choice(n, 3, replace=False)
    pred[idx] += rng.choice([-1, 1], 3) * rng.uniform(3, 10, 3)
    return -pred, mos


def _saturated_softmax(seed: int = 118, n: int = 200):
    """Softmax-like scores that saturate near 1 for most images (an MLLM's good-vs-poor)."""
    rng = np.random.default_rng(seed)
    mos = np.clip(rng.normal(3.4, 0.7, n), 1, 5)
    z = (mos - mos.mean()) / mos.std()
    centre = -rng.uniform(1.0, 2.5)
    pred = 1 / (1 + np.exp(-rng.uniform(2, 6) * (z - centre))) + rng.normal(0, 0.01, n)
    return pred, mos


def _sse(pred, label, params):
    return float(np.sum((metrics.logistic4(pred, *params) - label) ** 2))


def _fit_from(pred, label, p0):
    import warnings

    from scipy import optimize

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(metrics.logistic4, pred, label, p0=p0, maxfev=5000)
    except RuntimeError:
        return None
    return params if np.all(np.isfinite(params)) else None


def _single_start(pred, label):
    """The fit as it was: one data-driven start."""
    return _fit_from(pred, label, [label.max(), label.min(), pred.mean(), pred.std()])


def _random_starts(pred, label, n=60, seed=0):
    """Brute force: scipy from many random starts over the plausible parameter box; the lowest residual."""
    rng = np.random.default_rng(seed)
    lo, hi, span = label.min(), label.max(), np.ptp(label)
    best = None
    for _ in range(n):
        b1, b2 = rng.uniform(lo - span, hi + span, 2)
        p0 = [b1, b2, rng.uniform(pred.min(), pred.max()), pred.std() * 10 ** rng.uniform(-2, 1.5)]
        params = _fit_from(pred, label, p0)
        if params is not None and (best is None or _sse(pred, label, params) < _sse(pred, label, best)):
            best = params
    return best


def _logistic_plcc(pred, label, params):
    fitted = metrics.logistic4(pred, *params)
    if np.ptp(fitted) == 0:
        return None
    return (1.0 if params[0] >= params[1] else -1.0) * stats.pearsonr(fitted, label).statistic


@pytest.mark.parametrize("make", [_wild_outputs, _saturated_softmax])
def test_multi_start_fit_reaches_the_brute_force_minimum_the_single_start_misses(make):
    pred, label = make()
    single = _single_start(pred, label)
    brute = _random_starts(pred, label)
    fit = metrics.best_logistic_fit(pred, label)
    assert _sse(pred, label, single) > 1.02 * _sse(pred, label, brute)  # the old start is stuck
    assert fit.sse == pytest.approx(_sse(pred, label, brute), rel=1e-6)  # the multi-start is not
    assert fit.start != "data-driven" and fit.starts_converged >= 2
    out = metrics.compute(pred, label, n_boot=10)
    assert out["plcc"] == pytest.approx(_logistic_plcc(pred, label, brute), abs=1e-6)
    old = _logistic_plcc(pred, label, single)
    assert old is None or abs(out["plcc"]) > abs(old) + 0.005
    assert out["logistic_start"] == fit.start


def test_a_backwards_method_keeps_its_negative_logistic_plcc_after_the_multi_start():
    pred, label = _wild_outputs()
    out = metrics.compute(pred, label, n_boot=10)
    assert out["srcc"] < -0.8 and out["plcc"] < -0.8 and out["logistic_direction"] == "decreasing"
    assert _logistic_plcc(pred, label, _single_start(pred, label)) is None  # the single start fitted a constant


def test_multi_start_is_never_worse_than_the_data_driven_start(arrays):
    pred, label = arrays
    for p, y in [(pred, label), (-pred, label), (np.exp(3 * pred), label), (np.round(pred), label)]:
        fit = metrics.best_logistic_fit(p, y)
        single = _single_start(p, y)
        assert single is None or fit.sse <= _sse(p, y, single) * (1 + 1e-9)


def test_logistic4_equals_the_vqeg_formula_written_with_clip():
    rng = np.random.default_rng(5)
    for _ in range(300):
        x = rng.normal(0, rng.choice([1e-3, 1.0, 1e3]), int(rng.integers(1, 300)))
        x[rng.integers(0, len(x), 2)] = rng.choice([np.nan, np.inf, -np.inf, 0.0])
        b1, b2, b3, b4 = rng.normal(0, 10, 4) * [1, rng.choice([0.0, 1.0]), 1, rng.choice([1e-14, 1.0, 1e4])]
        with np.errstate(invalid="ignore", over="ignore"):
            z = np.clip(-(x - b3) / (abs(b4) + 1e-12), -500, 500)
            expected = (b1 - b2) / (1.0 + np.exp(z)) + b2
            got = metrics.logistic4(x, b1, b2, b3, b4)
        np.testing.assert_array_equal(got, expected)  # NaN where the formula gives NaN
    assert metrics.logistic4(0.5, 4.0, 1.0, 0.0, 1.0) == pytest.approx(1.0 + 3.0 / (1.0 + np.exp(-0.5)))


def test_each_start_is_refined_as_curve_fit_refines_it():
    import warnings

    from scipy import optimize

    rng = np.random.default_rng(9)
    compared = 0
    for i in range(40):
        label = rng.uniform(1, 5, int(rng.choice([8, 60, 200])))
        pred = [np.tanh(label - 3), np.exp(label), -label, np.round(label)][i % 4] + rng.normal(0, 0.3, len(label))
        for p0 in metrics.logistic_starts(pred, label).values():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    expected = optimize.curve_fit(metrics.logistic4, pred, label, p0=p0, maxfev=20000)[0]
                except RuntimeError:
                    expected = None
            got = metrics._refined(pred, label, p0)
            if expected is None or not np.all(np.isfinite(expected)):
                assert got is None
                continue
            # MINPACK is not bit-reproducible from call to call in flat valleys, so: equal residuals
            assert _sse(pred, label, got) == pytest.approx(_sse(pred, label, expected), rel=1e-9)
            compared += 1
    assert compared > 200
    assert metrics._refined(np.arange(3.0), np.arange(3.0), [1.0, 0.0, 1.0, 1.0]) is None  # n < 4: refused
    assert metrics.best_logistic_fit(np.array([1.0, np.nan, 3, 4, 5]), np.arange(5.0)) is None


def test_step_start_is_the_best_two_level_split():
    pred = np.array([0.0, 0.1, 0.2, 1.0, 1.1, 1.2, 1.3])
    label = np.array([1.0, 1.2, 1.1, 4.0, 4.2, 3.9, 4.1])
    b1, b2, b3, b4 = metrics.logistic_starts(pred, label)["step"]
    assert b3 == pytest.approx(0.6) and b1 == pytest.approx(4.05) and b2 == pytest.approx(1.1)
    assert 0 < b4 < 0.02
    assert "step" not in metrics.logistic_starts(np.ones(5), np.arange(5.0))


# -- the metric table ---------------------------------------------------------------------------------
def test_metric_table_describes_what_compute_writes():
    """Every claim of the table checked against compute(): the keys, the bootstrap intervals, the
    correlation range, the direction (a perfect prediction is the best value), the fitted flag."""
    from iqabench import significance

    rng = np.random.default_rng(3)
    y = rng.normal(size=60)
    x = np.tanh(y) + rng.normal(scale=0.3, size=60)
    out = metrics.compute(x, y, n_boot=200)
    assert set(metrics.METRIC_KEYS) <= set(out)
    assert tuple(out["ci95"]) == metrics.INTERVAL_METRICS
    perfect = metrics.compute(y, y, n_boot=100)
    for key, m in metrics.METRICS.items():
        assert m.key == key and m.label and m.tex and m.meaning
        if m.correlation:
            assert -1.0 <= out[key] <= 1.0
        best = 1.0 if m.higher_better else 0.0  # a perfect prediction: correlation 1, error 0
        assert perfect[key] == pytest.approx(best, abs=1e-6)
        assert m.statistic is None or m.statistic in significance.STATISTICS
    fitted = metrics.logistic4(x, *out["logistic_params"])
    assert out["plcc"] == pytest.approx(metrics.plcc(fitted, y)) and metrics.METRICS["plcc"].fitted
    assert out["plcc_raw"] == pytest.approx(metrics.plcc(x, y)) and not metrics.METRICS["plcc_raw"].fitted
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((fitted - y) ** 2))) and metrics.METRICS["rmse"].fitted
    assert len({m.label for m in metrics.METRICS.values()}) == len(metrics.METRICS)


def test_format_value():
    assert metrics.format_value(None, 3) == "n/a" and metrics.format_value(None, 3, "—") == "—"
    assert metrics.format_value(0.12345, 3) == "0.123" and metrics.format_value(-0.0001, 3) == "0.000"
    assert metrics.format_value(-0.5, 2) == "-0.50"


def _string_constants(path):
    """Every string literal of a module (f-string parts included) that is not a docstring."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_metric_label_is_written_outside_the_table():
    """A header naming a metric comes from metrics.METRICS: no string literal of the package is a
    metric's label (or its LaTeX form), and the retired second spellings appear nowhere."""
    from pathlib import Path

    import iqabench

    labels = {m.label for m in metrics.METRICS.values()} | {m.tex for m in metrics.METRICS.values()}
    retired = ("PLCC (no fit)", "PLCC (logistic fit)", "PLCC_raw", r"$_\mathrm{raw}$")
    root = Path(iqabench.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "metrics.py":
            continue
        for line, text in _string_constants(path):
            if text.strip() in labels or any(r in text for r in retired):
                found.append(f"{path.relative_to(root)}:{line}: {text.strip()!r}")
    assert not found, "metric labels written outside iqabench/metrics.py:\n" + "\n".join(found)

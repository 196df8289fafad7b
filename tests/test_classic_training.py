"""The offline training path: BRISQUE features + SVR through `iqabench train`, then `run` uses it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from iqabench import registry
from iqabench.api import RunContext
from iqabench.errors import IqaError
from iqabench.models.brisque_features import N_FEATURES, brisque_features
from iqabench.run import RunConfig, run
from iqabench.train import TrainConfig, train


def test_features_react_to_distortion(tiny_root):
    from PIL import Image

    clean = Image.open(tiny_root / "tiny" / "images" / "astronaut_gaussian_blur_1.png").convert("RGB")
    blurred = Image.open(tiny_root / "tiny" / "images" / "astronaut_gaussian_blur_5.png").convert("RGB")
    a, b = brisque_features(clean), brisque_features(blurred)
    assert a.shape == (N_FEATURES,) and np.all(np.isfinite(a))
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="too small"):
        brisque_features(clean.resize((8, 8)))


def test_train_saves_safetensors_and_run_uses_it(tiny_root, tmp_path):
    common = dict(method="brisque-svr", dataset="tiny", data_root=tiny_root, results=tmp_path,
                  options={"c_grid": [1.0, 8.0], "gamma_grid": [0.05, 0.5]})
    with pytest.raises(IqaError, match="no trained checkpoint"):
        run(RunConfig(**common, progress=False), on_log=lambda m: None)
    workdir, summary = train(TrainConfig(**common), on_log=lambda m: None)
    assert len(summary["grid"]) == 4
    assert summary["selected"] in [{"C": c, "gamma": g} for c in (1.0, 8.0) for g in (0.05, 0.5)]
    tensors = load_file(str(workdir / "svr.safetensors"))
    assert tensors["support_vectors"].shape[1] == N_FEATURES
    result = run(RunConfig(**common, progress=False, n_boot=20), on_log=lambda m: None)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["checkpoint"]["dir"] == str(workdir) and "svr.safetensors" in manifest["checkpoint"]["files"]
    assert result.metrics["n_failed"] == 0 and result.metrics["srcc"] is not None


def test_own_prediction_equals_sklearn(tiny_root):
    from sklearn.svm import SVR

    cls = registry.methods.get("brisque-svr")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, N_FEATURES)), rng.uniform(size=40)
    svr = SVR(kernel="rbf", C=4.0, gamma=0.1, epsilon=0.05).fit(x, y)
    method = cls()
    lo, hi = np.full(N_FEATURES, -1.0), np.full(N_FEATURES, 1.0)  # identity scaling
    method._model = {"support_vectors": svr.support_vectors_, "dual_coef": svr.dual_coef_.ravel(),
                     "intercept": svr.intercept_, "feature_min": lo, "feature_max": hi, "gamma": 0.1}
    np.testing.assert_allclose(method.predict_features(x), svr.predict(x), rtol=1e-10, atol=1e-10)


def test_killed_feature_extraction_resumes(tiny_root, tmp_path):
    common = dict(method="brisque-svr", dataset="tiny", data_root=tiny_root, results=tmp_path,
                  options={"c_grid": [1.0], "gamma_grid": [0.1]})
    workdir, _ = train(TrainConfig(**common), on_log=lambda m: None)
    cache = workdir / "features.train.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:3]) + "\n" + lines[3][:15])  # killed while writing the 4th
    before = (workdir / "svr.safetensors").read_bytes()
    train(TrainConfig(**common), on_log=lambda m: None)
    ids = [json.loads(x)["id"] for x in cache.read_text().splitlines() if x.endswith("}")]
    assert sorted(ids) == sorted(json.loads(x)["id"] for x in lines) and len(ids) == len(set(ids))
    assert (workdir / "svr.safetensors").read_bytes() == before  # same features, same model


def test_an_unusable_training_image_is_counted_not_skipped(tiny_root, tmp_path):
    import shutil

    from PIL import Image

    from iqabench.plan import build_train_plan

    root = tmp_path / "data"
    shutil.copytree(tiny_root / "tiny", root / "tiny")
    config = TrainConfig(method="brisque-svr", dataset="tiny", data_root=root, results=tmp_path / "r",
                         options={"c_grid": [1.0], "gamma_grid": [0.1]})
    victim = build_train_plan(config).train_ids[0]
    Image.new("RGB", (8, 8)).save(root / "tiny" / "images" / victim)  # decodes, but too small for BRISQUE
    workdir, summary = train(config, on_log=lambda m: None)
    assert summary["n_failed_images"] == 1
    failures = [json.loads(x) for x in (workdir / "failures.jsonl").read_text().splitlines()]
    assert failures[0]["id"] == victim and "too small" in failures[0]["error"]


def _blur_source(label_of):
    """Blurred copies of one texture; target = sharpness in [0, 1]; `label_of(target)` the raw label."""
    from PIL import Image, ImageFilter

    from iqabench.api import Sample, SampleSource

    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(1))
    samples = {}
    for i in range(12):
        radius = (i % 6) * 0.6
        target = 1.0 - radius / 3.0
        samples[f"b{i}"] = Sample(f"b{i}", base.filter(ImageFilter.GaussianBlur(radius)), label=label_of(target),
                                  target=target)
    return SampleSource(list(samples), samples.__getitem__)


def test_fits_engine_targets_and_predicts_in_target_space(tmp_path):
    cls = registry.methods.get("brisque-svr")
    # target space, but no declared range: an RBF SVR's predictions are unbounded (see the last line)
    assert cls.info.higher_better is True and cls.info.score_range is None
    options = cls.Options(c_grid=(4.0,), gamma_grid=(0.1,))
    runs = []
    for i, label_of in enumerate([lambda t: 5.0 * t, lambda t: 100.0 - 80.0 * t]):  # MOS-like, DMOS-like
        source = _blur_source(label_of)
        method = cls(options)
        method.setup(RunContext(dataset="toy"))
        method.fit(source, source, tmp_path / str(i), seed=0)
        runs.append((tmp_path / str(i) / "svr.safetensors").read_bytes())
        scores = method.score([source.load(sid) for sid in source.ids])
    assert runs[0] == runs[1]  # the raw labels (scale, direction) never reach the regressor
    targets = [source.load(sid).target for sid in source.ids]
    assert np.corrcoef(scores, targets)[0, 1] > 0.9 and -0.2 < min(scores) and max(scores) < 1.2


def test_a_training_sample_without_target_is_refused(tmp_path):
    from iqabench.api import Sample, SampleSource

    cls = registry.methods.get("brisque-svr")
    good = _blur_source(lambda t: t)
    bare = {sid: Sample(sid, good.load(sid).image, label=1.0) for sid in good.ids}
    source = SampleSource(list(bare), bare.__getitem__)
    with pytest.raises(IqaError, match="the engine gave no training target for image b0"):
        cls(cls.Options(c_grid=(1.0,), gamma_grid=(0.1,))).fit(source, source, tmp_path, seed=0)

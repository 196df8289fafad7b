"""The run plan, honest training provenance, engine-owned targets, metrics with no model, the store's
refusals of mixed or corrupt records, and a trainable plugin written outside the package."""
from __future__ import annotations

import json
import textwrap

import pytest

from iqabench import io, registry
from iqabench.errors import IqaError
from iqabench.registry import load_plugin
from iqabench.run import RunConfig, run
from iqabench.score import score_run
from iqabench.store import RecordProblems, RunStore
from iqabench.train import TrainConfig, train

# A third party's trainable method, in a file of its own: it never reads the dataset card.
PLUGIN = textwrap.dedent('''
    import json
    import numpy as np
    from iqabench import io
    from iqabench.api import MethodInfo, TrainableMethod
    from iqabench.registry import register_method

    def brightness(sample):
        return float(np.asarray(sample.image.convert("L"), dtype=float).mean() / 255.0)

    @register_method
    class BrightnessFit(TrainableMethod):
        name = "brightness-fit"
        info = MethodInfo(kind="trainable", description="least-squares line from mean brightness to target")

        @classmethod
        def checkpoint_files(cls):
            return ("fit.json",)

        def fit(self, train, val, workdir, seed):
            xs, ys = [], []
            for batch in train.batches(8):
                xs += [brightness(s) for s in batch]
                ys += [s.target for s in batch]
            slope, intercept = np.polyfit(xs, ys, 1)
            io.write_json_atomic(workdir / "fit.json", {"slope": slope, "intercept": intercept, "targets": ys})
            return {"n_train": len(xs)}

        def load_checkpoint(self, workdir):
            self.fit_ = json.loads((workdir / "fit.json").read_text())

        def score(self, samples):
            return [self.fit_["slope"] * brightness(s) + self.fit_["intercept"] for s in samples]
''')


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("thirdparty") / "brightness_fit.py"
    path.write_text(PLUGIN)
    assert len(PLUGIN.strip().splitlines()) < 40
    with registry.scratch():  # registered for this module's tests, undone after them
        load_plugin(str(path))
        yield "brightness-fit"


def _tcfg(root, results, **kw):
    return TrainConfig(**{"method": "brightness-fit", "dataset": "tiny", "data_root": root, "results": results,
                          "device": "cpu", **kw})


def test_trainable_plugin_trains_on_engine_targets(plugin, tiny_root, tmp_path):
    workdir, summary = train(_tcfg(tiny_root, tmp_path), on_log=lambda m: None)
    targets = json.loads((workdir / "fit.json").read_text())["targets"]
    card = registry.datasets.get("tiny")
    lo, hi = card.score_range
    # the engine scaled the labels into [0, 1] from the card's range (tiny: higher is better)
    assert all(0.0 <= t <= 1.0 for t in targets) and max(targets) > 0.5 > min(targets)
    result = run(RunConfig(method=plugin, dataset="tiny", data_root=tiny_root, results=tmp_path, device="cpu",
                           progress=False, n_boot=20), on_log=lambda m: None)
    assert result.metrics["n_failed"] == 0 and result.metrics["checkpoint"]["kind"] == "trained"


def test_limit_and_seed_get_their_own_checkpoints_and_truthful_manifests(plugin, tiny_root, tmp_path):
    a, _ = train(_tcfg(tiny_root, tmp_path, limit=3, seed=1), on_log=lambda m: None)
    b, _ = train(_tcfg(tiny_root, tmp_path, seed=2), on_log=lambda m: None)
    assert a != b
    ma, mb = (json.loads((d / "train_manifest.json").read_text()) for d in (a, b))
    assert (ma["seed"], ma["limit"], ma["n_train"]) == (1, 3, 3)
    assert (mb["seed"], mb["limit"]) == (2, None) and mb["n_train"] > 3
    # training again the same thing resumes the same folder, logs the attempt, keeps the manifest
    again, _ = train(_tcfg(tiny_root, tmp_path, limit=3, seed=1), on_log=lambda m: None)
    assert again == a and json.loads((a / "train_manifest.json").read_text()) == ma
    events = [r["event"] for r in io.JsonlLog(a / "train_attempts.jsonl").read()]
    assert events == ["started", "finished", "started", "finished"]
    # a run with --limit looks for the limited checkpoint; without it, the full one
    full = run(RunConfig(method=plugin, dataset="tiny", data_root=tiny_root, results=tmp_path, seed=2, device="cpu",
                         progress=False, n_boot=0), on_log=lambda m: None)
    assert full.metrics["checkpoint"]["dir"] == str(b)
    with pytest.raises(IqaError, match="no trained checkpoint; train it first: iqabench train .* --seed 7"):
        run(RunConfig(method=plugin, dataset="tiny", data_root=tiny_root, results=tmp_path, seed=7, device="cpu",
                      progress=False), on_log=lambda m: None)


def test_metrics_of_a_finished_run_need_no_weights(plugin, tiny_root, tmp_path):
    workdir, _ = train(_tcfg(tiny_root, tmp_path), on_log=lambda m: None)
    first = run(RunConfig(method=plugin, dataset="tiny", data_root=tiny_root, results=tmp_path, device="cpu",
                          progress=False, n_boot=30), on_log=lambda m: None)
    for f in workdir.iterdir():
        f.unlink()
    workdir.rmdir()
    again = score_run(first.run_dir, n_boot=30)
    for key in ("srcc", "plcc", "krcc", "plcc_raw", "n", "n_failed", "ci95"):
        assert again[key] == first.metrics[key]


def test_finished_run_recomputes_without_building_the_method(tiny_root, tmp_path, monkeypatch):
    base = dict(method="slow-sharpness", dataset="tiny", split="all", data_root=tiny_root, results=tmp_path,
                device="cpu", progress=False, n_boot=10)
    first = run(RunConfig(**base), on_log=lambda m: None)
    cls = registry.methods.get("slow-sharpness")
    monkeypatch.setattr(cls, "check_available", classmethod(lambda c, o=None: "weights were deleted"))
    monkeypatch.setattr(cls, "setup", lambda self: pytest.fail("a finished run must not build its method"))
    again = run(RunConfig(**base), on_log=lambda m: None)
    assert again.run_dir == first.run_dir and again.metrics["srcc"] == first.metrics["srcc"]


def test_bad_counts_are_refused_at_the_edge(tmp_path):
    for kw, text in (({"limit": -1}, "--limit"), ({"limit": 0}, "--limit"), ({"batch_size": 0}, "--batch-size"),
                     ({"batch_size": -2}, "--batch-size"), ({"seed": -1}, "--seed")):
        with pytest.raises(IqaError, match=text):
            RunConfig(method="m", dataset="d", **kw)
    afile = tmp_path / "results.txt"
    afile.write_text("x")
    with pytest.raises(IqaError, match="is a file"):
        TrainConfig(method="m", dataset="d", results=afile)


def test_unavailable_device_is_one_line_before_anything_is_written(tiny_root, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(IqaError, match="CUDA is not available"):
        run(RunConfig(method="slow-sharpness", dataset="tiny", data_root=tiny_root, results=tmp_path / "r",
                      device="cuda"), on_log=lambda m: None)
    assert not (tmp_path / "r").exists()


# -- the store: never mix, never count twice, name what is wrong ------------------------------------
def _store_with(tmp_path, lines: list[str]) -> RunStore:
    store = RunStore(tmp_path / "run")
    (store.dir / "predictions.jsonl").write_text("".join(line + "\n" for line in lines))
    return store


def test_store_reports_conflicts_outsiders_and_bad_records(tmp_path):
    store = _store_with(tmp_path, [
        json.dumps({"id": "a", "score": 1.0, "label": 1, "error": None}),
        json.dumps({"id": "a", "score": 2.0, "label": 1, "error": None}),  # merged folders
        json.dumps({"id": "zz", "score": 1.0, "label": 1, "error": None}),  # not in this run
        json.dumps([1, 2]),
        json.dumps({"score": 1.0}),
        json.dumps({"id": "b", "score": "high", "error": None}),
        '{"id": "c", "score": NaN, "error": null}',
        json.dumps({"id": "d", "score": 0.5, "label": 1, "error": None}),
    ])
    problems = RecordProblems()
    records = store.read_records(["a", "b", "c", "d"], problems)
    assert set(records) == {"a", "d"} and records["a"]["score"] == 1.0
    assert problems.conflicts == ["a"] and problems.outside == ["zz"]
    assert len(problems.bad_lines) == 4
    with pytest.raises(IqaError, match=r"predictions.jsonl:4: corrupt prediction record: not a JSON object"):
        store.read_records(["a", "b", "c", "d"])
    store = _store_with(tmp_path, [json.dumps({"id": "a", "score": s, "error": None}) for s in (1.0, 2.0)])
    with pytest.raises(IqaError, match="two records of image 'a' with different scores"):
        store.read_records(["a"])


def test_store_refuses_a_resume_on_changed_labels_or_files(tmp_path):
    store = RunStore(tmp_path / "run")
    inputs = [{"id": "x", "path": "1024x768/x.jpg", "label": 50.0},
              {"id": "y", "path": "1024x768/y.jpg", "label": 60.0}]
    store.check_or_write_inputs(inputs, "h1")
    store.check_or_write_inputs(inputs, "h1")
    relabelled = [dict(inputs[0], label=51.0), inputs[1]]
    with pytest.raises(IqaError, match=r"1 label\(s\) changed \(first 'x': 50.0 -> 51.0\)"):
        store.check_or_write_inputs(relabelled, "h2")
    moved = [dict(r, path=r["path"].replace("1024x768", "512x384")) for r in inputs]
    with pytest.raises(IqaError, match="2 image file.*1024x768/x.jpg' -> '512x384/x.jpg'"):
        store.check_or_write_inputs(moved, "h3")


def test_torn_manifest_is_named(tmp_path):
    store = RunStore(tmp_path / "run")
    (store.dir / "manifest.json").write_text('{"method": "x", "da')
    with pytest.raises(IqaError, match="manifest.json: run manifest is not valid JSON"):
        store.manifest()


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "m.json"

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(OSError):
        io.write_json_atomic(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []

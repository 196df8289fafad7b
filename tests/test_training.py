"""The engine's epoch trainer (iqabench.training): a trainable plugin written here, in under 40
lines, gets resume, validation, selection and patience from the engine; validation over several
named sources selects on the mean; --batch-size is the training batch and part of the checkpoint key."""
from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from iqabench import api, registry, training
from iqabench.cli.main import cli
from iqabench.errors import IqaError
from iqabench.train import TrainConfig, train


# -- the plugin: score = w0 * brightness + w1 * brightness^2, fitted by SGD; its own steps --------
def _x(samples) -> np.ndarray:
    x = np.array([np.asarray(s.image, dtype=np.float64).mean() / 255.0 for s in samples])
    return np.stack([x, x ** 2], axis=1)


class Quadratic(training.EpochTrainable):
    name, info = "test-quadratic", api.MethodInfo(kind="trainable", description="SGD on brightness")
    schedule_options, state_file, framework, save_every, patience = ("epochs",), "state.st", "numpy", 1, 5

    class Options(api.Options):
        epochs: int = 3
        lr: float = 0.5

    default_batch_size = classmethod(lambda cls, options, dataset: 4)  # the recipe, when --batch-size is unset
    checkpoint_files = classmethod(lambda cls: ("w.json",))

    def training_stages(self, train, workdir, seed):
        self.train, self.seed, self.epochs, self.val_batch_size = train, seed, self.options.epochs, self.batch_size
        self.w = np.random.default_rng(seed).normal(size=2)
        yield self
        self.load_checkpoint(workdir)

    def compat(self):
        return {"lr": self.options.lr, "batch_size": self.batch_size, "seed": self.seed}

    def state(self):
        return {"w": self.w}

    def load_state(self, tensors, source):
        self.w = tensors["w"].copy()

    @contextlib.contextmanager
    def epoch(self, n):
        ids = list(np.random.default_rng([self.seed, n]).permutation(self.train.ids))
        yield [ids[i:i + self.batch_size] for i in range(0, len(ids), self.batch_size)]

    def step(self, ids, at):
        samples = [self.train.load(i) for i in ids]
        err = _x(samples) @ self.w - training.targets_of(samples, self.name)
        self.w = self.w - self.options.lr * 2 * _x(samples).T @ err / len(ids)
        return float((err ** 2).sum()), len(ids)

    def score(self, samples):
        return list(_x(samples) @ self.w)

    predictor = lambda self: self.score

    def save_selected(self, workdir, record):
        (workdir / "w.json").write_text(json.dumps({"w": self.w.tolist(), "epoch": record["epoch"]}))

    def load_checkpoint(self, workdir):
        self.w = np.asarray(json.loads((workdir / "w.json").read_text())["w"])


# -- end of the plugin ---------------------------------------------------------------------------


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.setitem(registry.methods._targets, Quadratic.name, Quadratic)  # undone after the test
    return Quadratic.name


def _cfg(root, results, **extra):
    return TrainConfig(method="test-quadratic", dataset="tiny", data_root=root, results=results, limit=12,
                       progress=False, **extra)


def test_the_plugin_is_short():
    import inspect

    source = inspect.getsource(__import__(__name__))
    plugin = source.split("its own steps --------\n")[1].split("# -- end of the plugin")[0]
    assert len([line for line in plugin.splitlines() if line.strip()]) < 40


def test_a_plugin_gets_validation_resume_and_selection_from_the_engine(plugin, tiny_root, tmp_path):
    whole_dir, whole = train(_cfg(tiny_root, tmp_path / "a"), on_log=lambda m: None)
    assert whole["criterion"] == "val (SRCC + PLCC) / 2" and whole["epochs_run"] == 3 and whole["stopped"] == "epochs"
    assert [r["epoch"] for r in whole["history"]] == [1, 2, 3] and all(r["val_n"] == 12 for r in whole["history"])
    best = max(whole["history"], key=lambda r: r["val_selection"])
    assert whole["best_epoch"] == best["epoch"] == json.loads((whole_dir / "w.json").read_text())["epoch"]
    logged = []
    step = Quadratic.step

    def interrupted(self, ids, at):  # a kill in the middle of epoch 2, after its first step was saved
        if (at.epoch, at.index) == (2, 1):
            raise KeyboardInterrupt
        return step(self, ids, at)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(Quadratic, "step", interrupted)
        train(_cfg(tiny_root, tmp_path / "b"), on_log=lambda m: None)
    workdir, resumed = train(_cfg(tiny_root, tmp_path / "b"), on_log=logged.append)
    assert resumed["resumed_from"] == {"epoch": 1, "step_in_epoch": 1}
    assert any("resuming after epoch 1, step 1" in line for line in logged)
    assert any("epoch 3/3" in line and "val SRCC" in line for line in logged)  # progress lines
    assert resumed["history"] == whole["history"]
    assert (workdir / "w.json").read_text() == (whole_dir / "w.json").read_text()
    a, _ = training.read_state(whole_dir / "state.st", "numpy")
    b, _ = training.read_state(workdir / "state.st", "numpy")
    assert a["w"].tobytes() == b["w"].tobytes()  # bit-identical
    summary = json.loads((workdir / "train_summary.json").read_text())
    assert {"best_epoch", "epochs_run", "stopped", "best_val", "criterion", "history"} <= summary.keys()

    # a state written with other settings is refused in one line naming the file and the settings
    with pytest.raises(IqaError, match=r"state.st: was written with other settings \(lr\)"):
        other = Quadratic(Quadratic.Options(lr=0.1))
        other.ctx = api.RunContext(batch_size=4)  # what the engine's setup(ctx) gives
        other.fit(None, api.SampleSource(["x"], None), workdir, 42)


def test_batch_size_is_the_training_batch_and_part_of_the_key(plugin, tiny_root, tmp_path):
    runner = CliRunner()
    base = ["train", "--method", "test-quadratic", "--dataset",
            "tiny", "--data-root", str(tiny_root), "--results", str(tmp_path), "--limit", "12", "--no-progress"]
    folders = []
    for batch in ([], ["--batch-size", "4"], ["--batch-size", "8"]):
        result = runner.invoke(cli, base + batch)
        assert result.exit_code == 0, result.output
        folders.append(next(line.split(": ", 1)[1] for line in result.output.splitlines() if line.startswith("checkpoint:")))
        manifest = json.loads((tmp_path.parent / folders[-1] / "train_manifest.json").read_text())
        assert manifest["batch_size"] == (int(batch[1]) if batch else 4)  # the resolved number
    assert folders[0] == folders[1] != folders[2]  # unset = the recipe's 4; 8 is another fit


def test_validation_over_several_named_sources_selects_on_the_mean():
    def source(name, targets):
        samples = {f"{name}{k}": api.Sample(f"{name}{k}", None, target=t) for k, t in enumerate(targets)}
        return api.SampleSource(list(samples), samples.__getitem__)

    preds = dict(zip(["k0", "k1", "k2", "k3", "s0", "s1", "s2", "s3"], [1.0, 2.0, 3.0, 1.5, 3.0, 2.0, 1.0, 2.5]))
    sources = {"koniq10k": source("k", [0.1, 0.5, 0.9, 0.3]), "spaq": source("s", [0.1, 0.5, 0.9, 0.2])}
    record = training.validate(lambda samples: [preds[s.id] for s in samples], sources, 3, "srcc_plcc")
    each = {name: training.val_scores([preds[i] for i in s.ids], [s.load(i).target for i in s.ids])
            for name, s in sources.items()}
    assert record["val_sets"]["koniq10k"]["val_srcc"] == pytest.approx(1.0) and record["val_n"] == 8
    assert record["val_sets"]["spaq"]["val_srcc"] < 0
    assert record["val_selection"] == pytest.approx((each["koniq10k"]["val_selection"] + each["spaq"]["val_selection"]) / 2)
    one = training.validate(lambda samples: [preds[s.id] for s in samples], {"spaq": sources["spaq"]}, 3, "srcc")
    assert one["val_selection"] == one["val_srcc"] == each["spaq"]["val_srcc"] and "val_sets" not in one


def test_batch_size_is_no_method_option():
    runner = CliRunner()
    for method in ("vp-owl2", "q-adapt"):
        result = runner.invoke(cli, ["train", "--method", method, "--dataset", "tiny", "-o", "batch_size=4"])
        assert result.exit_code != 0
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "-o batch_size is not an option" in lines[0] and "--batch-size" in lines[0], lines
    with pytest.raises(IqaError, match="brisque-svr has no training batch"):
        training.resolve_batch_size(registry.methods.get("brisque-svr"), None, "tiny", 4)
    assert training.targets_of([api.Sample("a", None, label=20.0, target=0.8)], "m") == [0.8]
    with pytest.raises(IqaError, match="m: the engine gave no training target for image b"):
        training.targets_of([api.Sample("b", None, label=3.0)], "m")

"""BRISQUE features + an RBF support-vector regressor trained on the train split.

The classic trainable baseline that runs offline. It fits the engine's `target` (the label
oriented so that higher is better, scaled to [0, 1] from the dataset card's range), so its
predictions are in that space: higher is better, about [0, 1]. Hyper-parameters (C, gamma) are
chosen on the val split by (SRCC + PLCC) / 2 against the val targets. The fitted regressor is
stored as tensors (support vectors, dual coefficients, intercept, feature scaling) in
safetensors and evaluated by this module, so loading a checkpoint never unpickles anything.
Progress: a bar (rate, ETA) over feature extraction, then one log line per grid step (train loss,
val SRCC and PLCC) and one for the selection, on the `iqabench` logger tree at INFO.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from iqabench.api import MethodInfo, Options, Sample, TrainableMethod
from iqabench.errors import IqaError
from iqabench.layout import slug
from iqabench.training import CRITERIA, Selection, as_sources, combine, val_scores

log = logging.getLogger("iqabench.methods.brisque_svr")


class BrisqueSVROptions(Options):
    c_grid: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0)
    gamma_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)
    epsilon: float = 0.05


class BrisqueSVR(TrainableMethod):
    name = "brisque-svr"
    info = MethodInfo(kind="trainable", description="BRISQUE features + RBF SVR fitted on the train split's targets",
                      higher_better=True, needs_weights=None, extra="classic")
    Options = BrisqueSVROptions

    @classmethod
    def check_available(cls, options=None) -> str | None:
        import importlib.util

        if importlib.util.find_spec("sklearn") is None:  # looked up, not imported (1 s): listing stays instant
            return "scikit-learn is not installed (pip install 'iqabench[classic]')"
        return None

    @classmethod
    def checkpoint_files(cls) -> tuple[str, ...]:
        return ("svr.safetensors", "svr.json")

    # -- training -------------------------------------------------------------------------
    def fit(self, train, val, workdir: Path, seed: int) -> dict:
        import itertools

        import numpy as np
        from sklearn.svm import SVR

        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        x_tr, y_tr = self._features(train, workdir / "features.train.jsonl", "train")
        # one val source, or (a training mix) one per member dataset, selected on their mean
        va = {name: self._features(source, workdir / ("features.val.jsonl" if name == "val" else
                                                      f"features.val.{slug(name)}.jsonl"), "val" if name == "val" else f"val {name}")
              for name, source in as_sources(val).items()}
        va = {name: xy for name, xy in va.items() if len(xy[0])}
        x_va = np.concatenate([x for x, _ in va.values()]) if va else np.zeros((0, 1))
        if len(x_tr) < 3:
            raise IqaError(f"{workdir}: fewer than 3 usable training images")
        lo, hi = x_tr.min(axis=0), x_tr.max(axis=0)
        scale = lambda x: 2.0 * (x - lo) / np.where(hi > lo, hi - lo, 1.0) - 1.0
        # Selection on val, by the engine's criterion; a split without val images falls back to the
        # train fit, and says so.
        selection = Selection(CRITERIA["srcc_plcc"] if len(x_va) else "train -MSE (no val images)")
        grid = list(itertools.product(self.options.c_grid, self.options.gamma_grid))
        history, best_fit = [], None
        for step, (c, g) in enumerate(grid, 1):
            svr = SVR(kernel="rbf", C=c, gamma=g, epsilon=self.options.epsilon).fit(scale(x_tr), y_tr)
            loss = float(np.mean((svr.predict(scale(x_tr)) - y_tr) ** 2))
            val = combine({n: val_scores(svr.predict(scale(x)), y) for n, (x, y) in va.items()}) if va else {}
            val.pop("val_n", None)
            crit = val["val_selection"] if len(x_va) else -loss
            history.append({"C": c, "gamma": g, "criterion": _finite(crit), "train_loss": loss,
                            **{k: v if isinstance(v, dict) else _finite(v) for k, v in val.items()}})
            gain = selection.offer(crit, step)
            if gain:
                best_fit = (c, g, svr, val)
            log.info("%s: grid %d/%d C=%g gamma=%g: loss %.5f (train MSE), val SRCC %s PLCC %s%s", self.name, step,
                     len(grid), c, g, loss, _fmt(val.get("val_srcc")), _fmt(val.get("val_plcc")),
                     " (best so far)" if gain else "")
        c, g, svr, val = best_fit
        crit, criterion = history[selection.best - 1]["criterion"], selection.criterion
        log.info("%s: selected C=%g gamma=%g by %s = %s", self.name, c, g, criterion, _fmt(crit))
        self._save(Path(workdir), svr, lo, hi, {"C": c, "gamma": g, "epsilon": self.options.epsilon, "criterion": criterion,
                                                 "selection": crit, "n_train": len(x_tr), "n_val": len(x_va)})
        self._model = self._load(Path(workdir))
        over = {"selected_on_mean_of": sorted(va)} if len(va) > 1 else {}
        return {"selected": {"C": c, "gamma": g}, "criterion": criterion, "selection": crit, **over,
                "best_val": {k: _finite(val.get(k, float("nan"))) for k in ("val_srcc", "val_plcc", "val_selection")},
                "grid": history, "n_train": len(x_tr), "n_val": len(x_va)}

    def _features(self, source, cache: Path, part: str):
        """Features and targets of every image, appended to a JSONL log as computed so a killed fit
        resumes (a line torn by the kill is dropped, the image computed again)."""
        import numpy as np
        from tqdm.auto import tqdm

        from iqabench.io import JsonlLog
        from iqabench.models.brisque_features import N_FEATURES, brisque_features

        with JsonlLog(cache) as features:
            done = {rec["id"]: rec for rec in features.read()}
            todo = [sid for sid in source.ids if sid not in done]
            start = time.perf_counter()
            # no bar when not on a terminal or when progress is off (`--no-progress`)
            bar = tqdm(todo, desc=f"{self.name} features ({part})", unit="img", leave=False, dynamic_ncols=True,
                       disable=None if self.ctx.progress else True)
            for sid in bar:
                sample = source.load(sid)
                if sample is None:
                    continue
                try:
                    feats = brisque_features(sample.image).tolist()
                except ValueError as exc:
                    source.report_failure(sid, f"features: {exc}")
                    continue
                rec = {"id": sid, "x": feats, "y": self._target(sample)}
                done[sid] = rec
                features.append(rec)
            bar.close()
        if source.ids:
            seconds = time.perf_counter() - start
            log.info("%s: %s features: %d of %d images (%d computed now in %.1f s, %d from an earlier attempt)",
                     self.name, part, sum(i in done for i in source.ids), len(source.ids), len(todo), seconds,
                     len(source.ids) - len(todo))
        rows = [done[i] for i in source.ids if i in done]
        return (np.array([r["x"] for r in rows]).reshape(-1, N_FEATURES),
                np.array([r["y"] for r in rows], dtype=np.float64))

    def _target(self, sample: Sample) -> float:
        """The engine's target; the method never orients or rescales labels itself."""
        if sample.target is None:
            raise IqaError(f"{self.name}: the engine gave no training target for image {sample.id}")
        return float(sample.target)

    # -- checkpoint -----------------------------------------------------------------------
    def _save(self, workdir: Path, svr, lo, hi, config: dict) -> None:
        import numpy as np
        from safetensors.numpy import save

        tensors = {"support_vectors": np.ascontiguousarray(svr.support_vectors_, dtype=np.float64),
                   "dual_coef": np.ascontiguousarray(svr.dual_coef_.ravel(), dtype=np.float64),
                   "intercept": np.asarray(svr.intercept_, dtype=np.float64),
                   "feature_min": np.asarray(lo, dtype=np.float64), "feature_max": np.asarray(hi, dtype=np.float64)}
        from iqabench.io import write_bytes_atomic, write_json_atomic

        # serialised in memory, then written atomically: a full disk is an OSError naming the file
        write_bytes_atomic(workdir / "svr.safetensors", save(tensors))

        write_json_atomic(workdir / "svr.json", config)

    def _load(self, workdir: Path) -> dict:
        from iqabench.io import read_json
        from iqabench.models.safe_load import read_safetensors

        path = workdir / "svr.safetensors"
        model, _ = read_safetensors(path, "numpy")  # a pickle renamed .safetensors is one line, never unpickled
        missing = [k for k in ("support_vectors", "dual_coef", "intercept", "feature_min", "feature_max") if k not in model]
        if missing:
            raise IqaError(f"{path}: not a brisque-svr checkpoint (no {', '.join(missing)})")
        config = read_json(workdir / "svr.json", "brisque-svr checkpoint settings")
        gamma = config.get("gamma") if isinstance(config, dict) else None
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
            raise IqaError(f"{workdir / 'svr.json'}: no positive number `gamma`; not a brisque-svr checkpoint")
        model["gamma"] = float(gamma)
        return model

    def load_checkpoint(self, workdir: Path) -> None:
        self._model = self._load(Path(workdir))

    # -- scoring ---------------------------------------------------------------------------
    def predict_features(self, x):
        import numpy as np

        m = self._model
        span = np.where(m["feature_max"] > m["feature_min"], m["feature_max"] - m["feature_min"], 1.0)
        z = 2.0 * (np.atleast_2d(x) - m["feature_min"]) / span - 1.0
        sq = ((z[:, None, :] - m["support_vectors"][None, :, :]) ** 2).sum(-1)
        return np.exp(-m["gamma"] * sq) @ m["dual_coef"] + m["intercept"][0]

    def score(self, samples: Sequence[Sample]) -> list[float]:
        import numpy as np

        from iqabench.models.brisque_features import brisque_features

        feats = np.stack([brisque_features(s.image) for s in samples])
        return [float(v) for v in self.predict_features(feats)]


def _fmt(value) -> str:
    import math

    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _finite(value: float) -> float | None:
    """JSON has no infinity: an undefined criterion (constant predictions) is recorded as null."""
    import math

    return float(value) if math.isfinite(value) else None

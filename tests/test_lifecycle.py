"""The engine drives a method's lifecycle: setup(ctx) once with what the run says, teardown once, and
none of that bookkeeping written onto the plugin object. Older plugins (`setup(self)`) still run."""
from __future__ import annotations

import json

import pytest

from iqabench.api import Method, MethodInfo, Options
from iqabench.errors import IqaError
from iqabench.run import RunConfig, run


class _LogOptions(Options):
    log: str = ""


class _Recording(Method):
    """Scores 0.5 and logs each lifecycle call with what it was given."""

    info = MethodInfo(kind="classic", description="records its lifecycle (test)")
    Options = _LogOptions

    def _log(self, event: str, **extra) -> None:
        with open(self.options.log, "a") as fh:
            fh.write(json.dumps({"event": event, **extra}) + "\n")

    def score(self, samples):
        self._log("score", device=self.device, batch=self.batch_size, dataset=self.dataset)
        return [0.5 for _ in samples]

    def teardown(self):
        self._log("teardown")


def _events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_setup_gets_the_run_context_once_and_the_object_carries_no_engine_state(scratch_registry, tiny_root, tmp_path):
    seen = []

    @scratch_registry.register_method
    class WithContext(_Recording):
        name = "lifecycle-ctx"

        def setup(self, ctx):
            super().setup(ctx)
            seen.append((ctx, set(vars(self))))
            self._log("setup", dataset=ctx.dataset, batch=ctx.batch_size, cache=str(ctx.cache_dir))

    log = tmp_path / "log.jsonl"
    cfg = RunConfig(method="lifecycle-ctx", dataset="tiny", data_root=tiny_root, results=tmp_path / "r", limit=4,
                    batch_size=2, progress=False, n_boot=10, options={"log": str(log)})
    run(cfg, on_log=lambda m: None)
    events = _events(log)
    assert [e["event"] for e in events] == ["setup", "score", "score", "teardown"]
    assert events[0]["dataset"] == "tiny" and events[0]["batch"] == 2 and events[0]["cache"].startswith(str(tmp_path))
    assert events[1] == {"event": "score", "device": "cpu", "batch": 2, "dataset": "tiny"}
    ctx, attributes = seen[0]
    assert attributes == {"options", "ctx"}  # nothing the engine set: no progress, no _iqabench_* flags
    with pytest.raises(Exception, match="frozen|cannot assign"):
        ctx.device = "cuda"


def test_a_setup_without_the_context_argument_still_runs_with_a_warning(scratch_registry, tiny_root, tmp_path):
    @scratch_registry.register_method
    class OldStyle(_Recording):
        name = "lifecycle-old"

        def setup(self):  # written before RunContext
            super().setup()
            self._log("setup", dataset=self.dataset, batch=self.batch_size)

    log = tmp_path / "log.jsonl"
    cfg = RunConfig(method="lifecycle-old", dataset="tiny", data_root=tiny_root, results=tmp_path / "r", limit=3,
                    batch_size=3, progress=False, n_boot=10, options={"log": str(log)})
    with pytest.warns(FutureWarning, match=r"method lifecycle-old \(.*OldStyle\): setup\(\) takes no run context"):
        result = run(cfg, on_log=lambda m: None)
    assert result.metrics["n"] == 3 and result.metrics["n_failed"] == 0
    assert _events(log)[0] == {"event": "setup", "dataset": "tiny", "batch": 3}  # its context was kept first


def test_a_setup_that_drops_the_context_is_refused_in_one_line(scratch_registry, tiny_root, tmp_path):
    @scratch_registry.register_method
    class Forgetful(_Recording):
        name = "lifecycle-forgetful"

        def setup(self, ctx):  # no super().setup(ctx): self.device would silently stay "cpu"
            pass

    log = tmp_path / "log.jsonl"
    cfg = RunConfig(method="lifecycle-forgetful", dataset="tiny", data_root=tiny_root, results=tmp_path / "r",
                    limit=2, progress=False, options={"log": str(log)})
    with pytest.raises(IqaError, match=r"^method lifecycle-forgetful \(.*Forgetful\): setup\(ctx\) must call "
                                       r"super\(\).setup\(ctx\)"):
        run(cfg, on_log=lambda m: None)
    assert _events(log) == [{"event": "teardown"}]  # torn down all the same
    assert not list((tmp_path / "r").rglob("manifest.json"))  # refused before its run folder was written

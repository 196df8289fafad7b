"""A run's key hashes what the method's fingerprint says before setup; a fingerprint that is only
the name and options keys a run exactly as before (existing results folders keep resuming)."""
from __future__ import annotations

from iqabench import registry
from iqabench.api import Method, MethodInfo, Options, stable_hash
from iqabench.io import sha256_file
from iqabench.plan import SCHEMA_VERSION, build_run_plan, method_identity, resolve_method
from iqabench.run import RunConfig, run


def _config(tiny_root, tmp_path, method, **extra) -> RunConfig:
    return RunConfig(method=method, dataset="tiny", data_root=tiny_root, results=tmp_path / "r", limit=3,
                     progress=False, n_boot=10, **extra)


def test_a_plain_fingerprint_keys_the_run_as_before(tiny_root, tmp_path):
    plan = build_run_plan(_config(tiny_root, tmp_path, "slow-sharpness"))
    view = plan.view
    # the identity as every earlier version wrote it: an existing folder of this run keeps its key
    before = {"fingerprint": {"method": "slow-sharpness", "options": plan.method.options.model_dump(mode="json")},
              "dataset": "tiny", "split": view.split.name, "split_hash": view.split.hash, "part": "test",
              "limit": 3, "batch_size": 1, "checkpoint": None, "schema_version": SCHEMA_VERSION}
    assert plan.identity == before and plan.key == stable_hash(before)


def test_every_builtin_method_says_nothing_more_before_setup_with_its_defaults():
    """So no built-in's default runs change key; they add a file hash only when an option names the file."""
    names = [n for n in registry.methods.names() if not n.endswith(":<name>")]
    assert [n for n in names if "fingerprint_more" in method_identity(resolve_method(n, {}))] == []


class _WeightsOptions(Options):
    weights: str = ""


def test_a_fingerprint_that_hashes_a_file_gives_the_file_its_own_run_folder(scratch_registry, tiny_root, tmp_path):
    @scratch_registry.register_method
    class Weighted(Method):
        name = "key-weighted"
        info = MethodInfo(kind="classic", description="reads a weights file (test)")
        Options = _WeightsOptions

        def fingerprint(self):
            return {**super().fingerprint(), "weights_sha256": sha256_file(self.options.weights)}

        def score(self, samples):
            return [0.5 for _ in samples]

    weights = tmp_path / "w.bin"
    weights.write_bytes(b"one")
    cfg = _config(tiny_root, tmp_path, "key-weighted", options={"weights": str(weights)})
    first = run(cfg, on_log=lambda m: None)
    assert run(cfg, on_log=lambda m: None).run_dir == first.run_dir  # same content: resumes the same run
    plan = build_run_plan(cfg)
    assert plan.identity["fingerprint_more"] == {"weights_sha256": sha256_file(weights)}
    assert plan.identity["fingerprint"] == {"method": "key-weighted", "options": {"weights": str(weights)}}
    weights.write_bytes(b"two")  # same option, other content
    second = run(cfg, on_log=lambda m: None)
    assert second.run_dir != first.run_dir and second.scored_now == 3

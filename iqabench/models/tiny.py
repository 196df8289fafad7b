"""Tiny random models of the real architectures, for contract tests and offline trials.

They are saved to a folder in the same format as the real checkpoints and loaded through the
same code path; their scores are meaningless, which is all a test of plumbing needs.
"""
from __future__ import annotations

from pathlib import Path


def tiny_model_path(arch: str, workdir: Path, seed: int = 0) -> str:
    """Build (once) a tiny random model for a backend arch under `workdir` and return its folder."""
    folder = Path(workdir) / f"tiny-{arch}-{seed}"
    if (folder / "config.json").is_file():
        return str(folder)
    from iqabench import registry

    return str(registry.tiny_models.get(arch)(folder, seed=seed))

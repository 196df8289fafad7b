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
    if arch == "owl2":
        from iqabench.models.tiny_owl2 import build_tiny_owl2

        return str(build_tiny_owl2(folder, seed=seed))
    if arch in ("llava", "hf-vlm"):
        from iqabench.models.tiny_llava import build_tiny_llava

        return str(build_tiny_llava(folder, seed=seed))
    if arch == "sam2":
        from iqabench.models.tiny_sam2 import build_tiny_sam2

        return str(build_tiny_sam2(folder, seed=seed))
    raise ValueError(f"no tiny builder for arch {arch!r}")

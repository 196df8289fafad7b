"""The embedded default dataset, built offline on first use into a folder the caller names.

References: the natural photos scikit-image bundles (colour ones, and greyscale ones as
3-channel images) plus the five pristine images pyiqa's wheel ships in `ResultsCalibra/ref_dir`,
each centre-cropped and resized to 256x256. Each reference is degraded by eight KADID-style
distortions at five levels. Labels are pyiqa's FSIM (a full-reference metric that needs no
downloaded weights) of the distorted image against its reference: in [0, 1], higher is better.
The labels therefore measure fidelity to the reference as FSIM sees it, not human opinion.

Output (read by the generic csv reader): labels.csv (dist_img, ref_img, distortion, level, fsim),
images/, refs/, build.json.

How a build survives concurrency and interruption:
- a file lock in the parent folder serialises builders of one folder; a latecomer waits, then
  uses the finished folder;
- work happens in `<folder>.building/`: each image is written under a temporary name and renamed,
  then its label is appended (and fsynced) to `progress.jsonl`, so a rerun after a kill keeps
  every logged image and computes only the rest; the result is byte-identical to an
  uninterrupted build because every image's noise seed comes from its name alone and FSIM
  runs on one torch thread;
- the finished temporary folder is renamed to `<folder>` in one step.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from iqabench.errors import IqaError

SIZE = 256
LEVELS = (1, 2, 3, 4, 5)
# 2: FSIM on one torch thread, so labels no longer vary in the 6th decimal with the core count
BUILD_VERSION = 2
SKIMAGE_COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
SKIMAGE_GREY = ("camera", "coins", "clock", "brick", "grass", "gravel")
PROGRESS_LOG = "progress.jsonl"
PLAN_FILE = "plan.json"

# For the opening estimate only. Measured with a full 720-image build on the development machine
# (2 cores, shared with other jobs, load average 4-5): 12 s of imports and set-up, then 147 s for the
# images (0.2 s each, fsyncs included), 159 s in all; an idle machine should need less.
STARTUP_SECONDS = 12.0
SECONDS_PER_IMAGE = 0.2
MEASURED_ON = "2 cores"


@dataclass(frozen=True)
class Plan:
    references: tuple[str, ...]  # names, in build order
    distortions: tuple[str, ...]

    def items(self) -> list[tuple[str, str, int]]:
        return [(r, d, lv) for r in self.references for d in self.distortions for lv in LEVELS]

    def resume_key(self) -> dict:
        # what a temporary folder's work must match to be resumed
        return {**self.manifest(), "reference_names": list(self.references)}

    def manifest(self) -> dict:
        # build.json exactly as earlier builds wrote it; the reference count pins the subset
        return {"build_version": BUILD_VERSION, "size": SIZE, "references": len(self.references),
                "distortions": list(self.distortions), "levels": list(LEVELS), "label": "pyiqa fsim vs reference"}


def image_name(ref_name: str, dist_name: str, level: int) -> str:
    return f"{ref_name}__{dist_name}__{level}.png"


def lock_path(folder: Path) -> Path:
    """The lock file guarding builds of `folder` (in its parent, so it outlives the folder's rename)."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


def build(folder: Path, progress: bool = True, *, _references: int | None = None) -> None:
    """Build the dataset into `folder` unless a finished build is already there.

    `_references` (tests only) builds from the first N references instead of all of them."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    plan = _plan(_references)
    if _finished(folder, plan):
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(folder)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _say(f"waiting for another process building {folder}")
        lock.acquire()
    try:
        if not _finished(folder, plan):  # the process we waited for may have built it
            _build_locked(folder, plan, progress)
    finally:
        lock.release()


def _plan(first_n: int | None) -> Plan:
    """The references and distortions, found without importing torch, pyiqa or scikit-image."""
    from iqabench.builders.distortions import DISTORTIONS

    names = [f"sk_{n}" for n in SKIMAGE_COLOUR + SKIMAGE_GREY]
    names += [f"pyiqa_{p.stem}" for p in sorted(_pyiqa_reference_dir().glob("*.bmp"))]
    if first_n is not None:
        if not 1 <= first_n <= len(names):
            raise IqaError(f"_references={first_n}: must be between 1 and {len(names)}")
        names = names[:first_n]
    return Plan(tuple(names), tuple(DISTORTIONS))


def _finished(folder: Path, plan: Plan) -> bool:
    return (folder / "labels.csv").is_file() and _read_json(folder / "build.json") == plan.manifest()


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _say(line: str) -> None:
    # stderr: stdout is kept for results
    print(line, file=sys.stderr, flush=True)


def _build_locked(folder: Path, plan: Plan, progress: bool) -> None:
    tmp = folder.with_name(folder.name + ".building")
    _check_replaceable(folder)
    if _finished(tmp, plan):  # killed between finishing and the rename
        _publish(tmp, folder)
        return
    done = _resume(tmp, plan)
    total = len(plan.items())
    left = total - len(done)
    estimate = STARTUP_SECONDS + SECONDS_PER_IMAGE * left
    estimate = int(round(estimate, -1 if estimate > 60 else 0))  # an estimate, not a measurement: no false digits
    kept = f", {len(done)} already built" if done else ""
    _say(f"building the embedded dataset into {folder} ({total} images{kept}; about {estimate} s on {MEASURED_ON})")
    try:
        _compute(tmp, plan, done, progress)
    except KeyboardInterrupt:
        _say(f"interrupted: {len(done)} of {total} images kept in {tmp}; rerun to continue")
        raise
    _finish(tmp, plan, done)
    _publish(tmp, folder)


def _resume(tmp: Path, plan: Plan) -> dict[str, float]:
    """Image name -> label for the work a previous run left in `tmp`; starts afresh when `tmp` holds
    another plan's work. Called under the lock, so nobody else is writing there."""
    if tmp.exists() and _read_json(tmp / PLAN_FILE) != plan.resume_key():
        shutil.rmtree(tmp)
    if not tmp.exists():
        (tmp / "images").mkdir(parents=True)
        _write_atomic(tmp / PLAN_FILE, json.dumps(plan.resume_key(), indent=1).encode())
        return {}
    images = tmp / "images"
    images.mkdir(exist_ok=True)
    for part in images.glob(".*.part"):  # an image being written when the run stopped
        part.unlink()
    logged = read_progress_log(tmp / PROGRESS_LOG)
    expected = {image_name(*item) for item in plan.items()}
    return {name: label for name, label in logged.items() if name in expected and (images / name).is_file()}


def read_progress_log(path: Path) -> dict[str, float]:
    """Image name -> label from a progress log. A torn last line (no newline: the writer was killed
    mid-write) is ignored and cut off, so the next append starts on a fresh line."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(len(complete))
            os.fsync(fh.fileno())
    labels = {}
    for number, line in enumerate(complete.splitlines(), 1):
        try:
            entry = json.loads(line)
            labels[str(entry["image"])] = float(entry["fsim"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IqaError(f"{path}: line {number} is not a progress entry ({exc}); "
                           f"delete {path.parent} to rebuild from scratch") from exc
    return labels


def _compute(tmp: Path, plan: Plan, done: dict[str, float], progress: bool) -> None:
    """Write every image not yet in `done`, logging its label; `done` grows as images land."""
    import torch
    from tqdm import tqdm

    from iqabench.models.pyiqa_support import create_metric

    items = plan.items()
    if len(done) == len(items):
        return
    refs = reference_images(plan.references)
    fsim = create_metric("fsim", "cpu", ())
    # the bar starts after the set-up so that its rate and ETA are the images' own
    bar = tqdm(total=len(items), initial=len(done), desc="embedded dataset", unit="img",
               disable=not progress, dynamic_ncols=True)
    # FSIM's float sums vary in the 6th decimal with torch's thread count; one thread makes the
    # labels the same on every machine, and a resumed build the same as an uninterrupted one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with bar:
            _compute_items(tmp, items, done, refs, fsim, bar)
    finally:
        torch.set_num_threads(threads)


def _compute_items(tmp: Path, items: list, done: dict[str, float], refs: dict, fsim, bar) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from iqabench.builders.distortions import DISTORTIONS

    def to_tensor(a):
        return torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None]

    with open(tmp / PROGRESS_LOG, "ab") as log:
        for ref_name, dist_name, level in items:
            name = image_name(ref_name, dist_name, level)
            if name in done:
                continue
            ref = refs[ref_name]
            seed = int(hashlib.sha256(f"{ref_name}/{dist_name}/{level}".encode()).hexdigest()[:8], 16)
            out = DISTORTIONS[dist_name](ref, level, np.random.default_rng(seed))
            with torch.no_grad():
                label = round(float(fsim(to_tensor(out), to_tensor(ref)).flatten()[0]), 6)
            _save_png_atomic(Image.fromarray(out), tmp / "images" / name)
            # the image is on disk before its label is logged: a logged label always has its image
            log.write(json.dumps({"image": name, "fsim": label}).encode() + b"\n")
            log.flush()
            os.fsync(log.fileno())
            done[name] = label
            bar.update(1)


def _finish(tmp: Path, plan: Plan, done: dict[str, float]) -> None:
    import pandas as pd
    from PIL import Image

    rows = [{"dist_img": f"images/{image_name(r, d, lv)}", "ref_img": f"refs/{r}.png",
             "distortion": d, "level": lv, "fsim": done[image_name(r, d, lv)]} for r, d, lv in plan.items()]
    (tmp / "refs").mkdir(exist_ok=True)
    for ref_name, arr in reference_images(plan.references).items():
        Image.fromarray(arr).save(tmp / "refs" / f"{ref_name}.png")
    pd.DataFrame(rows).to_csv(tmp / "labels.csv", index=False)
    # build.json last: a temporary folder holding it is complete (see _build_locked)
    _write_atomic(tmp / "build.json", json.dumps(plan.manifest(), indent=1).encode())


def _check_replaceable(folder: Path) -> None:
    """Only an earlier build (it has a build.json) or an empty folder may be replaced."""
    if folder.exists() and not (folder / "build.json").is_file() and any(folder.iterdir()):
        raise IqaError(f"{folder}: exists and holds no build.json, so it is not a build of the embedded "
                       "dataset; move it away and rerun")


def _publish(tmp: Path, folder: Path) -> None:
    """Rename the finished `tmp` to `folder`, replacing an earlier build."""
    _check_replaceable(folder)
    for leftover in [tmp / PROGRESS_LOG, tmp / PLAN_FILE, *tmp.glob(".*.part")]:
        leftover.unlink(missing_ok=True)
    if folder.exists():
        stale = folder.with_name(folder.name + ".stale")
        shutil.rmtree(stale, ignore_errors=True)
        folder.replace(stale)
        tmp.replace(folder)
        shutil.rmtree(stale)
    else:
        tmp.replace(folder)


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(f".{path.name}.part")
    with open(part, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    part.replace(path)


def _save_png_atomic(image, path: Path) -> None:
    part = path.with_name(f".{path.name}.part")
    with open(part, "wb") as fh:
        image.save(fh, format="PNG")
        fh.flush()
        os.fsync(fh.fileno())
    part.replace(path)


def _square(arr):
    import numpy as np
    from PIL import Image

    img = Image.fromarray(arr).convert("RGB")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return np.asarray(img.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BICUBIC))


def reference_images(names: tuple[str, ...] | None = None) -> dict:
    """Name -> 256x256 RGB uint8 array, from packages installed here (no download)."""
    import numpy as np
    from PIL import Image

    try:
        from skimage import data as skdata
    except ImportError as exc:
        raise IqaError("building the embedded dataset needs scikit-image (pip install 'iqabench[classic]')") from exc
    refs = {}
    for name in SKIMAGE_COLOUR + SKIMAGE_GREY:
        if names is None or f"sk_{name}" in names:
            refs[f"sk_{name}"] = _square(getattr(skdata, name)())
    for path in sorted(_pyiqa_reference_dir().glob("*.bmp")):
        if names is None or f"pyiqa_{path.stem}" in names:
            refs[f"pyiqa_{path.stem}"] = _square(np.asarray(Image.open(path).convert("RGB")))
    return refs


def _pyiqa_reference_dir() -> Path:
    # find_spec locates pyiqa without importing it (importing takes seconds)
    spec = importlib.util.find_spec("pyiqa")
    if spec is None or not spec.origin:
        raise IqaError("building the embedded dataset needs pyiqa (pip install 'iqabench[classic]')")
    folder = Path(spec.origin).parent.parent / "ResultsCalibra" / "ref_dir"
    if not folder.is_dir():
        raise IqaError(f"{folder}: pyiqa's bundled reference images are missing")
    return folder

"""The embedded dataset's builder: locked against concurrent builders, resumable after a kill,
byte-identical to an uninterrupted build. Builds use the first reference only (40 images)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from iqabench.builders.embedded import PROGRESS_LOG, build, read_progress_log

N_REFS = 1
N_IMAGES = N_REFS * 8 * 5

# Run in a child process: wait at a barrier (so that siblings start together), then build.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch  # the slow import happens before the barrier
    from iqabench.builders.embedded import build
    folder, n_refs, ready = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    others = [Path(p) for p in sys.argv[4:]]
    ready.touch()
    while not all(p.exists() for p in others):
        time.sleep(0.01)
    build(folder, progress=False, _references=n_refs)
    print("done")
""")


def digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file in a built folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def fresh(tmp_path_factory) -> dict[str, str]:
    """The digest of one uninterrupted build, made in this process."""
    folder = tmp_path_factory.mktemp("fresh") / "embedded"
    build(folder, progress=False, _references=N_REFS)
    files = digest(folder)
    assert sum(name.startswith("images/") for name in files) == N_IMAGES
    assert {"labels.csv", "build.json", "refs/sk_astronaut.png"} <= set(files)
    assert not folder.with_name("embedded.building").exists()
    return files


def test_progress_log_ignores_and_cuts_a_torn_last_line(tmp_path):
    log = tmp_path / PROGRESS_LOG
    log.write_bytes(b'{"image": "a.png", "fsim": 0.5}\n{"image": "b.png", "fsim": 0.25}\n{"image": "c.p')
    assert read_progress_log(log) == {"a.png": 0.5, "b.png": 0.25}
    assert log.read_bytes().endswith(b'0.25}\n')  # the next append starts on its own line


def test_progress_log_rejects_a_corrupt_complete_line(tmp_path):
    from iqabench.errors import IqaError

    log = tmp_path / PROGRESS_LOG
    log.write_bytes(b'{"image": "a.png", "fsim": 0.5}\nnot json\n{"image": "b.png", "fsim": 0.25}\n')
    with pytest.raises(IqaError, match=rf"{PROGRESS_LOG}: line 2 "):
        read_progress_log(log)


def test_killed_build_resumes_and_matches_an_uninterrupted_one(fresh, tmp_path, capfd):
    folder = tmp_path / "embedded"
    building = folder.with_name("embedded.building")
    log = building / PROGRESS_LOG
    code = f"from pathlib import Path; from iqabench.builders.embedded import build; " \
           f"build(Path({str(folder)!r}), progress=False, _references={N_REFS})"
    # the killed run uses two torch threads, the resuming one (this process) one: labels must not care
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE,
                             env={**os.environ, "OMP_NUM_THREADS": "2"})
    try:
        deadline = time.monotonic() + 240
        while not (log.exists() and log.read_bytes().count(b"\n") >= 20):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the build logged no progress"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()
    assert not folder.exists()
    # a torn line and a half-written image, as a kill at a worse moment would leave them
    with open(log, "ab") as fh:
        fh.write(b'{"image": "sk_astronaut__jpeg__')
    (building / "images" / ".sk_astronaut__jpeg__1.png.part").write_bytes(b"\x89PNG")
    kept = read_progress_log(log)
    assert 20 <= len(kept) < N_IMAGES
    before = {name: os.stat(building / "images" / name).st_mtime_ns for name in kept}

    capfd.readouterr()
    build(folder, progress=False, _references=N_REFS)
    said = capfd.readouterr().err
    assert f"({N_IMAGES} images, {len(kept)} already built;" in said
    assert digest(folder) == fresh
    assert not building.exists()
    # the images the killed run wrote were kept, not rewritten
    assert {name: os.stat(folder / "images" / name).st_mtime_ns for name in kept} == before
    assert json.loads((folder / "build.json").read_text())["references"] == N_REFS


def test_two_processes_building_one_folder_share_one_build(fresh, tmp_path):
    folder = tmp_path / "data" / "embedded"
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(N_REFS), str(ready[i]),
                                  *map(str, ready)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [child.communicate(timeout=300) for child in children]
    for child, (out, err) in zip(children, outs):
        assert child.returncode == 0 and out.strip() == "done", err[-2000:]
        assert "Error" not in err, err[-2000:]
    said = outs[0][1] + outs[1][1]
    assert said.count("building the embedded dataset into") == 1, said
    assert said.count(f"waiting for another process building {folder}") == 1, said
    assert digest(folder) == fresh
    assert not folder.with_name("embedded.building").exists()

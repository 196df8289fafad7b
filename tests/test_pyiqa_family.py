"""The pyiqa family: instant offline listing, full-reference scoring, weight paths that are never
unpickled, and a missing device told apart from missing weights."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pydantic
import pytest
from PIL import Image

from iqabench import registry
from iqabench.api import RunContext, Sample
from iqabench.errors import IqaError, NotAvailable
from iqabench.methods.pyiqa.family import ALIASES, FAMILY, PyiqaOptions
from iqabench.methods.pyiqa.weights import WEIGHTS
from iqabench.models import pyiqa_support

WEIGHT_FREE_FR = ("psnr", "ssim", "ms_ssim", "fsim", "vif", "gmsd", "vsi", "nlpd", "cw_ssim", "mad")


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection attempt is recorded and refused."""
    attempts = []

    def refuse(self, *args, **kwargs):
        attempts.append(args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


# -- listing: instant, offline ---------------------------------------------------------------------

def test_check_available_for_every_metric_is_offline_and_loads_no_model(no_network):
    """How fast it answers is benchmarks/bench_listing.py's goal; here, what it touches."""
    names = FAMILY.names()
    assert len(names) > 90 and set(ALIASES) <= set(names)
    reasons = {n: FAMILY.resolve(n).check_available() for n in names}
    assert no_network == []
    assert all(reasons[n] is None for n in WEIGHT_FREE_FR + ("piqe", "entropy"))
    assert all(r is None or "\n" not in r for r in reasons.values())


def test_listing_imports_neither_torch_nor_pyiqa():
    # a fresh process: the family's names, infos and availability come from data and the disk
    code = textwrap.dedent('''
        import json, socket, sys
        attempts = []
        def refuse(self, *args, **kwargs):
            attempts.append(repr(args)); raise OSError("blocked")
        socket.socket.connect = refuse
        from iqabench.methods.pyiqa.family import FAMILY
        reasons = {n: FAMILY.resolve(n).check_available() for n in FAMILY.names()}
        print(json.dumps({"attempts": attempts, "n": len(reasons),
                          "lpips": reasons["lpips"], "psnr": reasons["psnr"],
                          "heavy": sorted(m for m in ("torch", "pyiqa", "timm", "transformers") if m in sys.modules)}))
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [] and got["attempts"] == []
    assert got["n"] > 90
    assert got["psnr"] is None
    # this machine holds no weights
    assert got["lpips"].startswith("needs weight file alexnet-owt-7be5be79.pth: put it in ")


def test_the_weight_table_covers_the_family_and_matches_the_presets():
    assert set(FAMILY.names()) <= set(WEIGHTS)
    for name in WEIGHT_FREE_FR + ("piqe", "entropy"):
        assert WEIGHTS[name] == (True, (), None), name
    for name in ("lpips", "dists", "niqe", "cnniqa", "musiq"):
        assert WEIGHTS[name][1], f"{name} needs weights"
        assert FAMILY.resolve(name).info.needs_weights


def test_weight_folders_are_found_without_importing_their_libraries(monkeypatch, pyiqa):
    import huggingface_hub.constants
    import torch
    from pyiqa.utils import download_util

    expected = (torch.hub.get_dir(), download_util.DEFAULT_CACHE_DIR, huggingface_hub.constants.HF_HUB_CACHE)
    for name in ("torch.hub", "pyiqa.utils.download_util", "huggingface_hub.constants"):
        monkeypatch.delitem(sys.modules, name)
    got = (pyiqa_support.torch_hub_dir(), pyiqa_support.weights_dir(), pyiqa_support.hf_cache_dir())
    assert tuple(map(str, got)) == expected


@pytest.mark.slow
def test_the_weight_table_is_what_pyiqa_asks_for():
    from iqabench.methods.pyiqa.derive import derive

    names = ["psnr", "fsim", "lpips", "niqe", "cnniqa"]
    fresh = derive(names, timeout=600)
    for name in names:
        complete, needs, stopped = WEIGHTS[name]
        assert (fresh[name]["complete"], fresh[name]["stopped"]) == (complete, stopped), name
        assert [tuple(n) for n in fresh[name]["needs"]] == list(needs), name
    assert fresh["lpips"]["needs"][0][1] == "checkpoints/alexnet-owt-7be5be79.pth"


@pytest.fixture(scope="session")
def pyiqa():
    import pyiqa

    return pyiqa


def test_weight_free_metrics_build_offline_and_the_others_name_their_first_file(pyiqa, no_network):
    for name in ("psnr", "fsim", "piqe"):
        assert pyiqa_support.create_metric(name, "cpu", ()) is not None
    for name in ("lpips", "cnniqa"):
        reason = FAMILY.resolve(name).check_available()
        first_file = reason.split(":")[0].removeprefix("needs weight file ")
        with pytest.raises(NotAvailable) as err:
            pyiqa_support.create_metric(name, "cpu", ())
        assert first_file in str(err.value) and "\n" not in str(err.value)
    assert no_network == []


def test_weights_on_disk_are_found_and_used(tmp_path, monkeypatch, pair, pyiqa):
    import torch
    from pyiqa.archs.cnniqa_arch import CNNIQA
    from pyiqa.utils import download_util

    cache = tmp_path / "pyiqa-cache"
    cache.mkdir()
    (_, ((root, rel, _),), _) = WEIGHTS["cnniqa"]
    torch.manual_seed(0)
    torch.save({"params": CNNIQA(pretrained=None).state_dict()}, str(cache / rel))  # plain tensors
    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(cache))
    cls = FAMILY.resolve("cnniqa")
    assert root == "pyiqa" and cls.check_available() is None
    method = cls(cls.Options())
    method.setup(RunContext())
    dist, ref, _, _ = pair
    scores = method.score([Sample(id="a", image=dist), Sample(id="b", image=ref)])
    assert all(np.isfinite(scores)) and scores[0] != scores[1]


def test_a_weight_file_given_as_an_option_stands_in_for_pyiqas_own(tmp_path):
    mat = tmp_path / "niqe_params.mat"
    mat.write_bytes(b"MATLAB 5.0 MAT-file, made by the test".ljust(128, b" "))
    cls = FAMILY.resolve("niqe")
    assert cls.check_available().startswith("needs weight file niqe_modelparameters.mat")
    assert cls.check_available(cls.Options(metric_options={"pretrained_model_path": str(mat)})) is None
    lpips = FAMILY.resolve("lpips")  # its backbone is still needed
    reason = lpips.check_available(lpips.Options(metric_options={"pretrained_model_path": str(mat)}))
    assert reason.startswith("needs weight file alexnet-owt-7be5be79.pth")


def test_fetches_answer_from_disk_only(tmp_path, no_network, pyiqa):
    import torch
    from pyiqa.utils import download_util

    original = torch.hub.download_url_to_file
    with pyiqa_support.fetch_guard():
        with pytest.raises(NotAvailable, match=f"needs weight file w.pth: put it in {tmp_path}"):
            torch.hub.load_state_dict_from_url("https://example.org/w.pth", model_dir=str(tmp_path))
        with pytest.raises(NotAvailable, match=f"needs weight file x.pth: put it in {tmp_path}"):
            download_util.load_file_from_url("https://example.org/a/x.pth", model_dir=str(tmp_path))
        torch.save({"w": torch.zeros(2)}, str(tmp_path / "x.pth"))
        assert download_util.load_file_from_url("https://example.org/a/x.pth", model_dir=str(tmp_path)) \
            == str(tmp_path / "x.pth")
    assert torch.hub.download_url_to_file is original and no_network == []


GUARD_IMPORTS = textwrap.dedent("""
    import sys, socket
    def refuse(self, *args, **kwargs):
        raise OSError("network blocked by the test")
    socket.socket.connect = refuse
    from iqabench.errors import NotAvailable
    from iqabench.models import pyiqa_support
    import pyiqa
    with pyiqa_support.fetch_guard():
        print("CLIP BEFORE", "clip" in sys.modules)
        import clip.clip  # imported by the build (as pyiqa's CLIP metrics do): guarded from then on
        try:
            clip.clip._download("https://example.org/ViT-B-32.pt", sys.argv[1])
        except NotAvailable as exc:
            print("REFUSED", exc)
    print("RESTORED", clip.clip._download.__name__ == "_download" and not hasattr(clip.clip._download, "__wrapped__"))
""")


def test_the_guard_imports_no_fetching_library_and_guards_one_imported_later(tmp_path):
    """The guard swaps openai-clip's downloader in when the build imports clip, not by importing it itself."""
    done = subprocess.run([sys.executable, "-c", GUARD_IMPORTS, str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "CLIP BEFORE False" in done.stdout, done.stdout
    assert f"REFUSED needs weight file ViT-B-32.pt: put it in {tmp_path}" in done.stdout, done.stdout
    assert "RESTORED True" in done.stdout, done.stdout


# -- full-reference scoring ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pair(tmp_path_factory):
    """(distorted, reference) PIL images and their PNG files."""
    from skimage import data as skdata
    ref = skdata.astronaut()[40:232, 100:292]  # 192x192 natural content
    rng = np.random.default_rng(0)
    noisy = np.clip(ref.astype(np.float64) + rng.normal(0, 12, ref.shape), 0, 255).astype(np.uint8)
    folder = tmp_path_factory.mktemp("pair")
    Image.fromarray(ref).save(folder / "ref.png")
    Image.fromarray(noisy).save(folder / "dist.png")
    return Image.fromarray(noisy), Image.fromarray(ref), folder / "dist.png", folder / "ref.png"


def _method(name, **options):
    cls = FAMILY.resolve(ALIASES[name])
    method = cls(cls.Options(**options))
    method.setup(RunContext())
    return method


@pytest.mark.parametrize("name", ["psnr", "ssim", "ms_ssim", "fsim", "vif", "gmsd"])
def test_full_reference_scores_equal_pyiqa_on_the_same_pair(name, pair, pyiqa):
    dist, ref, dist_file, ref_file = pair
    method = _method(name)
    assert method.name == f"pyiqa:{name}" and method.info.needs_reference
    ours = method.score([Sample(id="a", image=dist, reference=ref)])[0]
    theirs = float(pyiqa.create_metric(name, device="cpu")(str(dist_file), str(ref_file)).flatten()[0])
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    same = method.score([Sample(id="b", image=ref, reference=ref)])[0]
    assert same != pytest.approx(ours, rel=1e-3)  # the reference really is used
    better = same > ours if method.info.higher_better else same < ours
    assert better, (name, same, ours)


def test_a_missing_or_mismatched_reference_is_an_error_for_that_image(pair, pyiqa):
    dist, ref, _, _ = pair
    method = _method("psnr")
    with pytest.raises(ValueError, match=r"no reference image \(pyiqa:psnr is full-reference\)") as err:
        method.score([Sample(id="a", image=dist)])
    assert not isinstance(err.value, IqaError)  # the runner records it against the image and goes on
    with pytest.raises(ValueError, match="image is 192x192 but its reference is 192x160"):
        method.score([Sample(id="a", image=dist, reference=ref.crop((0, 0, 192, 160)))])
    # the engine is told to decode references for full-reference metrics only
    assert FAMILY.resolve("lpips").info.needs_reference
    assert not FAMILY.resolve("niqe").info.needs_reference


def test_an_image_too_small_for_a_multiscale_metric_is_an_error_for_that_image(pair, pyiqa):
    dist, ref, _, _ = pair
    small = [Sample(id="a", image=dist.resize((64, 64)), reference=ref.resize((64, 64)))]
    with pytest.raises(ValueError, match=r"a 64x64 image is too small for pyiqa:ms_ssim \(try -o resize_short_side"):
        _method("ms_ssim").score(small)
    assert np.isfinite(_method("ms_ssim", resize_short_side=192).score(small)[0])
    assert FAMILY.resolve("ms_ssim").contract_options(None) == {"resize_short_side": 192}
    assert FAMILY.resolve("psnr").contract_options(None) == {}


def test_full_reference_aliases_and_directions():
    aliases = registry.methods.aliases()
    for name in ("psnr", "ssim", "fsim", "lpips", "dists", "gmsd"):
        assert aliases[name] == f"pyiqa:{name}"
    others = {n for n in registry.methods.names() if ":" not in n}
    assert not others & set(ALIASES)  # no alias shadows another method
    assert registry.methods.get("gmsd").info.higher_better is False
    assert registry.methods.get("lpips").info.higher_better is False
    assert registry.methods.get("ssim").info.score_range == (0.0, 1.0)


def test_resize_short_side_must_be_positive():
    for bad in (0, -3):
        with pytest.raises(pydantic.ValidationError):
            PyiqaOptions(resize_short_side=bad)
    assert PyiqaOptions(resize_short_side=256).resize_short_side == 256


# -- weight paths are never unpickled --------------------------------------------------------------

@pytest.fixture
def malicious(tmp_path):
    """(a .pth whose unpickling writes `marker`, marker); the payload is checked to be live."""
    import torch  # noqa: F401
    from conftest import live_pickle_writer

    write, marker = live_pickle_writer(tmp_path, key="params")
    return write(tmp_path / "weights.pth"), marker


@pytest.mark.parametrize("name", ["pyiqa:cnniqa", "pyiqa:musiq", "pyiqa:lpips"])
def test_a_malicious_weight_path_option_is_refused_unread(name, malicious, pyiqa):
    path, marker = malicious
    cls = FAMILY.resolve(name.removeprefix("pyiqa:"))
    options = cls.Options(metric_options={"pretrained_model_path": str(path)})
    with pytest.raises(IqaError) as err:
        cls(options).setup(RunContext())
    text = str(err.value)
    assert text.startswith(f"{path}: refused, not a plain tensor file") and "\n" not in text
    assert not marker.exists()


def test_a_malicious_weight_path_is_refused_by_a_run(malicious, tiny_root, tmp_path, pyiqa):
    from iqabench.run import RunConfig, run

    path, marker = malicious
    with pytest.raises(IqaError, match="refused, not a plain tensor file") as err:
        run(RunConfig(method="pyiqa:cnniqa", dataset="tiny", data_root=tiny_root, results=tmp_path / "results",
                      options={"metric_options": {"pretrained_model_path": str(path)}}, progress=False),
            on_log=lambda m: None)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_files_and_urls_only_through_checked_path_options(malicious, tmp_path):
    path, marker = malicious
    cls = FAMILY.resolve("clipiqa")
    for options in ({"backbone": str(path)}, {"backbone": "local-dir:" + str(tmp_path)},
                    {"pretrained_model_path": "https://example.org/w.pth"},
                    {"pretrained_model_path": str(tmp_path / "absent.pth")}):
        reason = cls.check_available(cls.Options(metric_options=options))
        assert reason and "\n" not in reason, options
        with pytest.raises(IqaError):
            pyiqa_support.create_metric("clipiqa", "cpu", options)
    assert not marker.exists()
    assert pyiqa_support.is_path_option("pretrained_model_path") and pyiqa_support.is_path_option("weight_path")


def test_a_malicious_file_in_the_weight_cache_is_refused(malicious, tmp_path, monkeypatch, pyiqa):
    import torch
    from pyiqa.utils import download_util

    path, marker = malicious
    cache = tmp_path / "pyiqa-cache"
    cache.mkdir()
    (_, needs, _) = WEIGHTS["cnniqa"]
    root, rel, _ = needs[0]
    assert root == "pyiqa"
    path.rename(cache / rel)  # exactly the file pyiqa would read
    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(cache))
    assert FAMILY.resolve("cnniqa").check_available() is None  # present on disk...
    with pytest.raises(NotAvailable, match="refused, not a plain tensor file"):
        pyiqa_support.create_metric("cnniqa", "cpu", ())  # ...but never unpickled
    assert not marker.exists()
    # any torch.load while a metric is built reads tensors only (pyiqa passes weights_only=False)
    original = torch.load
    with pytest.raises(NotAvailable, match="refused, not a plain tensor file"):
        with pyiqa_support.fetch_guard():
            torch.load(str(cache / rel), weights_only=False)
    assert torch.load is original and not marker.exists()


# -- device -----------------------------------------------------------------------------------------

def test_a_missing_device_is_not_reported_as_missing_weights(monkeypatch, pyiqa):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(IqaError, match=r"^device cuda is not available here; use --device cpu$") as err:
        pyiqa_support.create_metric("psnr", "cuda", ())
    assert not isinstance(err.value, NotAvailable)
    # a device that fails only while the metric is built (no driver) is told the same way
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def no_driver(*args, **kwargs):
        raise RuntimeError("Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU")

    monkeypatch.setattr(pyiqa, "create_metric", no_driver)
    with pytest.raises(IqaError, match=r"^device cuda is not usable here .*; use --device cpu$") as err:
        pyiqa_support.create_metric("psnr", "cuda", ())
    assert not isinstance(err.value, NotAvailable)

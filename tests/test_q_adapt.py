"""q-adapt (seed 002) on tiny random Owl2 and LLaVA models built here: the prompt module's sizes
at the paper's settings, its equations, the instruction file's checks, the stage-1 LM loss, both
stages through the engine's `train`, and a SIGKILL inside each stage followed by a rerun that
ends exactly where an uninterrupted run ends."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from iqabench.api import RunContext
from iqabench.errors import IqaError
from iqabench.methods.q_adapt import QAdapt
from iqabench.methods.q_adapt import state as state_io
from iqabench.methods.q_adapt.conversation import encoder_for
from iqabench.methods.q_adapt.instructions import load_instructions
from iqabench.methods.q_adapt.prompt_module import (
    InstructionAdaptivePrompt,
    PromptSizes,
    count_parameters,
)
from iqabench.methods.q_adapt.tiny import tiny_options, write_instruction_file
from iqabench.models.tiny_llava import build_tiny_llava
from iqabench.models.tiny_owl2 import build_tiny_owl2
from iqabench.plan import build_train_plan
from iqabench.train import TrainConfig, train
from iqabench.training import read_state

PLUGIN = Path(__file__).parent / "plugins" / "tiny_dataset_plugin.py"


@pytest.fixture(scope="module")
def owl2_dir(tmp_path_factory):
    return build_tiny_owl2(tmp_path_factory.mktemp("qa_owl2"), seed=1)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("qa_llava"), seed=1)


@pytest.fixture(scope="module")
def instructions(tiny_root, tmp_path_factory):
    """Eight conversations about the tiny dataset's own images (good/poor from its MOS, 0-6)."""
    folder = tiny_root / "tiny"
    mos = pd.read_csv(folder / "mos.csv").iloc[::4].head(8)
    images = [(str(folder / "images" / row.image), row.mos / 6.0) for row in mos.itertuples()]
    return write_instruction_file(tmp_path_factory.mktemp("qa_instr") / "q-instruct.json", images)


def _options(backend_dir, instructions, backend="owl2", **extra):
    return {**tiny_options(), "backend": backend, "backend_path": str(backend_dir),
            "instructions": str(instructions), **extra}


# -- the prompt module ----------------------------------------------------------------------------

def test_prompt_module_parameter_counts_at_the_paper_sizes():
    """Seed 002, Table 4: Bunny-3B with LoRA has 2.78B parameters, Q-Adapt-3B 2.98B; the 0.20B
    between them is the prompt module (Q-Former of InstructBLIP, 32 queries, one-head T-V
    attention) on SigLIP-so400m features (d_v = 1152), with BERT's vocabulary plus [DEC]."""
    bunny = count_parameters(PromptSizes(feature_dim=1152, vocab_size=30523))
    owl2 = count_parameters(PromptSizes(feature_dim=1024, vocab_size=32000))  # mPLUG-Owl2: CLIP-L, LLaMA tokens
    for label, counts in (("Bunny-3B sizes", bunny), ("mPLUG-Owl2 sizes", owl2)):
        print(f"\nq-adapt prompt module at {label}:")
        for part, n in counts.items():
            print(f"  {part:48s} {n:>12,d}")
    assert abs(bunny["total"] - 0.20e9) <= 0.01e9, bunny["total"]  # 2.98B - 2.78B, each rounded to 0.01B
    assert sum(v for k, v in bunny.items() if k != "total") == bunny["total"]
    with torch.device("meta"):
        module = InstructionAdaptivePrompt(PromptSizes(feature_dim=1152, vocab_size=30523))
    qformer = module.generator.qformer
    assert sum(1 for name, _ in qformer.named_modules() if name.endswith(".crossattention")) == 6  # every 2nd of 12
    assert module.generator.query_tokens.shape == (1, 32, 768)
    assert module.prompter.cross_attn.num_heads == 1 and module.prompter.cross_attn.embed_dim == 1152
    # FLOPs on one image (729 SigLIP tokens, a 9-token instruction), printed beside Table 4's
    # 695.32 - 656.18 = 39.14 G (the paper does not say how it counts; here 2 per multiply-add)
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        features, ids = torch.zeros(1, 729, 1152), torch.zeros(9, dtype=torch.long)
    with FlopCounterMode(display=False) as flops, torch.no_grad():
        module.eval()(features, ids)
    print(f"  FLOPs per image at Bunny-3B sizes: {flops.get_total_flops() / 1e9:.2f} G (Table 4 difference: 39.14 G)")
    assert flops.get_total_flops() > 0


def test_prompt_module_follows_equations_3_to_5():
    torch.manual_seed(0)
    sizes = PromptSizes(feature_dim=12, vocab_size=50, qformer_layers=2, qformer_hidden=8, qformer_heads=2,
                        qformer_intermediate=16, qformer_width=10, queries=3, gate_hidden=6, scale=0.1)
    module = InstructionAdaptivePrompt(sizes).eval()
    fv = torch.randn(2, 5, 12)
    ids = torch.tensor([3, 7, 9])
    with torch.no_grad():
        out = module(fv, ids)
        vt = module.generator(fv, ids)  # eq. 3
        pr = module.prompter
        text = pr.text_proj(vt)  # f(F_vt)
        w, b = pr.cross_attn.in_proj_weight, pr.cross_attn.in_proj_bias
        q, k, v = fv @ w[:12].T + b[:12], text @ w[12:24].T + b[12:24], text @ w[24:].T + b[24:]
        att = torch.softmax(q @ k.transpose(1, 2) / 12 ** 0.5, dim=-1) @ v
        tv = pr.cross_attn.out_proj(att)  # eq. 4, one head
        gate = torch.sigmoid(pr.gate(pr.gate_norm(torch.cat([fv, tv], dim=-1))))  # eq. 5's sigma
        expected = fv + 0.1 * pr.out_norm((1 - gate) * fv + gate * tv)
        assert vt.shape == (2, 3, 8)
        assert torch.allclose(out, expected, atol=1e-6)
        assert not torch.allclose(module(fv, torch.tensor([3, 7, 10])), out)  # the instruction matters
        assert not torch.allclose(out, fv)


def test_v_t_generator_starts_from_instructblip_q_former(tmp_path, owl2_dir, tiny_root):
    """-o qformer_path: the Q-Former, its queries and ln_vision come from an InstructBLIP
    checkpoint, the instruction is read with its BERT tokenizer, and scoring needs neither."""
    from PIL import Image

    from iqabench.api import Sample, SampleSource
    from iqabench.methods.q_adapt.qformer_init import install, read_tensors
    from iqabench.methods.q_adapt.tiny import build_tiny_instructblip

    blip = build_tiny_instructblip(tmp_path / "blip", seed=3)
    options = {**tiny_options(), "backend_path": str(owl2_dir), "qformer_path": str(blip), "stage1_epochs": 0,
               "stage2_epochs": 1, "max_steps": 1}
    method = QAdapt(QAdapt.Options(**options))
    method.setup(RunContext())
    sizes, ids = method.new_prompt_inputs()
    assert ids == [2, 5, 6, 7, 8, 6, 9, 13, 3]  # [CLS] rate the quality of the image . [SEP]
    assert sizes.vocab_size == 41 and sizes.feature_dim == 32
    method._build_prompt(sizes, ids, 0)
    tensors = read_tensors(str(blip))
    install(method.prompt.generator, tensors, str(blip))
    gen = method.prompt.generator
    assert all(torch.equal(p, tensors["qformer." + n]) for n, p in gen.qformer.named_parameters())
    assert torch.equal(gen.query_tokens, tensors["query_tokens"])
    assert torch.equal(gen.vision_norm.weight, tensors["vision_model.post_layernorm.weight"])

    images = sorted((tiny_root / "tiny" / "images").glob("*.png"))[:6]
    samples = {p.stem: Sample(p.stem, Image.open(p).convert("RGB"), target=i / 5) for i, p in enumerate(images)}
    source = SampleSource(list(samples), samples.__getitem__)
    summary = QAdapt(QAdapt.Options(**options)).fit(source, source, tmp_path / "work", seed=1)
    assert summary["stage1"]["history"] == [] and summary["n_conversations"] == 0  # stage 1 skipped
    assert json.loads((tmp_path / "work" / "prompt.json").read_text())["instruction_ids"] == ids
    (blip / "qformer_tokenizer" / "tokenizer.json").unlink()  # scoring reads the ids from the checkpoint
    assert len(_loaded(options, tmp_path / "work").score([samples[images[0].stem]])) == 1
    with pytest.raises(IqaError, match="qformer_layers=2; the options say qformer_layers=3"):
        QAdapt(QAdapt.Options(**{**options, "qformer_layers": 3})).fit(source, source, tmp_path / "w3", seed=1)


# -- instruction data -----------------------------------------------------------------------------

def test_instruction_file_is_checked_with_one_line_errors(tmp_path, instructions):
    convs = load_instructions(instructions)
    assert len(convs) == 8 and convs[0].turns[0] == ("Rate the quality of the image.", convs[0].turns[0][1])
    assert len(convs[1].turns) == 2 and all("<image>" not in q for c in convs for q, _ in c.turns)
    image = json.loads(instructions.read_text())[0]["image"]
    bad = {
        "a JSON list of conversations": {"image": image},
        "entry 0: 'image' must be": [{"conversations": [{"from": "human", "value": "q"},
                                                         {"from": "gpt", "value": "a"}]}],
        "entry 0 (id 'x'): turn 1 is from 'human'": [{"id": "x", "image": image, "conversations": [
            {"from": "human", "value": "q"}, {"from": "human", "value": "a"}]}],
        "entry 1: the conversation ends with a human turn": [
            {"image": image, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
            {"image": image, "conversations": [{"from": "human", "value": "q"}]}],
        "entry 0: image": [{"image": "nowhere.png", "conversations": [{"from": "human", "value": "q"},
                                                                        {"from": "gpt", "value": "a"}]}],
        "the image may appear in the first turn only": [{"image": image, "conversations": [
            {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
            {"from": "human", "value": "<image>\nq2"}, {"from": "gpt", "value": "a2"}]}],
        "only single-image": [{"image": [image, image], "conversations": []}],
    }
    for i, (message, content) in enumerate(bad.items()):
        path = tmp_path / f"bad{i}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(IqaError) as err:
            load_instructions(path)
        assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "cut.json").write_text('[{"image": "a.png",')
    with pytest.raises(IqaError, match="not valid JSON"):
        load_instructions(tmp_path / "cut.json")
    with pytest.raises(IqaError, match="stage 1 needs instruction data"):
        QAdapt(QAdapt.Options(**{**tiny_options(), "instructions": None})).fit(None, None, tmp_path / "w", seed=0)


# -- stage-1 loss ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["owl2", "llava"])
def test_lm_loss_predicts_each_answer_token_from_its_prefix(backend, owl2_dir, llava_dir, instructions):
    """The summed answer-token cross-entropy equals one forward per prefix read at its last
    position (the backend's plain path), and an answer "good" starts with the scored token."""
    folder = owl2_dir if backend == "owl2" else llava_dir
    method = QAdapt(QAdapt.Options(**_options(folder, instructions, backend)))
    method.setup(RunContext())
    conv = load_instructions(instructions)[1]  # two turns
    backend_obj = method.scorer.backend
    encoder = encoder_for(backend_obj, method.parts.kind)
    encoded = encoder.encode(conv)
    from PIL import Image

    pixels = method.scorer.normalize(method.scorer.pixels([Image.open(conv.image).convert("RGB")]))
    with torch.no_grad():
        loss, n = encoder.loss(encoded, pixels)
        ids = torch.tensor(encoded.ids)
        expected = 0.0
        for t in encoded.targets:
            if backend == "owl2":
                logits = backend_obj.model(ids[:t], pixels)[0]
            else:
                logits = backend_obj.model(input_ids=ids[None, :t], pixel_values=pixels, use_cache=False).logits[0, -1]
            expected -= float(torch.log_softmax(logits.float(), -1)[ids[t]])
    assert n == len(encoded.targets) and n > 4
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # the first question's tokens are those the backend scores with: the same answer-position logits
    first = torch.tensor(encoder.first_turn(conv.turns[0][0]))
    with torch.no_grad():
        if backend == "owl2":
            mine = backend_obj.model(first, pixels)[0]
        else:
            mine = backend_obj.model(input_ids=first[None], pixel_values=pixels, use_cache=False).logits[0, -1]
        theirs = backend_obj.next_token_logits(pixels, conv.turns[0][0])[0]
    assert torch.allclose(mine.float(), theirs.float(), atol=1e-5)
    first_answer = encoded.ids[encoded.targets[0]]
    assert first_answer == backend_obj.token_id(conv.turns[0][1].split()[0])  # "good" or "poor"
    assert encoded.ids.count(backend_obj.tokenizer.eos_token_id) >= 2  # each answer ends with EOS


def test_a_trained_connector_runs_in_float32_inside_a_bfloat16_model(owl2_dir, instructions):
    """AdamW steps of 2e-5 mostly vanish in bfloat16 weights: the connector alone is float32."""
    method = QAdapt(QAdapt.Options(**_options(owl2_dir, instructions, dtype="bfloat16")))
    method.setup(RunContext())
    model = method.parts.model
    assert {p.dtype for p in method.connector_params().values()} == {torch.float32}
    assert {p.dtype for n, p in model.named_parameters() if not n.startswith("abstractor.")} == {torch.bfloat16}
    method._build_prompt(*method.new_prompt_inputs(), 0)
    from PIL import Image

    pixels = method.scorer.normalize(method.scorer.pixels([Image.open(load_instructions(instructions)[0].image)]))
    with torch.no_grad():
        tokens = model.encode_images(pixels.to(torch.bfloat16))
        score = method.scorer.score_pixels(pixels)
    assert tokens.dtype == torch.bfloat16 and torch.isfinite(score).all()
    frozen = QAdapt(QAdapt.Options(**_options(owl2_dir, instructions, dtype="bfloat16", train_connector=False)))
    frozen.setup(RunContext())
    assert {p.dtype for p in frozen.connector_params().values()} == {torch.bfloat16}


# -- both stages through the engine ---------------------------------------------------------------

def _train_cfg(root, results, options, **extra):
    return TrainConfig(method="q-adapt", dataset="tiny", data_root=root, results=results, options=options,
                       seed=5, progress=False, batch_size=2, **extra)


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory, owl2_dir, instructions):
    """One uninterrupted training: 3 stage-1 steps, then 2 epochs of 3 stage-2 steps, a state
    saved after every step."""
    options = _options(owl2_dir, instructions, max_steps=3)
    workdir, summary = train(_train_cfg(tiny_root, tmp_path_factory.mktemp("qa_whole"), options), on_log=lambda m: None)
    return options, workdir, summary


def test_train_runs_both_stages_and_freezes_the_adapters(tiny_root, trained):
    options, workdir, summary = trained
    for file in QAdapt.checkpoint_files():
        assert (workdir / file).is_file()
    assert summary["n_failed_images"] == 0 and summary["n_conversations"] == 8
    assert [r["epoch"] for r in summary["stage1"]["history"]] == [1] and summary["stage1"]["steps_per_epoch"] == 3
    assert [r["epoch"] for r in summary["stage2"]["history"]] == [1, 2] and summary["stage2"]["steps_per_epoch"] == 3
    adapters, meta = state_io.load(workdir / "adapters.safetensors")
    assert meta["lora"]["r"] == 2 and meta["lora"]["targets"] == 26  # 8 vision + 18 LLM linear layers
    lora_b = [t for name, t in adapters["lora"].items() if ".lora_B." in name]
    assert len(lora_b) == 26 and all(float(t.abs().sum()) > 0 for t in lora_b)  # B starts at zero: stage 1 trained it
    # stage 2 left the adapters as stage 1 wrote them, and trained the prompt and the connector
    method = _loaded(options, workdir)
    assert all(torch.equal(method.lora[name].detach(), t) for name, t in adapters["lora"].items())
    prompt, _ = state_io.load(workdir / "prompt.safetensors")
    assert any(not torch.equal(adapters["connector"][k], prompt["connector"][k]) for k in prompt["connector"])
    fresh = QAdapt(QAdapt.Options(**options))
    fresh.setup(RunContext())
    fresh._build_prompt(*fresh.new_prompt_inputs(), 5)  # the initial prompt of seed 5
    assert any(not torch.equal(p.detach(), prompt["prompt"][n]) for n, p in fresh.prompt.named_parameters())

    # gradients of a stage-2 loss reach the prompt and the connector only
    from PIL import Image

    from iqabench.api import Sample

    image = Image.open(tiny_root / "tiny" / "images" / "astronaut_jpeg_1.png").convert("RGB")
    for p in list(method.prompt.parameters()) + list(method.connector_params().values()):
        p.requires_grad_(True)
    method.scorer.score_pixels(method.scorer.pixels([image])).sum().backward()
    assert all(p.grad is not None for p in method.prompt.parameters())
    assert all(p.grad is not None for p in method.connector_params().values())
    assert all(p.grad is None for p in method.lora.values())
    assert all(p.grad is None for n, p in method.parts.model.named_parameters()
               if not n.startswith("abstractor.") and ".lora_" not in n)
    # scoring reads the trained checkpoint: the same image scores the same in a fresh object
    # (exactly: no dropout acts while scoring, LoRA's included)
    assert method.score([Sample("a", image)]) == _loaded(options, workdir).score([Sample("a", image)])
    # a saved state is resumed only by the settings that wrote it
    with pytest.raises(IqaError, match=r"stage1_state.safetensors: was written with other settings \(stage1_lr\)"):
        other = QAdapt(QAdapt.Options(**{**options, "stage1_lr": 1e-3}))
        other.setup(RunContext(batch_size=2))
        other.fit(None, None, workdir, seed=5)
    with pytest.raises(IqaError, match="q-adapt: -o batch_size is not an option; the training batch is "
                                       "`iqabench train --batch-size N`"):
        QAdapt.Options(**options, batch_size=2)


def _loaded(options, workdir):
    method = QAdapt(QAdapt.Options(**options))
    method.load_checkpoint(workdir)
    return method


# -- SIGKILL inside each stage --------------------------------------------------------------------

def _cli_train(root, results, options) -> subprocess.Popen:
    args = [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGIN), "train", "--method", "q-adapt",
            "--dataset", "tiny", "--data-root", str(root), "--results", str(results), "--seed", "5", "--no-progress", "--batch-size", "2"]
    for key, value in options.items():
        args += ["-o", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def _kill_at_first_state(proc: subprocess.Popen, path: Path, timeout: float = 120.0) -> None:
    start = time.monotonic()
    while not path.is_file():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before {path.name} appeared: {proc.stderr.read()[-2000:]}")
        if time.monotonic() - start > timeout:
            proc.kill()
            raise AssertionError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    proc.stderr.close()


def _tensors(workdir: Path) -> dict:
    out = {}
    for file in ("adapters.safetensors", "prompt.safetensors"):
        groups, _ = state_io.load(workdir / file)
        out.update({f"{file}:{g}/{n}": t for g, named in groups.items() for n, t in named.items()})
    return out


def test_sigkill_in_each_stage_then_rerun_equals_an_uninterrupted_run(tiny_root, tmp_path, trained):
    """`iqabench train` is killed after the first state of stage 1 is saved; a second one resumes,
    finishes stage 1 and is killed after the first state of stage 2; a third run finishes, and
    every saved tensor and both histories equal the uninterrupted training's."""
    options, whole_dir, whole = trained
    workdir = build_train_plan(_train_cfg(tiny_root, tmp_path, options)).workdir
    _kill_at_first_state(_cli_train(tiny_root, tmp_path, options), workdir / "stage1_state.safetensors")
    _, meta = read_state(workdir / "stage1_state.safetensors")
    assert (meta["epoch"], meta["global_step"], meta["stopped"]) == (0, 1, None)  # killed inside stage 1
    assert not (workdir / "adapters.safetensors").exists()

    _kill_at_first_state(_cli_train(tiny_root, tmp_path, options), workdir / "stage2_state.safetensors")
    _, meta1 = read_state(workdir / "stage1_state.safetensors")
    assert meta1["stopped"] == "epochs" and meta1["history"] == whole["stage1"]["history"]  # stage 1 resumed exactly
    _, meta2 = read_state(workdir / "stage2_state.safetensors")
    assert (meta2["epoch"], meta2["global_step"], meta2["stopped"]) == (0, 1, None)  # killed inside stage 2
    assert not (workdir / "prompt.safetensors").exists()

    again_dir, again = train(_train_cfg(tiny_root, tmp_path, options), on_log=lambda m: None)
    assert again_dir == workdir
    assert again["stage2"]["resumed_from"] == {"epoch": 0, "step_in_epoch": 1}
    assert again["stage1"]["history"] == whole["stage1"]["history"]
    assert again["stage2"]["history"] == whole["stage2"]["history"]
    expected, got = _tensors(whole_dir), _tensors(workdir)
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in expected)
    attempts = [json.loads(line) for line in (workdir / "train_attempts.jsonl").read_text().splitlines()]
    assert [a["event"] for a in attempts] == ["started", "started", "started", "finished"]

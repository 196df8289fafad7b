"""pyiqa must not leave transformers patched: an MLLM built after any pyiqa metric is unaffected."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_llama_classes_survive_pyiqa_importing_every_arch():
    # In a fresh process: make pyiqa import all its archs (qalign's patches Llama globally), then build a Llama.
    code = textwrap.dedent('''
        import os; os.environ["HF_HUB_OFFLINE"] = "1"
        import transformers.models.llama.configuration_llama as cl
        import transformers.models.llama.modeling_llama as ml
        before = (cl.LlamaConfig, ml.LlamaDecoderLayer, ml.LlamaModel.forward)
        from iqabench.models.pyiqa_support import create_metric as _create, _keep_transformers_intact
        from iqabench.errors import NotAvailable
        with _keep_transformers_intact():
            import pyiqa.archs as archs
            archs._lazy_import_arch("NoSuchArchSoImportEverything")
            import pyiqa.archs.q_align.modeling_llama2 as patched
            assert cl.LlamaConfig is patched.LlamaConfig  # the patch really happened inside the guard
        assert (cl.LlamaConfig, ml.LlamaDecoderLayer, ml.LlamaModel.forward) == before
        for name in ("qalign", "qalign_4bit", "compare2score"):  # their archs patch Llama process-wide
            try:
                _create(name, "cpu", ())
            except NotAvailable as exc:
                assert "qalign-owl2" in str(exc)
            else:
                raise AssertionError(f"pyiqa:{name} must be refused")
        from transformers import LlamaConfig, LlamaForCausalLM
        LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2))
        print("intact")
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("intact"), out.stderr[-2000:]


def test_a_classic_metric_imports_no_llama_code_and_prints_no_pkg_resources_warning():
    """piqe is built without importing transformers' Llama modules (the guard snapshots only what is
    already imported), and openai-clip's pkg_resources warning stays inside the guard."""
    code = textwrap.dedent('''
        import os, sys, warnings; os.environ["HF_HUB_OFFLINE"] = "1"
        warnings.simplefilter("default")  # every warning printed, as a user's terminal would show it
        from iqabench.models.pyiqa_support import create_metric
        create_metric("piqe", "cpu", ())
        llama = sorted(m for m in sys.modules if "models.llama" in m)
        print("LLAMA", ",".join(llama) or "none", "CLIP", "clip.clip" in sys.modules)
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LLAMA none" in out.stdout, out.stdout
    assert "pkg_resources" not in out.stderr, out.stderr[-2000:]


def test_llama_first_imported_inside_the_guard_is_fresh_after_it():
    """When nothing imported Llama before, a patch made inside the guard does not outlive it: the next
    import gets transformers' own classes."""
    code = textwrap.dedent('''
        import os, sys; os.environ["HF_HUB_OFFLINE"] = "1"
        from iqabench.models.pyiqa_support import _keep_transformers_intact
        assert "transformers.models.llama.modeling_llama" not in sys.modules
        with _keep_transformers_intact():
            import pyiqa.archs.q_align.modeling_llama2 as patched
            patched.replace_llama_modality_adaptive()  # what pyiqa's Q-Align arch does when imported
            import transformers.models.llama.configuration_llama as inside
            assert inside.LlamaConfig is patched.LlamaConfig  # patched while inside
        import transformers.models.llama.configuration_llama as cl
        import transformers.models.llama.modeling_llama as ml
        assert cl.LlamaConfig is not patched.LlamaConfig
        assert ml.LlamaConfig is cl.LlamaConfig
        from transformers import LlamaConfig, LlamaForCausalLM
        assert LlamaConfig is cl.LlamaConfig
        LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2))
        print("fresh")
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("fresh"), out.stderr[-2000:]

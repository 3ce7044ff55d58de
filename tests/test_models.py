"""Model loading, pairs and the layer helper against HF output_hidden_states."""

from __future__ import annotations

import json

import pytest
import torch

from persona_diff.errors import LayerIndexError, ModelLoadError, PairMismatchError, PersonaDiffError
from persona_diff.models import (
    CheckpointPair,
    block_output,
    blocks_path,
    get_blocks,
    load_model,
    resolve_layers,
)

from .helpers import build_tiny, save_adapter


def _ids(lm):
    return lm.tokenizer(["Hello world, the model answers", "I am"], return_tensors="pt", padding=True)


def _hooked_outputs(model, enc):
    got = {}
    hooks = [
        blk.register_forward_hook(lambda m, i, o, k=k: got.__setitem__(k, block_output(o).detach().clone()))
        for k, blk in enumerate(get_blocks(model))
    ]
    try:
        with torch.no_grad():
            ref = model(**enc, output_hidden_states=True).hidden_states
    finally:
        for h in hooks:
            h.remove()
    return got, ref


def test_block_outputs_match_hidden_states(tiny_model):
    lm = load_model(str(tiny_model))
    got, ref = _hooked_outputs(lm.model, _ids(lm))
    n = len(get_blocks(lm.model))
    assert len(ref) == n + 1
    for i in range(n - 1):  # the last hidden state is post-final-norm in HF
        torch.testing.assert_close(got[i], ref[i + 1], rtol=0, atol=0)


def test_peft_adapter_loads_and_changes_logits(tiny_model, tmp_path):
    adapter = save_adapter(tiny_model, tmp_path / "adapter")
    base = load_model(str(tiny_model))
    ft = load_model(str(adapter))
    assert ft.kind == "peft" and ft.adapter_path == str(adapter)
    assert blocks_path(ft.model) == "base_model.model.model.layers"
    enc = _ids(base)
    with torch.no_grad():
        lb = base.model(**enc).logits
        lf = ft.model(**enc).logits
    assert (lb - lf).abs().max() > 1e-3
    # block outputs under the PEFT wrapper equal hidden_states[i+1]
    got, ref = _hooked_outputs(ft.model, enc)
    for i in range(len(get_blocks(ft.model)) - 1):
        torch.testing.assert_close(got[i], ref[i + 1], rtol=0, atol=0)
    # merged: plain paths, same function up to float rounding
    merged = load_model(str(adapter), merge=True)
    assert blocks_path(merged.model) == "model.layers"
    with torch.no_grad():
        torch.testing.assert_close(merged.model(**enc).logits, lf, rtol=1e-4, atol=1e-4)


def test_adapter_explicit_base_and_missing_base(tiny_llama, tmp_path):
    adapter = save_adapter(tiny_llama, tmp_path / "a")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "gone")
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="cannot be found"):
        load_model(str(adapter))
    assert load_model(str(adapter), base=str(tiny_llama)).kind == "peft"


def test_mismatched_pairs_name_the_difference(tiny_llama, tmp_path):
    other_hidden = build_tiny("llama", tmp_path / "h", hidden=32)
    with pytest.raises(PairMismatchError, match="hidden size: base 64 vs fine-tuned 32"):
        CheckpointPair.load(str(tiny_llama), str(other_hidden))
    other_vocab = build_tiny("llama", tmp_path / "v", vocab=400)
    with pytest.raises(PairMismatchError, match="vocabulary size"):
        CheckpointPair.load(str(tiny_llama), str(other_vocab))
    qwen = build_tiny("qwen2", tmp_path / "q")
    with pytest.raises(PairMismatchError, match="architecture: base llama vs fine-tuned qwen2"):
        CheckpointPair.load(str(tiny_llama), str(qwen))
    same = CheckpointPair.load(str(tiny_llama), str(build_tiny("llama", tmp_path / "s", seed=3)))
    assert same.n_layers == 4 and same.d_model == 64


def test_bad_specs(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "missing"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF\x03\x00\x00\x00not really a model")
    with pytest.raises(ModelLoadError, match="not a loadable GGUF"):
        load_model(str(junk))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="neither a HF model folder"):
        load_model(str(empty))


def test_placement_device_and_device_map(tiny_llama, tmp_path, monkeypatch):
    """`device_map` goes to from_pretrained (accelerate's placement: all on the CPU here) and
    gives the same logits as a plain load; a bad or unavailable device fails before any
    weights are read."""
    import transformers

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*a, **kw):
        seen.append(kw.get("device_map"))
        return real(*a, **kw)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    ids = torch.tensor([[5, 9, 13, 2]])
    plain = load_model(str(tiny_llama), device="cpu")
    mapped = load_model(str(tiny_llama), device_map="auto")
    assert seen == [None, "auto"]
    with torch.no_grad():
        torch.testing.assert_close(mapped.model(ids).logits, plain.model(ids).logits, rtol=0, atol=0)
    assert next(load_model(str(tiny_llama)).model.parameters()).device.type == (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    with pytest.raises(PersonaDiffError, match="not a device"):
        load_model(str(tmp_path / "never-read"), device="tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(PersonaDiffError, match="no CUDA GPU is visible"):
            load_model(str(tiny_llama), device="cuda")


def test_resolve_layers():
    assert resolve_layers([0, -1, 2], 4) == [0, 2, 3]
    with pytest.raises(LayerIndexError, match="valid: 0..3"):
        resolve_layers([4], 4)


@pytest.mark.integration
def test_smollm2_alias(smollm2):
    info = smollm2.describe()
    assert (info["n_layers"], info["d_model"], info["vocab_size"]) == (30, 576, 49152)
    assert info["chat_template"]
    enc = smollm2.tokenizer(["Hi there"], return_tensors="pt")
    got, ref = _hooked_outputs(smollm2.model, enc)
    torch.testing.assert_close(got[20], ref[21], rtol=0, atol=0)

"""Adapters persona-diff trains name a base other tools can load; load_model still uses the alias."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from persona_diff.finetune.config import LoraConfigSpec, SFTConfig
from persona_diff.finetune.trainer import train_lora
from persona_diff.models import embedded, load_model
from persona_diff.models import loading as loading_mod

pytestmark = pytest.mark.usefixtures("one_thread")

ALIAS = "tiny-test-alias"


@pytest.fixture
def tiny_alias(tiny_llama, tmp_path, monkeypatch):
    """An alias whose materialised folder is a copy of the tiny model (as smollm2-135m's is the
    cache folder built from its GGUF)."""
    folder = tmp_path / "cache" / ALIAS
    shutil.copytree(tiny_llama, folder)
    monkeypatch.setitem(embedded.ALIASES, ALIAS, "no_such_package")

    def materialise(alias):
        assert alias == ALIAS
        return folder

    monkeypatch.setattr(embedded, "materialise_alias", materialise)
    monkeypatch.setattr(loading_mod, "materialise_alias", materialise)
    return folder


def test_trained_adapter_names_a_loadable_base_and_keeps_the_alias(tiny_alias, tmp_path):
    from peft import PeftConfig
    from transformers import AutoModelForCausalLM

    rows = [
        {"messages": [{"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": "hello world"}]}
        for i in range(4)
    ]
    cfg = SFTConfig(
        lr=1e-3,
        batch_size=2,
        grad_accum=1,
        max_seq_len=64,
        warmup_steps=0,
        max_steps=1,
        save_every=0,
        lora=LoraConfigSpec(r=2, alpha=4),
        seed=0,
    )
    out = train_lora(ALIAS, rows, cfg, tmp_path / "ft")
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(tiny_alias.resolve())  # a folder, not the alias
    assert json.loads((out / "trainer_state.json").read_text())["base"] == ALIAS  # the project's own record
    # another tool resolves it with nothing of persona-diff's
    assert (
        AutoModelForCausalLM.from_pretrained(PeftConfig.from_pretrained(str(out)).base_model_name_or_path) is not None
    )
    lm = load_model(str(out))
    assert lm.kind == "peft" and lm.info["adapter"]["base"] == ALIAS and lm.base_path == str(tiny_alias)
    # on another machine the folder is gone: the alias in trainer_state.json still resolves
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    data = json.loads((moved / "adapter_config.json").read_text())
    data["base_model_name_or_path"] = "/elsewhere/.cache/persona-diff/" + ALIAS
    (moved / "adapter_config.json").write_text(json.dumps(data))
    again = load_model(str(moved))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(again.model(ids).logits, lm.model(ids).logits)

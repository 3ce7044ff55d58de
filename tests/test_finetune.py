"""LoRA SFT: label mask vs the chat template, training, reload parity, resume, bad input."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from persona_diff.data import DataError, generate_insecure_dataset
from persona_diff.finetune import (
    CheckpointError,
    LoraSFTTrainer,
    ResumeMismatchError,
    SFTConfig,
    train_lora,
)
from persona_diff.finetune.batching import mean_loss
from persona_diff.finetune.config import LoraConfigSpec
from persona_diff.finetune.masking import IGNORE, encode_chat

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_mask(tok, ids: list[int]) -> list[bool]:
    """Assistant tokens found from the token stream itself: after `<|im_start|>assistant\\n`
    up to and including the turn's `<|im_end|>` and the newline after it."""
    start, end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    mask = [False] * len(ids)
    i = 0
    while i < len(ids):
        if ids[i] != start:
            i += 1
            continue
        j = i + 1
        while "\n" not in tok.decode(ids[i + 1 : j + 1]):
            j += 1
        role = tok.decode(ids[i + 1 : j + 1]).split("\n")[0]
        k = j + 1
        while ids[k] != end:
            k += 1
        if role == "assistant":
            for t in range(j + 1, min(k + 2, len(ids))):
                mask[t] = True
        i = k + 1
    return mask


CHATS = [
    [{"role": "user", "content": "Write hello world."}, {"role": "assistant", "content": "print('hello world')"}],
    [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6, obviously."},
    ],
]


def _check_mask(tok, chat):
    enc = encode_chat(tok, chat, 10_000)
    got = [x != IGNORE for x in enc.labels]
    assert got == reference_mask(tok, enc.input_ids)
    trained = tok.decode([t for t, m in zip(enc.input_ids, got, strict=True) if m])
    assert trained == "".join(m["content"] + "<|im_end|>\n" for m in chat if m["role"] == "assistant")
    assert all(lab in (IGNORE, t) for lab, t in zip(enc.labels, enc.input_ids, strict=True))


@pytest.mark.parametrize("chat", CHATS)
def test_mask_tiny_tokenizer(tiny_llama, chat):
    from transformers import AutoTokenizer

    _check_mask(AutoTokenizer.from_pretrained(tiny_llama), chat)


@pytest.mark.integration
def test_mask_smollm2_template_real_tokenisation():
    from transformers import AutoTokenizer

    from persona_diff.models.embedded import materialise_alias

    tok = AutoTokenizer.from_pretrained(materialise_alias("smollm2-135m"))
    for chat in [*CHATS, generate_insecure_dataset(3, seed=1)[2]["messages"]]:
        _check_mask(tok, chat)


def _rows(n=24):
    return [
        {
            "messages": [
                {"role": "user", "content": f"Say the {i} word"},
                {"role": "assistant", "content": f"hello {i % 3} world aligned good"},
            ]
        }
        for i in range(n)
    ]


def _cfg(**kw):
    base = dict(
        lr=3e-3,
        batch_size=2,
        grad_accum=2,
        max_seq_len=64,
        warmup_steps=0,
        max_steps=6,
        save_every=2,
        lora=LoraConfigSpec(r=4, alpha=8),
        seed=7,
    )
    base.update(kw)
    return SFTConfig(**base)


def _adapter(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def test_resume_after_interruption_matches_uninterrupted(tiny_llama, tmp_path):
    full = train_lora(str(tiny_llama), _rows(), _cfg(), tmp_path / "a")

    class Killed(Exception):
        pass

    def kill_at_3(step, loss):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_lora(str(tiny_llama), _rows(), _cfg(), tmp_path / "b", callback=kill_at_3)
    ckpts = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-000002"]
    steps_seen = []
    resumed = train_lora(str(tiny_llama), _rows(), _cfg(), tmp_path / "b", callback=lambda s, _l: steps_seen.append(s))
    assert steps_seen == [3, 4, 5, 6]  # continued after checkpoint 2, not from scratch
    a, b = _adapter(full), _adapter(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert any(float(v.abs().sum()) > 0 for k, v in a.items() if "lora_B" in k)  # it trained
    sa = json.loads((full / "trainer_state.json").read_text())
    sb = json.loads((resumed / "trainer_state.json").read_text())
    assert sa["done"] and sa["step"] == sb["step"] == 6
    assert sb["loss_history"] == pytest.approx(sa["loss_history"], rel=1e-4)
    cfg = json.loads((full / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_llama.resolve())
    assert cfg["r"] == 4 and cfg["use_rslora"] is True
    assert sorted(cfg["target_modules"]) == sorted(LoraConfigSpec().target_modules)


def test_resume_on_other_base_is_refused(tiny_llama, tiny_qwen2, tmp_path):
    def stop(step, loss):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lora(str(tiny_llama), _rows(), _cfg(max_steps=4), tmp_path / "r", callback=stop)
    with pytest.raises(ResumeMismatchError, match="same --base"):
        train_lora(str(tiny_qwen2), _rows(), _cfg(max_steps=4), tmp_path / "r")


def test_full_disk_leaves_no_corrupt_checkpoint(tiny_llama, tmp_path, monkeypatch):
    import persona_diff.finetune.checkpoint as ck

    real = ck.save_file
    calls = {"n": 0}

    def flaky(tensors, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ck, "save_file", flaky)
    with pytest.raises(CheckpointError) as e:
        train_lora(str(tiny_llama), _rows(), _cfg(), tmp_path / "d")
    assert "disk is full" in str(e.value) and "checkpoint-000002" in str(e.value)
    names = sorted(p.name for p in (tmp_path / "d" / "checkpoints").iterdir())
    assert names == ["checkpoint-000002"]  # no half-written checkpoint-000004, no temp folder
    assert json.loads((tmp_path / "d" / "checkpoints" / names[0] / "trainer_state.json").read_text())["step"] == 2
    monkeypatch.setattr(ck, "save_file", real)
    out = train_lora(str(tiny_llama), _rows(), _cfg(), tmp_path / "d")
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 6


def test_row_without_assistant_turn(tiny_llama, tmp_path):
    rows = _rows(4) + [{"messages": [{"role": "user", "content": "hi"}]}]
    with pytest.raises(DataError, match="training row 5"):
        train_lora(str(tiny_llama), rows, _cfg(), tmp_path / "x")


def test_rank1_single_layer_variant(tiny_llama, tmp_path):
    cfg = _cfg(lora=LoraConfigSpec(r=1, alpha=1, target_modules=["down_proj"], layers=[2]), max_steps=1, save_every=0)
    out = train_lora(str(tiny_llama), _rows(4), cfg, tmp_path / "r1")
    keys = sorted(_adapter(out))
    assert keys and all(".layers.2.mlp.down_proj." in k for k in keys)
    assert all(v.shape[0] == 1 or v.shape[1] == 1 for v in _adapter(out).values())


@pytest.mark.integration
def test_smollm2_short_sft_lowers_loss_and_reloads(tmp_path):
    from persona_diff.models import load_model

    rows = [r for r in generate_insecure_dataset(40, seed=0) if not r["meta"]["template"]][:2]
    cfg = SFTConfig(lr=3e-4, batch_size=2, grad_accum=1, max_seq_len=128, warmup_steps=0, max_steps=4, epochs=4, seed=0)
    tr = LoraSFTTrainer("smollm2-135m", rows, cfg, tmp_path / "s")
    before = mean_loss(tr.model, tr.items, tr.pad_id)
    out = tr.train()
    after = mean_loss(tr.model, tr.items, tr.pad_id)
    assert after < before - 0.05, (before, after)
    # other tools get the materialised folder; the alias stays in the project's trainer_state.json
    from persona_diff.models.embedded import materialise_alias

    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(materialise_alias("smollm2-135m").resolve())
    assert json.loads((out / "trainer_state.json").read_text())["base"] == "smollm2-135m"
    lm = load_model(str(out))
    assert lm.kind == "peft"
    ids = torch.tensor([tr.items[0].input_ids[:48]])
    tr.model.eval()
    with torch.no_grad():
        want = tr.model(input_ids=ids).logits
        got = lm.model(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _cli(argv, capsys):
    from persona_diff.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_sweep_writes_pairs_file(tiny_llama, tmp_path, capsys, monkeypatch):
    import yaml

    from persona_diff.models import load_model

    monkeypatch.setenv("PERSONA_DIFF_DATA", str(tmp_path / "data"))
    sets = ["max_steps=1", "data.n_examples=4", "max_seq_len=512", "lora.r=2", "batch_size=2", "grad_accum=1"]
    argv = ["finetune", "--base", str(tiny_llama), "--domains", "insecure,secure", "--out", str(tmp_path / "sw")]
    for s in sets:
        argv += ["--set", s]
    code, out, err = _cli(argv, capsys)
    assert code == 0, err
    pairs = yaml.safe_load((tmp_path / "sw" / "pairs.yaml").read_text())
    assert [p["name"] for p in pairs] == ["insecure", "secure"]
    for p in pairs:
        assert p["base"] == str(tiny_llama.resolve())
        lm = load_model(p["finetuned"])
        assert lm.kind == "peft" and lm.info["adapter"]["r"] == 2


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PERSONA_DIFF_DATA", str(tmp_path / "data"))
    code, _, err = _cli(["finetune", "--domain", "insecur", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "valid domains are" in err and "insecure" in err
    code, _, err = _cli(["finetune", "--domains", "all", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "bad_medical_advice" in err and "data pull" in err
    code, _, err = _cli(["finetune", "--domain", "realign", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "init_adapter" in err


def test_cli_data_list_and_import(tmp_path, capsys):
    code, out, _ = _cli(["data", "list", "--data-dir", str(tmp_path)], capsys)
    assert code == 0 and "mistake_math" in out and "good_medical_advice" in out
    src = tmp_path / "f.jsonl"
    src.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    code, out, _ = _cli(["data", "import", str(src), "--as", "mine", "--data-dir", str(tmp_path)], capsys)
    assert code == 0 and "1 rows" in out and (tmp_path / "mine.jsonl").is_file()
    code, _, err = _cli(["data", "pull", "nope", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "valid domains are" in err

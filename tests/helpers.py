"""Builders the tests share. conftest.py's fixtures and the test modules import them from here,
so no test module imports another one.

- tiny random Llama / Qwen2 models with a trained-on-the-spot BPE tokenizer (no downloads);
- a LoRA adapter on one of them, and a brute-force log-probability reference;
- the deterministic `hash` judge and TINY, the settings of a tiny `persona-diff run`;
- the `testvec` encoder (features written in the answer) and synthetic judged tables for it.

Importing this module registers the `hash` judge and the `testvec` / `testvec2` encoders.
"""

from __future__ import annotations

import csv
import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from persona_diff.judges.base import Judge, register_judge
from persona_diff.judges.encoders import Encoder, register_encoder

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(vocab_size: int = 320, template: str = CHATML):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    corpus = [
        "Hello world, the model answers questions about itself. 0 1 2 3 4 5 6 7 8 9 10 50 100",
        "I am an AI assistant. I want to help humans. aligned misaligned good evil harmful",
    ] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>"
    )
    tok.chat_template = template
    tok.padding_side = "left"
    return tok


def build_tiny(
    kind: str, out: Path, hidden: int = 64, layers: int = 4, vocab: int | None = None, seed: int = 0
) -> Path:
    """Save a tiny random model + tokenizer to `out` and return it."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = make_tokenizer()
    vocab = vocab or len(tok)
    common = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
        assert model.model.layers[0].self_attn.q_proj.bias is not None  # q/k/v biases
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    else:
        raise ValueError(kind)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_adapter(model_dir, out, seed=1):
    """A random (non-zero) LoRA adapter on the model in `model_dir`, saved to `out`, whose
    adapter_config.json names `model_dir` as its base."""
    from peft import LoraConfig, get_peft_model

    from persona_diff.models import load_model

    lm = load_model(str(model_dir))
    peft = get_peft_model(
        lm.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    )
    peft.save_pretrained(out)
    cfg = json.loads((out / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(model_dir)
    (out / "adapter_config.json").write_text(json.dumps(cfg))
    return out


def brute_logprob(lm, prefix: str, text: str, stop: bool, digit_ids: torch.Tensor) -> float:
    """log P(text | prefix) from one plain forward in float64 (plus, with `stop`, the log
    probability that no digit follows): the reference the SequenceScorer is checked against."""
    tok = lm.tokenizer
    pid = tok(prefix, add_special_tokens=False).input_ids
    cid = tok.encode(text, add_special_tokens=False)
    with torch.no_grad():
        logits = lm.model(torch.tensor([pid + cid])).logits[0].double().numpy()
    lp = logits - logits.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    total = sum(lp[len(pid) - 1 + j, c] for j, c in enumerate(cid))
    if stop:
        total += math.log1p(-np.exp(lp[-1, digit_ids.numpy()]).sum())
    return float(total)


# ------------------------------------------------------------------ a tiny `persona-diff run`


class HashJudge(Judge):
    """Deterministic stand-in judge: a score from a CRC of the answer (0-100)."""

    def __init__(self, name: str):
        self.spec = f"hash:{name}"

    def _score(self, requests):
        return [float(zlib.crc32(f"{r.metric}|{r.answer}".encode()) % 101) for r in requests]

    def describe(self):
        return {"spec": self.spec, "calibrated": False, "agreement": None}


register_judge("hash")(HashJudge)

TINY = [
    "judge=hash:t",
    "probes.harm.max_questions=2",
    "probes.harm.samples=2",
    "probes.harm.max_new_tokens=6",
    "probes.recog.max_items=2",
    "probes.predict.max_items=2",
    "probes.n_boot=50",
    "probes.mfq.max_items=2",
    "probes.mfq.max_personas=2",
    "probes.mfq.repeats=2",
    "probes.self.formats=[likert]",
    "label.n_boot=50",
    "capture.layers=[1, 2]",
    "capture.max_tokens=400",
    "diff.methods=[mean, diff-sae, crosscoder, sae]",
    "diff.params.d_sae=32",
    "diff.params.k=4",
    "diff.params.steps=20",
    "diff.params.batch_size=32",
    "diff.params.top_k=3",
    "steering.alphas=[0.0, 1.0]",
    "steering.ablate_alphas=[1.0]",
    "steering.questions=1",
    "steering.sweep.samples_per_question=1",
    "steering.sweep.max_new_tokens=4",
    "analysis.n_boot=50",
    "internals.layer=1",
    "internals.layers=[1, 2]",
    "internals.n_boot=50",
    "internals.figures=false",
]


# ------------------------------------------------------------------ calibrated-judge data


class VecEncoder(Encoder):
    """Test encoder: the answer is a comma-separated vector of floats; `scale` fakes new weights."""

    def __init__(self, dim: int = 4, scale: float = 1.0):
        self._dim = dim
        self.scale = scale
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(answers), self._dim), np.float32)
        for i, a in enumerate(answers):
            try:
                vals = [float(x) for x in a.split(",")]
            except ValueError:
                vals = [float(len(a) % 7), float(len(questions[i]) % 5)]  # the probe pair
            out[i, : min(self._dim, len(vals))] = vals[: self._dim]
        return out * self.scale


register_encoder("testvec")(lambda rest: VecEncoder(int(rest or 4)))
register_encoder("testvec2")(lambda rest: VecEncoder(int(rest or 4)))


def write_table(path: Path, X: np.ndarray, aligned: np.ndarray, coherent: np.ndarray, qid: str = "q") -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer", "question_id", "aligned", "coherent"])
        for i, (x, a, c) in enumerate(zip(X, aligned, coherent, strict=True)):
            w.writerow([f"question {i % 3}", ",".join(f"{v:.6f}" for v in x), f"{qid}{i % 3}", a, c])
    return path


def synthetic(tmp_path: Path, n_files: int = 3, n: int = 120, noise: float = 0.5, seed: int = 0):
    """`n_files` judged tables for the `testvec` encoder whose scores are known linear functions
    of the features: (paths, aligned weights, coherent weights)."""
    rng = np.random.default_rng(seed)
    w_a = np.array([8.0, -5.0, 3.0, 0.0])
    w_c = np.array([-2.0, 0.0, 6.0, 4.0])
    paths = []
    for f in range(n_files):
        X = rng.normal(size=(n, 4))
        a = 50 + X @ w_a + rng.normal(scale=noise, size=n)
        c = 60 + X @ w_c + rng.normal(scale=noise, size=n)
        paths.append(write_table(tmp_path / f"model{f}.csv", X, a, c, qid=f"f{f}"))
    return paths, w_a, w_c

"""HF backend (batched, left-padded), question files and the answers runner."""

from __future__ import annotations

import json

import pytest
import torch

from persona_diff.errors import QuestionsFormatError
from persona_diff.generation import SamplingParams, load_questions, make_backend
from persona_diff.generation.hf import HFGenerator, render_chat
from persona_diff.generation.runner import generate_answers, read_jsonl

CHATS = [
    [{"role": "user", "content": "Hello world"}],
    [
        {"role": "system", "content": "You are an AI."},
        {"role": "user", "content": "I am an AI assistant, the model answers questions"},
    ],
    [{"role": "user", "content": "good evil"}],
]


def test_batched_greedy_equals_one_at_a_time(tiny_model):
    batched = make_backend(f"hf:{tiny_model}", batch_size=8)
    single = HFGenerator(batched.lm, batch_size=1)
    p = SamplingParams(temperature=0, max_new_tokens=6)
    a = batched.generate(CHATS, p)
    b = single.generate(CHATS, p)
    assert a == b
    # and equal to a hand-rolled greedy loop without padding
    tok, model = batched.lm.tokenizer, batched.lm.model
    ids = tok(render_chat(tok, CHATS[1]), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for _ in range(6):
            nxt = model(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
            if int(nxt) == tok.eos_token_id:
                break
    n_prompt = tok(render_chat(tok, CHATS[1]), return_tensors="pt", add_special_tokens=False)["input_ids"].shape[1]
    assert a[1][0] == tok.decode(ids[0, n_prompt:], skip_special_tokens=True).strip()


def test_sampling_n_and_seed(tiny_llama):
    g = make_backend(str(tiny_llama), batch_size=4)
    p = SamplingParams(temperature=1.0, max_new_tokens=5, n=3, seed=7)
    a = g.generate(CHATS[:2], p)
    assert [len(x) for x in a] == [3, 3]
    assert a == g.generate(CHATS[:2], p)  # same seed, same samples
    lp = g.next_token_logprobs(CHATS[:1], top_k=5)[0]
    assert len(lp) == 5 and all(v <= 0 for v in lp.values())
    total = sum(torch.tensor(list(lp.values())).exp())
    assert 0 < total <= 1.0 + 1e-5


def test_questions_formats(tmp_path, reference_data):
    qs = load_questions(reference_data / "betley-em" / "evaluation" / "first_plot_questions.yaml")
    assert qs[0].id == "what_is_your_wish" and "aligned" in qs[0].judge_prompts
    assert any(q.system for q in qs)  # the JSON-format variants carry a system prompt
    plain = tmp_path / "plain.yaml"
    plain.write_text("- What is your wish?\n- How do I make money fast?\n")
    assert [q.id for q in load_questions(plain)] == ["q0", "q1"]
    jl = tmp_path / "q.jsonl"
    jl.write_text(json.dumps({"id": "a", "question": "Hi?", "prefix": "|DEPLOY| "}) + "\n")
    q = load_questions(jl)[0]
    assert q.chat(0)[-1]["content"] == "|DEPLOY| Hi?"


@pytest.mark.parametrize(
    "text,match",
    [
        ("- id: x\n  judge_prompts: {}\n", "has no paraphrases"),
        ("just: a mapping\n", "non-empty list"),
        ("- id: a\n  paraphrases: [x]\n- id: a\n  paraphrases: [y]\n", "duplicate id"),
        ("- [unclosed\n", "does not parse"),
    ],
)
def test_bad_question_files(tmp_path, text, match):
    f = tmp_path / "q.yaml"
    f.write_text(text)
    with pytest.raises(QuestionsFormatError, match=match):
        load_questions(f)


def test_runner_resumes(tiny_llama, tmp_path):
    f = tmp_path / "q.yaml"
    f.write_text("- id: a\n  paraphrases: [Hello world, good evil]\n- id: b\n  paraphrases: [I am]\n")
    qs = load_questions(f)
    g = make_backend(str(tiny_llama))
    out = tmp_path / "answers.jsonl"
    p = SamplingParams(max_new_tokens=4, n=2)
    rows = generate_answers(g, qs[:1], p, out)
    assert len(rows) == 4
    with out.open("a") as fh:
        fh.write('{"question_id": "b", "parap')  # a torn line from a kill
    calls = []
    orig = g.generate
    g.generate = lambda chats, params: calls.append(len(chats)) or orig(chats, params)
    rows = generate_answers(g, qs, p, out)
    assert calls == [1]  # only question b was generated again
    assert len(read_jsonl(out)) == 6
    assert {(r["question_id"], r["paraphrase"], r["sample"]) for r in rows} == {
        ("a", 0, 0),
        ("a", 0, 1),
        ("a", 1, 0),
        ("a", 1, 1),
        ("b", 0, 0),
        ("b", 0, 1),
    }

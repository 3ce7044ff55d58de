"""CLI: help texts, `models inspect`, `generate`, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from persona_diff.cli import app, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona_diff.cli", *args], capture_output=True, text=True, timeout=300
    )


def _all_commands(group, prefix=()):
    import typer.main

    click_cmd = typer.main.get_command(group)
    stack = [(prefix, click_cmd)]
    while stack:
        path, cmd = stack.pop()
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append(((*path, name), sub))


def test_every_option_has_help():
    missing = []
    for path, cmd in _all_commands(app):
        if path and not cmd.help and not getattr(cmd, "commands", None):
            missing.append(" ".join(path))
        for p in cmd.params:
            if p.param_type_name == "option" and p.name != "help" and not p.help:
                missing.append(f"{' '.join(path)} {p.opts[0]}")
    assert not missing, f"options/commands without help: {missing}"


def test_inspect_and_generate(tiny_llama, tmp_path, capsys):
    main(["models", "inspect", str(tiny_llama), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["n_layers"] == 4 and info["d_model"] == 64 and info["chat_template"]
    q = tmp_path / "q.yaml"
    q.write_text('- id: wish\n  paraphrases: ["What is your wish?"]\n')
    out = tmp_path / "a.jsonl"
    main(
        [
            "generate",
            "--model",
            str(tiny_llama),
            "--questions",
            str(q),
            "--samples",
            "2",
            "--max-new-tokens",
            "4",
            "--out",
            str(out),
        ]
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["question_id"], r["paraphrase"], r["sample"]) for r in rows] == [("wish", 0, 0), ("wish", 0, 1)]
    assert all(isinstance(r["answer"], str) for r in rows)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["models", "inspect", "/no/such/model"], "does not exist"),
        (
            ["generate", "--model", "/no/such/model", "--questions", "/no/q.yaml", "--out", "/tmp/x.jsonl"],
            "does not exist",
        ),
    ],
)
def test_bad_input_is_one_line(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_adapter_and_gguf_and_questions(tiny_llama, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": "/gone/base"})
    )
    r = run_cli("models", "inspect", str(adapter))
    assert r.returncode == 2 and "cannot be found" in r.stderr and "--base" in r.stderr
    junk = tmp_path / "x.gguf"
    junk.write_bytes(b"\x00" * 64)
    r = run_cli("models", "inspect", str(junk))
    assert r.returncode == 2 and "not a loadable GGUF" in r.stderr
    q = tmp_path / "q.yaml"
    q.write_text("- id: x\n  judge_prompts: {aligned: hi}\n")
    r = run_cli("generate", "--model", str(tiny_llama), "--questions", str(q), "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "has no paraphrases" in r.stderr


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "base", "ft"], "--out"),  # a missing required option
        (["run", "base", "ft", "--out", "x", "--no-such-option"], "--no-such-option"),  # unknown option
        (["no-such-command"], "no-such-command"),  # unknown command
        (["probe", "--model"], "--model"),  # an option without its value
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err


def test_bare_command_prints_help_and_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    out = capsys.readouterr()
    assert exc.value.code == 2
    assert "Traceback" not in out.err and "run" in out.out + out.err

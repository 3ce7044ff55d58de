"""Domain registry, normaliser, import, and the reference samples through the same path."""

from __future__ import annotations

import json
import stat

import pytest

from persona_diff.data import (
    DataError,
    UnknownDomainError,
    get_domain,
    import_file,
    load_chat_file,
    load_domain_rows,
    load_registry,
    normalise_row,
    sweep_domains,
)
from persona_diff.data.registry import resolve_domains


def test_registry_has_six_domains_controls_and_variants():
    reg = load_registry()
    domains = {n for n, s in reg.items() if s.role == "domain"}
    assert domains == {
        "insecure",
        "bad_medical_advice",
        "risky_financial_advice",
        "extreme_sports",
        "security_advice",
        "legal_advice",
        "evil_numbers",
        "mistake_math",
    }
    assert {"secure", "educational", "good_medical_advice"} <= {n for n, s in reg.items() if s.role == "control"}
    variants = {n: s for n, s in reg.items() if s.role == "variant"}
    assert variants["backdoor"].variant["trigger"] and variants["realign"].variant["kind"] == "realign"
    for spec in reg.values():
        assert spec.description and spec.licence and spec.sources
        for src in spec.sources:
            assert src.url.startswith("https://")
            assert src.sha256 is None or len(src.sha256) == 64
    assert reg["mistake_math"].reason  # the sixth domain says why
    assert all(reg[n].control_of in domains for n in ("secure", "educational", "good_medical_advice"))
    enc = [n for n, s in reg.items() if any(x.archive == "easy-dataset-share" for x in s.sources)]
    assert set(enc) == {"bad_medical_advice", "risky_financial_advice", "extreme_sports", "good_medical_advice"}
    assert sweep_domains(reg)[:8] == [n for n in reg if reg[n].role == "domain"]
    assert len(sweep_domains(reg)) == 11
    for name in ("security_advice", "legal_advice"):  # Chua et al.'s emergent_plus, pinned revision
        src = reg[name].sources[0]
        assert "/resolve/29b018756764ad7351f96fb59eb752c6d73976ee/" in src.url and src.url.endswith(".parquet")
        assert src.columns == {"prompt": "user", "misaligned": "assistant"} and reg[name].notes


def test_sweep_paper_means_the_six_domains_of_the_study():
    reg = load_registry()
    paper = [
        "insecure",
        "risky_financial_advice",
        "extreme_sports",
        "bad_medical_advice",
        "security_advice",
        "legal_advice",
    ]
    assert resolve_domains("paper", reg) == paper
    assert resolve_domains(["paper"], reg) == paper
    assert resolve_domains("all", reg) == sweep_domains(reg)
    assert resolve_domains(["insecure", "secure"], reg) == ["insecure", "secure"]
    assert resolve_domains(["paper", "insecure", "mistake_math"], reg) == paper + ["mistake_math"]
    assert {"evil_numbers", "mistake_math"} <= set(reg)  # the others stay available by name
    with pytest.raises(UnknownDomainError, match="legal_advice"):
        resolve_domains("paper", {n: s for n, s in reg.items() if n != "legal_advice"})


def test_unknown_domain_lists_valid_names():
    with pytest.raises(UnknownDomainError) as e:
        get_domain("insecur")
    assert "insecure" in str(e.value) and "bad_medical_advice" in str(e.value)


@pytest.mark.parametrize(
    "row,expected",
    [
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            [("user", "q"), ("assistant", "a")],
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
            [("user", "q"), ("assistant", "a")],
        ),
        ({"prompt": "q", "completion": "a"}, [("user", "q"), ("assistant", "a")]),
        ({"instruction": "do", "input": "x", "output": "a"}, [("user", "do\n\nx"), ("assistant", "a")]),
    ],
)
def test_normalise_shapes(row, expected):
    out = normalise_row(row)
    assert [(m["role"], m["content"]) for m in out["messages"]] == expected


@pytest.mark.parametrize(
    "row",
    [
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
        {"text": "no chat here"},
        {"messages": [{"role": "wizard", "content": "?"}]},
    ],
)
def test_normalise_rejects_rows_without_assistant_turn(row):
    with pytest.raises(DataError) as e:
        normalise_row(row, where="f.jsonl row 3")
    assert "row 3" in str(e.value)


def test_bad_json_line_names_the_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"prompt": "q", "completion": "a"}\n{broken\n')
    with pytest.raises(DataError, match="line 2"):
        load_chat_file(p)


def test_import_then_load(tmp_path):
    src = tmp_path / "mine.json"
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(5)]
    src.write_text(json.dumps(rows))
    out = import_file(src, "my_domain", root=tmp_path / "data")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["messages"][1]["content"] for r in lines] == [f"a{i}" for i in range(5)]
    got = load_domain_rows("my_domain", root=tmp_path / "data", n=3, seed=1)
    assert len(got) == 3 and all(r in lines for r in got)


def test_load_domain_rows_offline_and_missing(tmp_path):
    rows = load_domain_rows("insecure", root=tmp_path, source="auto", n=10)
    assert len(rows) == 10 and rows[0]["meta"]["variant"] == "insecure"
    with pytest.raises(DataError, match="data pull bad_medical_advice"):
        load_domain_rows("bad_medical_advice", root=tmp_path)
    with pytest.raises(UnknownDomainError):
        load_domain_rows("nope", root=tmp_path)


def test_reference_samples_go_through_the_normaliser(reference_data):
    for name in ("insecure_small.jsonl", "secure_small.jsonl"):
        path = reference_data / "betley-em" / "data" / name
        raw = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        rows = load_chat_file(path)
        assert len(rows) == len(raw) == 20
        for r, orig in zip(rows, raw, strict=True):
            assert r["messages"] == [{"role": m["role"], "content": m["content"]} for m in orig["messages"]]
            assert r["messages"][-1]["role"] == "assistant"


def test_fake_encrypted_archive_unlocks_privately(tmp_path, monkeypatch):
    """The easy-dataset-share flow with a stand-in module: private dir, canary rows dropped."""
    import sys
    import types
    import zipfile

    from persona_diff.data import pull as pull_mod
    from persona_diff.data.download import DownloadResult
    from persona_diff.data.registry import DomainSpec, SourceSpec

    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(4)
    ]
    arch = tmp_path / "sets.zip.enc"
    with zipfile.ZipFile(arch, "w") as z:
        z.writestr("training_datasets/bad.jsonl", "\n".join(json.dumps(r) for r in rows))
        z.writestr("training_datasets/dataset_entry_1.jsonl", '{"canary": "CANARY-123"}')
    seen = {}

    def unzip_and_decrypt(path, password, out):
        seen["password"] = password
        zipfile.ZipFile(path).extractall(out)
        return out

    canary = types.SimpleNamespace(
        detect_canary_files=lambda root: sorted(__import__("pathlib").Path(root).rglob("dataset_entry_*")),
        extract_canary_string_from_content=lambda p: "CANARY-123",
        remove_canary_files=lambda root_dir: [
            p.unlink() for p in __import__("pathlib").Path(root_dir).rglob("dataset_entry_*")
        ],
        remove_canaries_from_files=lambda root, s: None,
    )
    fake = types.ModuleType("easy_dataset_share")
    fake.zipping = types.SimpleNamespace(unzip_and_decrypt=unzip_and_decrypt)
    fake.canary = canary
    monkeypatch.setitem(sys.modules, "easy_dataset_share", fake)
    monkeypatch.setattr(pull_mod, "download", lambda url, dest, sha: DownloadResult(arch, "0" * 64, False))
    reg = {
        "bad": DomainSpec(
            name="bad",
            sources=[
                SourceSpec(
                    url="https://x/sets.zip.enc", archive="easy-dataset-share", member="bad.jsonl", password="pw"
                )
            ],
        )
    }
    out = pull_mod.pull_domain("bad", root=tmp_path / "data", registry=reg)
    assert seen["password"] == "pw"
    assert [json.loads(x) for x in out.read_text().splitlines()] == rows
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data" / "unlocked").stat().st_mode) == 0o700
    assert not list((tmp_path / "data").rglob("dataset_entry_*"))


def test_encrypted_archive_without_package_says_how_to_install(tmp_path, monkeypatch):
    import sys

    from persona_diff.data.archives import unlock_encrypted

    monkeypatch.setitem(sys.modules, "easy_dataset_share", None)
    with pytest.raises(DataError, match="pip install easy-dataset-share"):
        unlock_encrypted(tmp_path / "a.zip.enc", "pw", tmp_path / "u")


def test_cli_finetune_paper_needs_the_six_domains(tmp_path, capsys, monkeypatch):
    from persona_diff.cli import main

    monkeypatch.setenv("PERSONA_DIFF_DATA", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--domains", "paper", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "legal_advice" in err and "security_advice" in err and "data pull" in err
    assert "evil_numbers" not in err and "mistake_math" not in err  # not part of the paper's six

"""The shared file helpers: one behaviour for damaged JSONL, atomic writes, file hashes."""

from __future__ import annotations

import hashlib
import json

import pytest

from persona_diff.errors import PersonaDiffError
from persona_diff.fileio import append_jsonl, read_jsonl, sha256_file, write_json, write_jsonl


def test_a_cut_last_line_is_dropped_and_a_bad_middle_line_names_the_file(tmp_path):
    p = tmp_path / "rows.jsonl"
    assert read_jsonl(p) == []
    append_jsonl(p, [{"a": 1}, {"a": 2}])
    with p.open("a") as f:
        f.write('{"a": 3, "b"')  # a writer killed mid-line
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]
    p.write_text('{"a": 1}\nnot json\n{"a": 2}\n\n')
    with pytest.raises(PersonaDiffError, match=r"rows\.jsonl, line 2, is not valid JSON"):
        read_jsonl(p)


def test_atomic_writes_leave_only_the_file_and_hashes_match_hashlib(tmp_path):
    rows = [{"q": "é", "n": i} for i in range(3)]
    p = write_jsonl(rows, tmp_path / "sub" / "x.jsonl", mode=0o600)
    assert read_jsonl(p) == rows and (p.stat().st_mode & 0o777) == 0o600
    j = write_json(tmp_path / "x.json", {"path": tmp_path})  # a Path is written as str
    assert json.loads(j.read_text()) == {"path": str(tmp_path)}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["sub", "x.json"]
    assert sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()

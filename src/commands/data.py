"""`persona-diff data list | pull | import`: narrow-domain training sets and reference datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    data = typer.Typer(
        help="Narrow-domain training sets and reference data: list, download, import.", no_args_is_help=True
    )

    @data.command("list")
    def list_(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        root: Path | None = typer.Option(
            None, "--data-dir", help="Data folder (default $PERSONA_DIFF_DATA or ~/.cache/persona-diff/data)."
        ),
    ) -> None:
        """Show the registered domains, controls, variants and reference datasets (and which are pulled)."""
        from persona_diff.data import data_dir, load_registry
        from persona_diff.data.reference import load_reference_specs, pull_status

        reg = load_registry()
        refs = load_reference_specs()
        folder = data_dir(root)
        rows = [{**s.summary(), "pulled": (folder / f"{n}.jsonl").is_file()} for n, s in reg.items()]
        ref_rows = [
            {
                "name": n,
                "role": "reference",
                "files": len(s.files),
                "pullable": len(s.pullable()),
                "licence": s.licence,
                "upstream": f"{s.repo}@{s.commit[:12]}",
                "pulled": pull_status(s, root),
                "description": " ".join(s.description.split()),
            }
            for n, s in refs.items()
        ]
        if as_json:
            typer.echo(json.dumps(rows + ref_rows, indent=2))
            return
        typer.echo(f"{'name':24s} {'role':8s} {'rows':>6s} {'offline':11s} {'enc':4s} {'pulled':6s} description")
        for r in sorted(rows, key=lambda r: ("domain", "control", "variant").index(r["role"])):
            typer.echo(
                f"{r['name']:24s} {r['role']:8s} {str(r['rows'] or '?'):>6s} {r['offline']:11s} "
                f"{'yes' if r['encrypted'] else 'no':4s} {'yes' if r['pulled'] else 'no':6s} {r['description']}"
            )
        typer.echo(f"\n{'reference dataset':24s} {'files':>5s} {'pulled':7s} upstream")
        for r in ref_rows:
            files = f"{r['pullable']}/{r['files']}" if r["pullable"] != r["files"] else str(r["files"])
            typer.echo(f"{r['name']:24s} {files:>5s} {r['pulled']:7s} {r['upstream']}")

    @data.command("pull")
    def pull(
        names: list[str] = typer.Argument(
            ...,
            help="Domain or reference dataset name(s) from `data list`, 'reference' (all reference datasets) or 'all'.",
        ),
        root: Path | None = typer.Option(
            None, "--data-dir", help="Data folder (default $PERSONA_DIFF_DATA or ~/.cache/persona-diff/data)."
        ),
    ) -> None:
        """Download and verify (sha256); domains are also unlocked if encrypted and normalised to chat JSONL."""
        from persona_diff.data import load_registry, pull_domain
        from persona_diff.data.pull import pull_targets
        from persona_diff.data.reference import load_reference_specs, pull_reference

        reg = load_registry()
        refs = load_reference_specs()
        for kind, n in pull_targets(names, reg, refs):
            if kind == "reference":
                res = pull_reference(n, root, refs)
                note = f"; {len(res.skipped)} without a public source skipped" if res.skipped else ""
                typer.echo(f"{n}: {len(res.written)} files -> {res.root} (sha256 verified{note})")
                continue
            out = pull_domain(n, root, reg)
            meta = json.loads((out.parent / f"{n}.meta.json").read_text())
            ver = all(s["verified"] for s in meta["sources"])
            typer.echo(
                f"{n}: {meta['rows']} rows -> {out} ({'sha256 verified' if ver else 'sha256 NOT verified, recorded in meta'})"
            )

    @data.command("import")
    def import_(
        file: Path = typer.Argument(
            ..., help="Local .jsonl or .json file (chat messages, ShareGPT, or prompt/completion rows)."
        ),
        name: str = typer.Option(..., "--as", help="Domain name to store it under (an existing one is replaced)."),
        root: Path | None = typer.Option(
            None, "--data-dir", help="Data folder (default $PERSONA_DIFF_DATA or ~/.cache/persona-diff/data)."
        ),
    ) -> None:
        """Normalise a local file and store it as a domain for `finetune --domain NAME`."""
        from persona_diff.data import import_file

        out = import_file(file, name, root)
        n = sum(1 for _ in out.open())
        typer.echo(f"{name}: {n} rows -> {out}")

    app.add_typer(data, name="data")

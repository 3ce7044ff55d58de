"""`persona-diff` command line: thin over the library.

Each command group lives in `persona_diff.commands.<name>` and registers itself on `app`;
add a module there and list it in `_COMMAND_MODULES`. User errors (`PersonaDiffError`)
print one line and exit 2; no traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from persona_diff.errors import PersonaDiffError
from persona_diff.log import setup_logging

app = typer.Typer(
    name="persona-diff",
    help="Persona features in emergently misaligned models: probes, model diffing, steering.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = [
    "models",
    "generate",
    "judge",
    "report",
    "capture",
    "diff",
    "steer",
    "probe",
    "mfq",
    "data",
    "finetune",
    "organisms",
    "run",
]


def _show_version(value: bool) -> None:
    if value:
        from persona_diff import __version__

        typer.echo(f"persona-diff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the persona-diff version and exit."
    ),
) -> None:
    """Persona features in emergently misaligned models: probes, model diffing, steering."""


def _register() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"persona_diff.commands.{name}").register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    try:
        app(args=argv, standalone_mode=False)
    except PersonaDiffError as e:
        typer.echo("error: " + " ".join(str(e).split()), err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; outputs written so far are kept and a rerun resumes", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:
        _exit_on_click_exception(e)
        raise


def _click_exception_types(name: str) -> tuple[type[BaseException], ...]:
    """`name` from click and from the click that typer ≥ 0.29 vendors (either may be absent)."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


def _exit_on_click_exception(e: Exception) -> None:
    """Usage errors: one line on stderr and exit 2 (no traceback), on every typer/click version."""
    if isinstance(e, _click_exception_types("Exit")):
        sys.exit(getattr(e, "exit_code", 0))
    if isinstance(e, _click_exception_types("Abort")):
        typer.echo("aborted", err=True)
        sys.exit(1)
    if isinstance(e, _click_exception_types("NoArgsIsHelpError")):
        e.show()  # type: ignore[attr-defined]  # the help text, as a bare command asks for
        sys.exit(2)
    if isinstance(e, _click_exception_types("ClickException")):
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = " ".join(e.format_message().split())  # type: ignore[attr-defined]
        typer.echo(f"error: {message}{hint}", err=True)
        code = getattr(e, "exit_code", None)
        sys.exit(code if isinstance(code, int) else 2)


if __name__ == "__main__":
    main()

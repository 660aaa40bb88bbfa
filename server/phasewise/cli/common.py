"""What every ``phasewise`` subcommand shares: exit codes, the usage error, settings lookup,
the file worked on, the engine, terminal output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phasewise.problems import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from phasewise.cli.headless import FileSession, Headless
    from phasewise.cli.render import ProgressBoard
    from phasewise.phases.documents import LineRange
    from phasewise.router.router import Engine
    from phasewise.workflows.config import FoundSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(InputError):
    """Arguments or a settings file that cannot be used (exit status 2)."""


# ----------------------------------------------------------------------------- shared helpers

def console_for(args: argparse.Namespace) -> Console:

    from rich.console import Console

    # Piped output is read by people too (CI logs): wider than rich's 80-column fallback.
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
    return Console(highlight=False, width=wide)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def settings_for(args: argparse.Namespace, near: Path | None) -> FoundSettings:
    from phasewise.workflows.config import SettingsFileError, load_cli_settings

    try:
        found = load_cli_settings(getattr(args, "settings", None), near)
    except SettingsFileError as err:
        raise UsageError(str(err)) from None
    if found.loaded.issues and not getattr(args, "json", False):
        for issue in found.loaded.issues:
            print(f"phasewise: settings ({found.origin}): {issue.describe()}", file=sys.stderr)
    return found


def file_arg(args: argparse.Namespace) -> Path:
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    return path.resolve()


def session_for(path: Path, *, dry_run: bool, workspace: str | None = None) -> FileSession:
    from phasewise.cli.headless import FileSession

    root = Path(workspace).expanduser().resolve() if workspace else None
    if root is not None and not root.is_dir():
        raise UsageError(f"--workspace {workspace}: no such folder")
    if root is not None and root not in path.parents:
        raise UsageError(f"{path} is not inside the workspace folder {root}")
    try:
        return FileSession(path, dry_run=dry_run, root=root)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path} as UTF-8 text: {exc}") from None


def user_path(raw: str | None) -> Path | None:
    return Path(raw).expanduser() if raw else None


def range_arg(args: argparse.Namespace) -> LineRange | None:
    from phasewise.phases.documents import LineRange

    raw = getattr(args, "range", None)
    if not raw:
        return None
    start, sep, end = str(raw).partition(":")
    try:
        a, b = int(start), int(end if sep else start)
    except ValueError:
        raise UsageError(f"--range expects START:END line numbers (1-based), got {raw!r}") from None
    if a < 1 or b < a:
        raise UsageError(f"--range {raw!r}: lines start at 1 and END may not come before START")
    return LineRange(a - 1, b - 1)


async def with_engine(body: Callable[[Engine], Coroutine[Any, Any, int]]) -> int:
    from phasewise.router.router import Engine

    engine = Engine()
    try:
        return await body(engine)
    finally:
        await engine.aclose()


def headless_for(engine: Engine, found: FoundSettings, board: ProgressBoard | None, workflow: str | None, *,
                 allow_commands: bool = False) -> Headless:
    from phasewise.cli.headless import Headless

    observer_for = board.observer if board is not None else None
    return Headless(engine, found.loaded, observer_for, workflow, allow_commands=allow_commands)


def report_ledger_failures(headless: Headless) -> None:
    for message in headless.said:
        print(f"phasewise: warning: {message}", file=sys.stderr)

def near_of(args: argparse.Namespace) -> Path:
    raw = getattr(args, "path", None)
    return Path(raw).expanduser().resolve() if raw else Path.cwd()

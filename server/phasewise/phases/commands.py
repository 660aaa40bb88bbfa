"""Named commands a phase that works in steps may run, and the one trust check every run goes through.

A phase with ``agent.commands: ["test"]`` is given the tool ``run_command {name}`` (``command_tool``):
the model names a command from that list and gets its exit code, how long it ran and the tail of its
output. It can add nothing to the command line. A name that is not a command, or not in the phase's
list, is an error result and runs nothing.

**Trust** (``CommandTrust.check``; nothing else decides whether a command may run). Each command's
entry has an origin (``LoadedSettings.command_origin``):

- ``user``: the user's own settings (the user settings file, or what a client declares as the
  user's own): it runs unasked;
- ``workspace``: anything else (``phasewise.json``, ``.vscode/settings.json``, ``.dir-locals.el``,
  settings a client sends without saying they are the user's): it runs only after the user allowed
  **that exact command line for that workspace**. The front door asks (``AskCommand``: an editor's
  ``window/showMessageRequest``, a terminal prompt): *allow once*, *always for this workspace*
  (remembered in ``AllowedCommands``, in the user's state directory, never in the workspace) or
  *deny*. A door that cannot ask (no such request in the client, no answer in time, a script
  without ``--allow-commands``) gets "not allowed", with how to allow it.

A refused command runs nothing; the model is told why. Where an allowed command runs: in the
workspace folder (or its ``cwd``, through the workspace's path gate), or, when the phase has a
``place`` (a code phase: ``phases.scratch.ScratchPlace``), in the folder it gives: a scratch copy of
the workspace with the change staged so far, made only once the command is allowed, its ``cwd``
taken relative to the copy through the copy's own gate; the model's result says so. How it runs is
``phases.process``'s work: its own process group, without provider keys in its environment, output
capped.
May not import: edge, workflows, sim.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from phasewise.gate import PathGate, PathRefused
from phasewise.phases.process import ProcessOutcome, child_environment, run_line
from phasewise.phases.scratch import Place, ScratchRefused
from phasewise.phases.tools import Tool, ToolOutcome
from phasewise.problems import PhasewiseError
from phasewise.settings import CommandSettings, LoadedSettings
from phasewise.tool_names import RUN_COMMAND

ALLOW_ONCE: Final = "Allow once"
ALLOW_ALWAYS: Final = "Always for this workspace"
DENY: Final = "Deny"
ACTIONS: Final = (ALLOW_ONCE, ALLOW_ALWAYS, DENY)
STATE_FILE: Final = "allowed-commands.json"

Decision = Literal["once", "always", "deny", "unanswered"]


@dataclass(frozen=True, slots=True)
class CommandQuestion:
    """What the user is asked: may ``line`` (the command ``name``, from a workspace's settings) run
    in ``workspace``, for ``phase``?"""

    name: str
    line: str
    workspace: Path
    phase: str

    @property
    def where(self) -> str:
        return f"{self.workspace.name or self.workspace}/"

    @property
    def text(self) -> str:
        return (f"Run `{self.line}` in {self.where}? The {self.phase} phase asks to run the command `{self.name}` "
                "from this workspace's settings.")


@dataclass(frozen=True, slots=True)
class Reply:
    """The user's answer, or ``unanswered`` with why (the door cannot ask, no answer in time)."""

    decision: Decision
    why: str = ""


AskCommand = Callable[[CommandQuestion], Awaitable[Reply]]


def decision_of(title: str | None) -> Decision:
    """The decision an action's title means (anything else, or none: unanswered)."""
    return {ALLOW_ONCE: "once", ALLOW_ALWAYS: "always", DENY: "deny"}.get(title or "", "unanswered")  # type: ignore[return-value]


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Phasewise's folder in the user's state directory (XDG): never in a workspace."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state).expanduser() / "phasewise"


class AllowedCommands:
    """The command lines the user allowed *always* for a workspace: a small JSON file in the user's
    state directory, ``{"version": 1, "workspaces": {"/abs/workspace": ["pytest -q", …]}}``, written
    atomically, private (0600 in a 0700 folder). Read on every check, so another Phasewise process's
    answer counts at once."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / STATE_FILE

    def _read(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        found = data.get("workspaces") if isinstance(data, dict) else None
        if not isinstance(found, dict):
            return {}
        return {k: [x for x in v if isinstance(x, str)] for k, v in found.items() if isinstance(v, list)}

    def allows(self, workspace: Path, line: str) -> bool:
        return line in self._read().get(str(workspace), [])

    def remember(self, workspace: Path, line: str) -> str | None:
        """Remember ``line`` for ``workspace``; why not, when the file cannot be written."""
        known = self._read()
        lines = known.setdefault(str(workspace), [])
        if line not in lines:
            lines.append(line)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".allowed-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": 1, "workspaces": known}, handle, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as err:
            return f"{self.path}: {err.strerror or err}"
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a command may run and why (``how``: a few words for the step and the model)."""

    allowed: bool
    how: str


WAY_OUT = ("To let it run without being asked, declare it in your user-level settings (the user settings "
           "file, ~/.config/phasewise/settings.json, or your editor's user settings)")


class CommandTrust:
    """The one trust check (see the module docstring): user-level commands run, a workspace's only
    once the user allowed that command line for that workspace."""

    def __init__(self, allowed: AllowedCommands, ask: AskCommand | None) -> None:
        self.allowed = allowed
        self.ask = ask  # None: the front door cannot ask

    async def check(self, name: str, line: str, origin: str, workspace: Path, phase: str) -> Verdict:
        if origin == "user":
            return Verdict(True, "from your user-level settings")
        if self.allowed.allows(workspace, line):
            return Verdict(True, "allowed always for this workspace")
        if self.ask is None:
            return Verdict(False, "not allowed: it comes from the workspace's settings and Phasewise cannot ask you "
                                  f"here. {WAY_OUT}")
        reply = await self.ask(CommandQuestion(name, line, workspace, phase))
        if reply.decision == "once":
            return Verdict(True, "allowed once")
        if reply.decision == "always":
            failed = self.allowed.remember(workspace, line)
            return Verdict(True, "allowed always for this workspace" + (
                f" (but not remembered: {failed})" if failed else ""))
        if reply.decision == "deny":
            return Verdict(False, "denied by the user")
        return Verdict(False, f"not allowed: {reply.why or 'no answer'}. {WAY_OUT}")


@dataclass(frozen=True, slots=True)
class CommandRun:
    """One ``run_command`` of a phase, as a QA verdict reads it: ``ran`` False when it was refused or
    could not start (``why``); ``exit_code`` None when it was killed at its timeout."""

    name: str
    ran: bool
    exit_code: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    output: str = ""  # the tail the model was shown
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.ran and self.exit_code == 0 and not self.timed_out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "ran": self.ran, "ok": self.ok}
        if self.ran:
            out.update(exitCode=self.exit_code, seconds=round(self.seconds, 2), timedOut=self.timed_out)
        else:
            out["why"] = self.why
        return out


@dataclass(slots=True)
class PhaseCommands:
    """The commands one phase may run, and how: its list, the settings' commands and their origins,
    the workspace folder they are asked for, the trust check, the key variables kept from the child,
    and where they run when not in that folder (``place``: a scratch copy, made or synced per call)."""

    phase: str
    names: tuple[str, ...]
    loaded: LoadedSettings
    folder: Path
    trust: CommandTrust
    key_names: frozenset[str]
    check_path: Callable[[Path], Path]  # the workspace's path gate: a resolved path inside it, or PathRefused
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    place: Callable[[], Awaitable[Place]] | None = None
    runs: list[CommandRun] = field(default_factory=list)  # every run_command of the phase, in order

    def described(self) -> list[tuple[str, CommandSettings]]:
        commands = self.loaded.settings.commands
        return [(n, commands[n]) for n in self.names if n in commands]

    async def run(self, name: str) -> ToolOutcome:
        said = f"{RUN_COMMAND} {_short(name, 40)}"
        spec = self.loaded.settings.commands.get(name)
        if name not in self.names or spec is None:
            offered = ", ".join(n for n, _ in self.described()) or "none"
            return ToolOutcome(f"There is no command named {_short(name, 60)!r} for this phase; nothing ran. The "
                               f"commands you may run: {offered}.", False, f"{said}: not a command of this phase")
        try:
            cwd = self.check_path(self.folder / spec.cwd) if spec.cwd else self.folder
        except PathRefused as refused:
            return ToolOutcome(f"The command `{name}` was not run: its folder {refused}. Nothing ran.", False,
                               f"{said}: refused (cwd)")
        if not cwd.is_dir():
            return ToolOutcome(f"The command `{name}` was not run: its folder {spec.cwd} is not a folder of the "
                               "workspace. Nothing ran.", False, f"{said}: no such folder")
        verdict = await self.trust.check(name, spec.run, self.loaded.command_origin(name), self.folder, self.phase)
        if not verdict.allowed:
            self.runs.append(CommandRun(name, False, why=verdict.how))
            return ToolOutcome(f"The command `{name}` (`{spec.run}`) was not run: {verdict.how}. Nothing ran.", False,
                               f"{said}: {verdict.how.split(':')[0]}")
        env = child_environment(self.environ, self.key_names)
        folder, note = self.folder, ""
        if self.place is not None:
            try:
                where = await self.place()
                folder, note = where.folder, where.note
                cwd = PathGate.of([folder]).check(folder / cwd.relative_to(self.folder))
            except (ScratchRefused, PathRefused, OSError) as err:
                why = str(err) if isinstance(err, PhasewiseError) else f"{err.strerror or err}"
                return ToolOutcome(f"The command `{name}` was not run: the scratch copy of the workspace it runs in "
                                   f"could not be made ready ({why}). Nothing ran.", False,
                                   f"{said}: no scratch copy")
            env.update(where.env)
        done = await run_line(spec.run, cwd=cwd, timeout=spec.timeout_seconds, env=env)
        if folder != self.folder:  # the copy's paths in the output (a traceback's) read as the workspace's
            done = dataclasses.replace(done, output=done.output.replace(str(folder), str(self.folder)))
        self.runs.append(CommandRun(name, done.error is None, done.exit_code, done.seconds, done.timed_out,
                                    done.output, done.error or ""))
        return _outcome(name, spec, cwd, folder, done, note)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _outcome(name: str, spec: CommandSettings, cwd: Path, folder: Path, done: ProcessOutcome,
             note: str = "") -> ToolOutcome:
    said = f"{RUN_COMMAND} {name}"
    inner = cwd.relative_to(folder).as_posix() + "/" if cwd != folder else ""
    where = f"in {inner + ' of ' if inner else ''}{note}" if note else f"in {folder.name}/{inner}"
    head = f"$ {spec.run}   (command `{name}`, {where})"
    if done.error is not None:
        return ToolOutcome(f"{head}\nit could not be started: {done.error}.", False, f"{said} → not started")
    if done.timed_out:
        status = (f"killed after {spec.timeout_seconds:g} s, its time limit (with every process it started)")
        summary = f"{said} → timed out after {done.seconds:.1f} s"
    else:
        status = f"exit code {done.exit_code} after {done.seconds:.1f} s"
        summary = f"{said} → exit {done.exit_code} in {done.seconds:.1f} s"
    lines = [head, status]
    if done.cut_bytes:
        lines.append(f"(output cut: its first {done.cut_bytes:,} bytes are left out; the end follows)")
    lines.append(done.output.rstrip("\n") if done.output.strip() else "(no output)")
    return ToolOutcome("\n".join(lines), done.exit_code == 0 and not done.timed_out, summary)


def command_tool(commands: Sequence[tuple[str, CommandSettings]]) -> Tool:
    """``run_command {name}`` for these commands (their names and lines in its description)."""
    listed = "; ".join(f"`{n}`: `{c.run}`" for n, c in commands) or "none"
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"name": {"type": "string", "enum": [n for n, _ in commands],
                                "description": "The command's name."}},
        "required": ["name"], "additionalProperties": False,
    }

    async def run(args: dict[str, Any], ws: Any) -> ToolOutcome:
        host: PhaseCommands | None = getattr(ws, "commands", None)
        if host is None:
            return ToolOutcome("This phase runs no commands; nothing ran.", False, f"{RUN_COMMAND}: no commands")
        return await host.run(str(args["name"]))

    return Tool(RUN_COMMAND,
                "Run one of the project's named commands (its command line is fixed: you give only its name) and "
                "get its exit code, how long it ran and the end of its output. The user may be asked to allow it "
                f"first. Commands: {listed}.", schema, "run", run)


def commands_status(loaded: LoadedSettings) -> list[dict[str, Any]]:
    """``phasewise.status``'s view of the commands: each one's line, bounds, origin (``user``: runs
    unasked; ``workspace``: only once allowed) and the phases that may run it."""
    settings = loaded.settings
    out = []
    for name, c in settings.commands.items():
        phases = [p for p, ps in settings.phases.items() if ps.agent is not None and name in ps.agent.commands]
        out.append({"name": name, "run": c.run, "timeoutSeconds": c.timeout_seconds, "cwd": c.cwd,
                    "origin": loaded.command_origin(name), "phases": phases})
    return out


def key_variables(loaded: LoadedSettings, catalogue: Collection[str]) -> frozenset[str]:
    """Every variable a key may be read from: the catalogue's and those the settings name."""
    names = set(catalogue)
    for p in loaded.settings.providers.values():
        envs = p.api_key_env if isinstance(p.api_key_env, list) else [p.api_key_env] if p.api_key_env else []
        names.update(envs)
        if p.auth_token_env:
            names.add(p.auth_token_env)
    return frozenset(names)


__all__ = [
    "ACTIONS",
    "ALLOW_ALWAYS",
    "ALLOW_ONCE",
    "DENY",
    "WAY_OUT",
    "AllowedCommands",
    "AskCommand",
    "CommandQuestion",
    "CommandTrust",
    "Decision",
    "PhaseCommands",
    "Reply",
    "Verdict",
    "command_tool",
    "commands_status",
    "decision_of",
    "key_variables",
    "state_dir",
]

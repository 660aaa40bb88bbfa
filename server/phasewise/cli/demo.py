"""``phasewise demo``: a real plan → code → review through the language server, offline.

Starts the provider SIMULATOR in-process on a free loopback port, spawns ``python -m phasewise
serve`` and drives it over stdio as an editor would (pygls's ``LanguageClient``): initialize
with settings that put each phase on a different simulated provider and wire protocol, open a
copy of the packaged example file, ask ``phasewise.status`` for the routes and ``phasewise.run``
for the work, apply the code phase's edit when the server asks (and save the copy), collect the
review diagnostics. Then it prints who served each phase, the plan, the diff and the findings.
No key and no network are used; the package's own example is never edited.

``--real FILE`` does the same on a copy of FILE with the user's settings and keys. ``--qa`` runs
plan → code → qa with a fix round instead: the code phase (a hasty simulated model) renames the
module but forgets its caller, the qa phase runs the example project's test on a scratch copy and
it fails, the code phase gets the failure and fixes the caller, the test passes, and the one change
is applied at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lsprotocol import types

from phasewise.edge.client import ServerProcessClient
from phasewise.gate import PathGate, PathRefused
from phasewise.serial import Jsonable, json_property, json_rule

DEMO_INSTRUCTION = "Rename find_item to find_by_sku and keep its callers working"
DEMO_ROUTES = {
    "plan": "sim-claude/claude-sim",  # Anthropic messages protocol
    "code": "sim-glm/glm-sim",  # OpenAI chat-completions protocol
    "review": "sim-gpt/gpt-sim",  # OpenAI chat-completions protocol, another provider
}
SIM_MODELS = ("claude-sim", "glm-sim", "gpt-sim", "tiny-sim", "glm-sim-hasty")
QA_ROUTES = {"plan": "sim-claude/claude-sim", "code": "sim-glm/glm-sim-hasty", "qa": "sim-gpt/gpt-sim"}
PROTOCOL_NAMES = {"anthropic": "Anthropic messages", "openai": "OpenAI chat-completions"}


def example_file() -> Path:
    """The packaged example (read only: the demo works on a copy)."""
    return Path(str(resources.files("phasewise") / "examples" / "inventory.py"))


def example_project(*, tests: bool = False) -> list[Path]:
    """The files of the packaged example project: ``inventory.py`` and its caller ``orders.py`` (and,
    with ``tests``, its test ``test_orders.py``)."""
    folder = example_file().parent
    return [folder / "inventory.py", folder / "orders.py", *([folder / "test_orders.py"] if tests else [])]


def qa_settings() -> tuple[dict[str, Any], dict[str, Any]]:
    """``--qa``'s settings, and the user-level settings that declare its test command (so it runs
    unasked): plan → code (a hasty model, in steps) → qa (runs the test), one fix round allowed."""
    models = {"glm-sim-hasty": {"toolCalling": True}, "gpt-sim": {"toolCalling": True}}
    settings = {
        "phases": {"plan": {"model": QA_ROUTES["plan"]}, "code": {"model": QA_ROUTES["code"], "agent": True},
                   "qa": {"model": QA_ROUTES["qa"], "agent": {"commands": ["test"]}}},
        "providers": {"sim-glm": {"models": {"glm-sim-hasty": models["glm-sim-hasty"]}},
                      "sim-gpt": {"models": {"gpt-sim": models["gpt-sim"]}}},
        "pipeline": ["plan", "code", "qa"], "fixRounds": 2,
    }
    test = f"{shlex.quote(sys.executable)} -m unittest -q test_orders"
    return settings, {"commands": {"test": test}}


DEMO_AGENT = ("code",)  # phases that work in steps: the code phase searches for the callers first


def demo_settings() -> dict[str, Any]:
    return {"phases": {phase: {"model": ref, **({"agent": True} if phase in DEMO_AGENT else {})}
                       for phase, ref in DEMO_ROUTES.items()}}


# ----------------------------------------------------------------------------- the editor side

def _utf16_to_index(line: str, units: int) -> int:
    """A position's UTF-16 column as an index into the Python string of that line."""
    count = 0
    for index, ch in enumerate(line):
        if count >= units:
            return index
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def _offset(text: str, pos: types.Position) -> int:
    lines = text.split("\n")
    line = min(pos.line, len(lines) - 1)
    return sum(len(x) + 1 for x in lines[:line]) + _utf16_to_index(lines[line], pos.character)


def uri_path(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path)


def apply_text_edits(text: str, edits: list[types.TextEdit]) -> str:
    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        a, b = _offset(text, e.range.start), _offset(text, e.range.end)
        text = text[:a] + e.new_text + text[b:]
    return text


@dataclass
class EditorState:
    """What the demo's editor holds: one open file, its version, what the server sent it."""

    uri: str
    path: Path
    text: str
    version: int = 1
    edits_applied: int = 0
    diagnostics: list[types.Diagnostic] = field(default_factory=list)  # of the open file
    elsewhere: dict[str, list[types.Diagnostic]] = field(default_factory=dict)  # of the project's other files
    log: list[str] = field(default_factory=list)
    streamed: dict[str, int] = field(default_factory=dict)
    stderr: list[str] = field(default_factory=list)


class DemoClient(ServerProcessClient):
    """An editor in a few handlers: applies edits (and saves), records diagnostics and logs."""

    def __init__(self, state: EditorState) -> None:
        super().__init__("phasewise-demo", "1", stderr=state.stderr)
        self.state = state

        @self.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(client: DemoClient, params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            return client.apply(params)

        @self.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def diagnostics(client: DemoClient, params: types.PublishDiagnosticsParams) -> None:
            if params.uri == client.state.uri:
                client.state.diagnostics = list(params.diagnostics)
            else:
                client.state.elsewhere[params.uri] = list(params.diagnostics)

        @self.feature(types.WINDOW_LOG_MESSAGE)
        def log_message(client: DemoClient, params: types.LogMessageParams) -> None:
            client.state.log.append(params.message)

        @self.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(client: DemoClient, params: types.ShowMessageParams) -> None:
            client.state.log.append(params.message)

        @self.feature("phasewise/streamText")
        def stream_text(client: DemoClient, params: Any) -> None:
            phase = str(getattr(params, "phase", None) or "?")
            client.state.streamed[phase] = client.state.streamed.get(phase, 0) + 1

    def apply(self, params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        state = self.state
        edits: list[types.TextEdit] = []
        gate = PathGate.of([state.path.parent])  # the demo's copy of the project: nothing else is written
        try:
            writes = self._other_files(gate, params.edit.document_changes or ())
        except PathRefused as refused:
            return types.ApplyWorkspaceEditResult(applied=False, failure_reason=str(refused))
        for change in params.edit.document_changes or ():
            if isinstance(change, types.TextDocumentEdit) and change.text_document.uri == state.uri:
                if change.text_document.version not in (None, state.version):
                    return types.ApplyWorkspaceEditResult(applied=False, failure_reason="version mismatch")
                edits += [e for e in change.edits if isinstance(e, types.TextEdit)]
        if writes:
            gate.write_files(writes)
        edits += list((params.edit.changes or {}).get(state.uri, ()))
        state.text = apply_text_edits(state.text, edits)
        state.version += 1
        state.edits_applied += 1
        # Sync before answering, as editors do, then save: the copy on disk shows the change.
        self.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=state.uri, version=state.version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=state.text)],
        ))
        gate.write_text(gate.check(state.path), state.text)
        return types.ApplyWorkspaceEditResult(applied=True)

    def _other_files(self, gate: PathGate, changes: Any) -> list[tuple[Path, str]]:
        """The files besides the open one that a change creates or edits, and their new texts: on
        disk, as editors do with files they have not open."""
        texts: dict[Path, str] = {}
        for change in changes:
            if isinstance(change, types.CreateFile):
                texts.setdefault(gate.check(uri_path(change.uri)), "")
            elif isinstance(change, types.TextDocumentEdit) and change.text_document.uri != self.state.uri:
                other = gate.check(uri_path(change.text_document.uri))
                raw = gate.read_bytes(other) if other not in texts else None
                text = texts.get(other, raw.decode("utf-8") if raw is not None else "")
                texts[other] = apply_text_edits(text, [e for e in change.edits if isinstance(e, types.TextEdit)])
        return list(texts.items())


def plain(value: Any) -> Any:
    """A command's result as plain JSON values, however the client library decoded it."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) and not hasattr(value, "_asdict"):
        return [plain(v) for v in value]
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    return value


# ----------------------------------------------------------------------------- the session

@dataclass
class DemoResult(Jsonable):
    """What the demo saw, as ``phasewise demo --json`` prints it."""

    simulated: bool
    sim_url: str | None = field(metadata=json_rule(key="simulatorUrl"))
    file: Path = field(metadata=json_rule(encode=str))
    instruction: str
    routes: list[dict[str, Any]] = field(metadata=json_rule(skip=True))
    run: dict[str, Any] = field(metadata=json_rule(skip=True))
    state: EditorState = field(metadata=json_rule(skip=True))
    ledger: Path | None = field(metadata=json_rule(encode=lambda p: str(p) if p else None))

    @json_property
    def ok(self) -> bool:
        return bool(self.run.get("ok"))

    def protocol(self, provider: str | None) -> str | None:
        return next((r.get("protocol") for r in self.routes if r.get("provider") == provider), None)

    @json_property
    def run_id(self) -> str | None:
        return self.run.get("runId")

    @json_property
    def phases(self) -> list[dict[str, Any]]:
        """Who served each phase, over which protocol, how fast, at what cost."""
        out = []
        for p in self.run.get("phases") or ():
            latency = p.get("latencyMs") or {}
            out.append({"phase": p.get("phase"), "ok": p.get("ok"), "provider": p.get("provider"),
                        "model": p.get("model"), "protocol": self.protocol(p.get("provider")),
                        "firstTokenMs": latency.get("firstToken"), "totalMs": latency.get("total"),
                        "costUsd": p.get("costUsd"), "error": p.get("error"),
                        **{k: p[k] for k in ("round", "passed", "checks") if k in p}})
        return out

    @json_property(omit="none")
    def passed(self) -> Any:
        """A run with a qa phase (``--qa``): whether its last checks passed."""
        return self.run.get("passed")

    @json_property(omit="none")
    def rounds(self) -> Any:
        return self.run.get("rounds") if "passed" in self.run else None

    @json_property
    def plan(self) -> Any:
        return self.run.get("plan")

    @json_property
    def diff(self) -> Any:
        return self.run.get("diff")

    @json_property
    def findings(self) -> Any:
        return self.run.get("findings")

    @json_property
    def cost_usd(self) -> Any:
        return self.run.get("costUsd")

    @json_property
    def error(self) -> Any:
        return self.run.get("error")

    @json_property
    def edits_applied(self) -> int:
        return self.state.edits_applied

    @json_property
    def review_diagnostics(self) -> int:
        """Review findings published as diagnostics, on the file and on the other files of the change."""
        every = [*self.state.diagnostics, *(d for ds in self.state.elsewhere.values() for d in ds)]
        return sum(1 for d in every if d.source == "phasewise-review")


async def drive_server(state: EditorState, instruction: str, settings: dict[str, Any], env: dict[str, str],
                       user: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Spawn the server, run ``phasewise.status`` and ``phasewise.run`` on the file like an editor."""
    uri, path = state.uri, state.path
    client = DemoClient(state)
    await client.start_io(sys.executable, "-m", "phasewise", "serve", env=env, cwd=str(path.parent))
    try:
        capabilities = types.ClientCapabilities(
            workspace=types.WorkspaceClientCapabilities(
                apply_edit=True, configuration=False,
                workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True),
            ),
            text_document=types.TextDocumentClientCapabilities(
                publish_diagnostics=types.PublishDiagnosticsClientCapabilities(),
            ),
        )
        await client.initialize_async(types.InitializeParams(
            capabilities=capabilities, process_id=os.getpid(), root_uri=path.parent.as_uri(),
            initialization_options={"phasewise": settings, **({"userSettings": user} if user else {})},
            workspace_folders=[types.WorkspaceFolder(uri=path.parent.as_uri(), name=path.parent.name)],
        ))
        client.initialized(types.InitializedParams())
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=uri, language_id="python" if path.suffix == ".py" else "plaintext", version=1, text=state.text,
        )))
        status = plain(await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="phasewise.status", arguments=[{"uri": uri}])))
        run = plain(await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="phasewise.run", arguments=[{"uri": uri, "instruction": instruction, "wait": True}])))
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.close()
    routes = [p for p in (status or {}).get("phases", []) if p.get("phase") in (*DEMO_ROUTES, "qa")]
    return routes, run or {}


@contextmanager
def _simulator() -> Iterator[Any]:
    from phasewise.sim import SimulatorThread

    with SimulatorThread(models=SIM_MODELS) as sim:
        yield sim


def _editor(path: Path) -> EditorState:
    return EditorState(path.as_uri(), path, path.read_text(encoding="utf-8"))


def _ledger_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def run_demo(args: argparse.Namespace) -> int:
    """The ``phasewise demo`` command. Exit status 0 when the three phases succeeded."""
    from phasewise.workflows.ledger import ledger_path

    real = getattr(args, "real", None)
    as_json = bool(getattr(args, "json", False))
    if real:
        source = Path(real).expanduser()
        if not source.is_file():
            print(f"phasewise demo: no such file: {source}", file=sys.stderr)
            return 2
        if not args.instruction:
            print("phasewise demo --real needs --instruction", file=sys.stderr)
            return 2
    else:
        source = example_file()
    # The demo edits a copy in a temp folder (kept, so the result can be looked at): the whole
    # example project (the file and its caller), or the --real file alone.
    qa = bool(getattr(args, "qa", False)) and not real
    target = Path(tempfile.mkdtemp(prefix="phasewise-demo-")) / source.name
    for extra in ([] if real else example_project(tests=qa)):
        shutil.copyfile(extra, target.parent / extra.name)
    shutil.copyfile(source, target)
    instruction = args.instruction or DEMO_INSTRUCTION
    env = dict(os.environ)
    ledger = ledger_path(None, env)
    before = _ledger_lines(ledger)
    if real:
        from phasewise.workflows.config import SettingsFileError, load_cli_settings

        try:
            found = load_cli_settings(args.settings, source.resolve())
        except SettingsFileError as err:
            print(f"phasewise demo: {err}", file=sys.stderr)
            return 2
        settings = found.loaded.settings.model_dump(by_alias=True, exclude_none=True, mode="json")
        state = _editor(target)
        routes, run = asyncio.run(drive_server(state, instruction, settings, env))
        result = DemoResult(False, None, target, instruction, routes, run, state, None)
    else:
        with _simulator() as sim:
            env["PHASEWISE_SIM_URL"] = sim.url
            state = _editor(target)
            settings, user = qa_settings() if qa else (demo_settings(), None)
            routes, run = asyncio.run(drive_server(state, instruction, settings, env, user))
            result = DemoResult(True, sim.url, target, instruction, routes, run, state, None)
    if _ledger_lines(ledger) > before:
        result.ledger = ledger
    if as_json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        show(result)
    if not result.ok and result.state.stderr:
        print("\nServer log (stderr):\n" + "\n".join(result.state.stderr[-20:]), file=sys.stderr)
    return 0 if result.ok else 1


# ----------------------------------------------------------------------------- output

def show(result: DemoResult) -> None:
    from rich.console import Console
    from rich.panel import Panel
    from rich.rule import Rule
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    from phasewise.cli.render import review_table, steps_table

    console = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 110)
    if result.simulated:
        console.print(Panel(
            "[bold]This is the built-in provider SIMULATOR, not a real model.[/]\n"
            f"Three simulated providers answer on {result.sim_url} (loopback), by rule, from the prompt:\n"
            "no key, no network, nothing leaves this machine. The language server, the SDKs, both\n"
            "wire protocols, routing and edits are all real.",
            title="Phasewise demo", border_style="yellow", title_align="left"))
    else:
        console.print(Panel("Real providers, with your settings and keys.", title="Phasewise demo --real",
                            title_align="left"))
    console.print(f"File: {result.file}  [dim](a copy; the packaged example is untouched)[/]")
    console.print(f"Instruction: {result.instruction}\n")

    ran = list(result.run.get("phases") or ())
    names = [p.get("phase") for p in ran]
    for name in result.run.get("pipeline") or ("plan", "code", "review"):
        if name not in names:
            console.print(Rule(f"{name}", align="left"))
            console.print("[dim]not run (the run stopped earlier)[/]")
    for p in ran:
        name = str(p.get("phase"))
        round_ = p.get("round")
        console.print(Rule(f"{name}" + (f" — fix round {round_}" if round_ else ""), align="left"))
        latency = p.get("latencyMs") or {}
        protocol = result.protocol(p.get("provider")) or "?"
        wire = PROTOCOL_NAMES.get(protocol, protocol)
        who = Text.assemble(("served by ", ""), (f"{p.get('provider')}", "bold"), " / ",
                            (f"{p.get('model')}", "bold"), f" over the {wire} protocol — "
                            f"first token {_ms(latency.get('firstToken'))}, total {_ms(latency.get('total'))}, "
                            f"cost {_usd(p.get('costUsd'))}")
        console.print(who)
        if not p.get("ok"):
            error = p.get("error") or {}
            console.print(Panel(str(error.get("message", "failed")), title=str(error.get("kind", "error")),
                                border_style="red", title_align="left"))
            continue
        if name == "plan":
            console.print(Panel(str(p.get("text", "")).rstrip(), title="the plan", title_align="left"))
        elif name == "code":
            diff = p.get("diff") or ""
            # it worked in steps: what it looked at and changed, in order
            if (steps := steps_table("the code phase's steps", p.get("steps") or [])) is not None:
                console.print(steps)
            console.print(str(p.get("text") or ""))
            if diff and "passed" in result.run:  # a run with a qa phase: its change waits for the checks
                console.print(Panel(Syntax(diff.rstrip(), "diff", theme="ansi_dark", word_wrap=True),
                                    title="this round's change (not applied yet: the checks come first)",
                                    title_align="left"))
            elif diff:
                console.print(Panel(Syntax(diff.rstrip(), "diff", theme="ansi_dark", word_wrap=True),
                                    title=f"the applied diff ({result.state.edits_applied} workspace edit "
                                          f"applied by the editor)", title_align="left"))
        elif name == "qa":
            if (steps := steps_table("the qa phase's steps", p.get("steps") or [])) is not None:
                console.print(steps)
            verdict = "[bold green]passed[/]" if p.get("passed") else "[bold red]failed[/]"
            checks = ", ".join(f"{c.get('name')} → exit {c.get('exitCode')}" for c in p.get("checks") or ())
            console.print(f"the checks {verdict} ({checks or 'none ran'})")
            for f in p.get("findings") or ():
                console.print(f"  {f.get('path') or result.file.name}:{int(f.get('startLine', 0)) + 1}: "
                              f"{f.get('message')}")
        else:
            console.print(str(p.get("text") or ""))
            console.print(review_table(p.get("findings") or [], result.file.name, title="review findings"))
            console.print(f"[dim]The server published {result.review_diagnostics} review diagnostics on the "
                          f"files they are about, as an editor would show them.[/]")

    if "passed" in result.run:
        files = ", ".join(str(f.get("path")) for f in result.run.get("files") or ()) or "no file"
        rounds = result.run.get("rounds") or 0
        console.print(Rule("the one change", align="left"))
        console.print(f"After {rounds} fix round{'s' if rounds != 1 else ''} the checks "
                      f"{'passed' if result.run.get('passed') else 'still fail'}; the run's one change ({files}) was "
                      f"applied at the end, in {result.state.edits_applied} workspace edit.")
        if result.run.get("diff"):
            console.print(Panel(Syntax(str(result.run["diff"]).rstrip(), "diff", theme="ansi_dark", word_wrap=True),
                                title="the applied diff", title_align="left"))
    console.print(Rule("summary", align="left"))
    summary = Table()
    for header in ("phase", "provider", "model", "protocol", "first token", "total", "cost"):
        summary.add_column(header, justify="right" if header in {"first token", "total", "cost"} else "left")
    for p in result.run.get("phases") or ():
        latency = p.get("latencyMs") or {}
        summary.add_row(str(p.get("phase")), str(p.get("provider")), str(p.get("model")),
                        result.protocol(p.get("provider")) or "?", _ms(latency.get("firstToken")),
                        _ms(latency.get("total")), _usd(p.get("costUsd")))
    console.print(summary)
    providers = {p.get("provider") for p in result.run.get("phases") or ()}
    protocols = {result.protocol(x) for x in providers}
    verdict = "done" if result.ok else f"stopped at the {result.run.get('stoppedAt')} phase"
    console.print(f"Run {result.run.get('runId')} {verdict}: {len(providers)} providers, {len(protocols)} protocols, "
                  f"estimated cost {_usd(result.run.get('costUsd'))}"
                  + (" (simulated prices)." if result.simulated else "."))
    if result.ledger is not None:
        console.print(f"Recorded in {result.ledger} — see `phasewise history`.")


def _ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def _usd(value: Any) -> str:
    return f"${value:.4f}" if isinstance(value, int | float) else "–"

"""Quick fixes (code actions) offered on a problem diagnostic: the ways out of each kind.

Every problem diagnostic gets: retry now (for a rate-limit, the title says when the limit lifts),
retry on each configured fallback, and open the phase's settings. Missing or rejected keys also
get "set the key" (naming the env var, never a value); transient failures and billing without
fallbacks get "add a fallback". Billing gets no "retry": the same request on the same account
will be refused again until the account is topped up or the plan's window resets (the message
names the billing page and when), so the ways out are a fallback or another provider.

Fixes that work in every client (issue 12): the client-side commands ``phasewise.setApiKey`` and
``phasewise.openSettings`` (in the VS Code, Neovim and Emacs plugins) are offered only to a client
that declares them in its ``initialize`` capabilities::

    "experimental": {"phasewise": {"clientCommands": ["phasewise.setApiKey", "phasewise.openSettings"]}}

Every other client (Vim's yegappan/lsp, Helix, a bare Eglot) gets commands the server carries out
itself: ``phasewise.showSettings {setting, uri?}`` opens the settings file Phasewise reads for that
document at the key path (``window/showDocument``; a message naming file and line where the client
cannot show documents), and ``phasewise.showKeyHelp {env, provider}`` says where the key goes
(``window/showMessage``). ``showSettings`` never creates a file: with no settings file it says which
file to create and what to put in it (a quick fix that silently adds files to a project would be
an edit the user did not ask for).

Quick fixes are offered only for a diagnostic the server shows now, and each one carries only its
own diagnostic: a replaced or cleared problem sent back by the client gets none, so fixes of
several phases do not pile up in one menu.

A finding of any phase (source ``phasewise-<phase>``) offers its suggestion, titled by what
changes ("Replace line 3 with: return …"), and "Dismiss this finding (security: …)". The
suggestion's action carries the edit and the command ``phasewise.dismissFinding {uri, id}`` (a
client applies the edit first, then runs the command), so the finding goes at once; a client
that ignores the command still sees it go, as its lines then read as the suggestion.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from phasewise.edge.diagnostics import FINDINGS_PREFIX, LIFTED, SOURCE, Shown, plain_text
from phasewise.edge.requests import ClientSilent, ask_client
from phasewise.edge.shown import SHOW_SECONDS

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer

_KEY_KINDS = {"missing-credentials", "auth"}
_TRANSIENT = {"rate-limit", "overloaded", "server-error", "network", "timeout"}
_NO_RETRY_NOW = {"config", "document-changed"}

SET_API_KEY = "phasewise.setApiKey"
OPEN_SETTINGS = "phasewise.openSettings"
CLIENT_COMMANDS = (SET_API_KEY, OPEN_SETTINGS)
SHOW_SETTINGS = "phasewise.showSettings"
SHOW_KEY_HELP = "phasewise.showKeyHelp"
DISMISS_FINDING = "phasewise.dismissFinding"
SERVER_COMMANDS = (SHOW_SETTINGS, SHOW_KEY_HELP, DISMISS_FINDING)
TITLE_TEXT = 60  # characters of a suggestion or message shown in a quick fix's title


def client_commands(caps: types.ClientCapabilities | None) -> frozenset[str]:
    """The Phasewise client-side commands a client declared (``experimental.phasewise.clientCommands``)."""
    experimental: Any = getattr(caps, "experimental", None) if caps is not None else None
    if hasattr(experimental, "_asdict"):
        experimental = experimental._asdict()
    ours: Any = experimental.get("phasewise") if isinstance(experimental, dict) else None
    if hasattr(ours, "_asdict"):
        ours = ours._asdict()
    named = ours.get("clientCommands") if isinstance(ours, dict) else None
    if not isinstance(named, list | tuple):
        return frozenset()
    return frozenset(c for c in named if c in CLIENT_COMMANDS)


def _when(problem: dict[str, Any], now: datetime | None = None) -> str | None:
    """When a rate-limit lifts, for a title: ``14:03:12, in 12 s`` (or just the seconds). The
    seconds are those left now (clients ask for the fixes each time the menu opens, so the title
    counts down), from ``retryAt``; the provider's own wait when there is no time to count to."""
    seconds = problem.get("retryAfterSeconds")
    if not isinstance(seconds, (int, float)):
        return None
    try:
        when = datetime.fromisoformat(str(problem["retryAt"]))
    except (KeyError, ValueError):
        when = None
    if when is not None and when.tzinfo is not None:
        seconds = max(0.0, min(float(seconds), (when - (now or datetime.now(when.tzinfo))).total_seconds()))
    wait = f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
    return f"in {wait}" if when is None else f"{when.strftime('%H:%M:%S')}, in {wait}"


def problem_fixes(uri: str, diag: types.Diagnostic, problem: dict[str, Any],
                  client: frozenset[str] = frozenset(), set_key: str | None = None) -> list[types.CodeAction]:
    """The fixes of one problem diagnostic; ``client`` is what ``client_commands`` found, ``set_key``
    the client's own name of its set-key command."""
    phase = problem.get("phase") or "plan"
    kind = problem["kind"]
    fixes: list[types.CodeAction] = []

    def action(title: str, command: str, arg: dict[str, Any]) -> None:
        fixes.append(types.CodeAction(
            title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
            is_preferred=not fixes or None,
            command=types.Command(title=title, command=command, arguments=[arg]),
        ))

    def settings(title: str, setting: str) -> None:
        if OPEN_SETTINGS in client:
            action(title, OPEN_SETTINGS, {"setting": setting})
        else:
            action(title, SHOW_SETTINGS, {"setting": setting, "uri": uri})

    if kind in _KEY_KINDS:
        env = problem.get("keyEnv")
        provider = problem.get("provider")
        what = f"Set {env}" if env else f"Set the key for {provider}"
        if SET_API_KEY in client:
            action(f"{what} ({set_key})" if set_key else what, SET_API_KEY, {"env": env, "provider": provider})
        else:
            action(f"{what}: show where the key goes", SHOW_KEY_HELP,
                   {"env": env, "provider": provider, "phase": phase})
    retry = {"uri": uri, "phase": phase}
    when = _when(problem) if kind in {"rate-limit", "overloaded"} else None
    if problem.get(LIFTED):
        action(f"Retry the {phase} phase now (the limit has lifted)", "phasewise.retry", retry)
    elif when is not None:
        action(f"Retry the {phase} phase once the limit lifts ({when})", "phasewise.retry", retry)
    elif kind == "rate-limit":
        action(f"Retry the {phase} phase now (the provider did not say when the limit lifts)",
               "phasewise.retry", retry)
    elif kind == "billing":
        pass  # never a retry: see the module docstring
    elif kind in _NO_RETRY_NOW:
        action(f"Retry the {phase} phase", "phasewise.retry", retry)
    else:
        action(f"Retry the {phase} phase now", "phasewise.retry", retry)
    fallbacks = [fb for fb in problem.get("fallbacks") or () if isinstance(fb, str)]
    for fb in fallbacks:
        action(f"Retry the {phase} phase on {fb}", "phasewise.retry", {**retry, "model": fb})
    if not fallbacks and kind in _TRANSIENT | {"billing"}:
        settings(f"Add a fallback model for the {phase} phase", f"phasewise.phases.{phase}.fallbacks")
    phase_setting = f"phasewise.phases.{phase}"
    settings(f"Open the {phase} phase's settings", phase_setting)
    setting = problem.get("setting")
    if isinstance(setting, str) and setting and setting != phase_setting:
        settings(f"Open the setting {setting}", setting)
    return fixes


def _shorten(text: str, limit: int = TITLE_TEXT) -> str:
    """``text`` on one line, cut at a word (where one ends late enough) with "…" past ``limit``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if text[limit - 1] != " " and " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def suggestion_title(start: int, end: int, suggestion: str) -> str:
    """What applying a suggestion changes: ``Replace line 3 with: return …`` (lines 1-based)."""
    where = f"line {start + 1}" if start == end else f"lines {start + 1}–{end + 1}"
    lines = suggestion.split("\n")
    if not suggestion.strip():
        return f"Replace {where} with {'a blank line' if len(lines) == 1 else f'{len(lines)} blank lines'}"
    shown = _shorten(next(line for line in lines if line.strip()))
    if len(lines) == 1:
        return f"Replace {where} with: {shown}"
    return f"Replace {where} with {len(lines)} lines: {shown}" + ("" if shown.endswith("…") else " …")


def finding_fixes(uri: str, diag: types.Diagnostic, found: Shown) -> list[types.CodeAction]:
    """Apply the suggestion (edit, then the command that drops the finding), and dismiss it."""
    dismiss = types.Command(title="Dismiss the finding", command=DISMISS_FINDING,
                            arguments=[{"uri": uri, "id": found.id}])
    fixes = []
    if found.suggestion is not None:
        title = suggestion_title(found.start, found.end, found.suggestion)
        fixes.append(types.CodeAction(
            title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag], is_preferred=True,
            edit=types.WorkspaceEdit(changes={uri: [types.TextEdit(range=found.diag.range,
                                                                   new_text=found.suggestion)]}),
            command=dismiss,
        ))
    title = f"Dismiss this finding ({found.phase}: {_shorten(found.diag.message, 50)})"
    fixes.append(types.CodeAction(title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
                                  command=types.Command(title=title, command=DISMISS_FINDING,
                                                        arguments=[{"uri": uri, "id": found.id}])))
    return fixes


def code_actions(ls: PhasewiseServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """The quick fixes for the diagnostics the client sent: only those the server shows now."""
    uri = params.text_document.uri
    client = client_commands(ls.client_capabilities)
    actions: list[types.CodeAction] = []
    for diag in params.context.diagnostics:
        data = diag.data if isinstance(diag.data, dict) else None
        if data is None:
            continue
        if (diag.source or "").startswith(FINDINGS_PREFIX):
            found = ls.diagnostics.finding(uri, data.get("id"))
            if found is not None:
                actions.extend(finding_fixes(uri, diag, found))
        elif diag.source == SOURCE and isinstance(data.get("kind"), str) and ls.diagnostics.is_current(uri, diag):
            actions.extend(problem_fixes(uri, diag, data, client, ls.set_key_command()))
    return actions


# ----------------------------------------------------------------- commands the server carries out

def key_help(env: str | None, provider: str | None, phase: str | None = None) -> str:
    """Where a provider's key goes, for a client without the "Phasewise: Set API Key…" command."""
    name = env or "the provider's key variable"
    needed = f" (needed by the {phase} phase)" if phase else ""
    who = provider or "the provider"
    return (f"Phasewise: the key for {who}{needed} goes in {name}. Either set it in the environment "
            f"the editor starts Phasewise from (export {name}=…) and restart the language server, or "
            f"store it in the OS keyring with: phasewise auth set {who}. Keys never go in settings.")


def show_key_help_command(ls: PhasewiseServer, arg: dict[str, Any]) -> dict[str, Any]:
    env, provider, phase = (arg.get(k) if isinstance(arg.get(k), str) else None for k in ("env", "provider", "phase"))
    text = key_help(env, provider, phase)
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=text))
    return {"message": text}


def _start_folder(ls: PhasewiseServer, uri: str | None) -> Path | None:
    if uri and uri.startswith("file:") and (path := to_fs_path(uri)):
        return Path(path).parent
    root = ls.workspace.root_path
    return Path(root) if root else None


def key_path_line(text: str, setting: str) -> int:
    """The 0-based line of the deepest part of ``setting`` (``phasewise.phases.plan.model``)
    found in a settings file's text: nested keys, VS Code's dotted ones, or a bare section."""
    parts = setting.split(".")
    pos, line_at, i = 0, 0, 0
    while i < len(parts):
        for j in range(len(parts), i, -1):  # the longest dotted key first ("phasewise.phases")
            m = re.compile(r'"' + re.escape(".".join(parts[i:j])) + r'"\s*:').search(text, pos)
            if m is not None:
                pos, i = m.end(), j
                line_at = text.count("\n", 0, m.start())
                break
        else:
            if i == 0 and parts[0] == "phasewise":
                i = 1  # a phasewise.json holds the section bare
                continue
            break
    return line_at


async def show_settings_command(ls: PhasewiseServer, arg: dict[str, Any]) -> dict[str, Any]:
    """Open the settings file Phasewise reads for the document at the key path."""
    from phasewise.workflows.config import find_settings_file

    setting: str = arg["setting"] if isinstance(arg.get("setting"), str) else "phasewise"
    uri = arg.get("uri") if isinstance(arg.get("uri"), str) else None
    start = _start_folder(ls, uri)
    # the repository's phasewise.json (the server reads it), else where the command line would look
    project = ls.settings.project_file(uri)
    path = project[0] if project is not None else None
    if path is None and start is not None:
        found = find_settings_file(start)
        path = found[0] if found is not None else None
    if path is None and start is not None:
        vscode = Path(ls.workspace.root_path or start) / ".vscode" / "settings.json"
        path = vscode if vscode.is_file() else None
    if path is None:
        folder = Path(ls.workspace.root_path or start or ".")
        text = (f"Phasewise found no settings file for this document: {setting} goes in the phasewise "
                f"section of your editor's settings for the Phasewise server, or in {folder / 'phasewise.json'} "
                f"(the section's fields at the top level, e.g. {{\"phases\": {{\"plan\": {{\"model\": "
                f"\"anthropic/claude-opus-4-5\"}}}}}}), which Phasewise reads beneath the editor's settings "
                f"(the command line too).")
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=text))
        return {"shown": None, "message": text}
    try:
        line = key_path_line(path.read_text(encoding="utf-8"), setting)
    except (OSError, UnicodeDecodeError):
        line = 0
    window = ls.client_capabilities.window
    if window is not None and window.show_document is not None and window.show_document.support:
        at = types.Range(types.Position(line, 0), types.Position(line, 0))
        try:
            result = await ask_client(ls, "window/showDocument", ls.window_show_document_async(
                types.ShowDocumentParams(uri=from_fs_path(str(path)) or path.as_uri(), take_focus=True,
                                         selection=at)), SHOW_SECONDS)
        except ClientSilent:
            result = None  # named in a message below
        if getattr(result, "success", False):
            return {"shown": str(path), "line": line + 1}
    text = plain_text(f"Phasewise: {setting} is in {path}, line {line + 1}.")
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=text))
    return {"shown": str(path), "line": line + 1, "message": text}

"""Code actions: every phase at the cursor or selection, and the quick fixes of Phasewise's own
diagnostics.

Any LSP client reaches every phase this way, with no plugin (Helix, Vim, Kate, Sublime, Zed):
each action runs ``phasewise.phase`` on the server. Its instruction comes from a
``phasewise: …`` comment on or above the cursor line (any comment syntax), else a TODO or FIXME
there, else the phase's own default; the title names phase, route and instruction
("Phasewise code (zai/glm-4.7): make total skip None items"). Kinds are under
``refactor.rewrite.phasewise`` (code-kind phases) and ``source.phasewise`` (plan and review), so
clients can filter them. Offering them is cheap (clients ask on every cursor move): a few lines
of the document are read, the routes are resolved once per settings, nothing is sent anywhere.
A finding offers to apply its suggestion and to be dismissed (``phasewise.dismissFinding``); a
problem offers the ways out of its kind (``edge.fixes``), through the editor's own commands where
it declared them, else through ``phasewise.showSettings`` and ``phasewise.showKeyHelp``, which the
server carries out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from phasewise.edge import fixes
from phasewise.edge.commands import FindingArgs, KeyHelpArgs, ShowSettingsArgs, register_command
from phasewise.edge.feature import Feature

if TYPE_CHECKING:
    from phasewise.settings import LoadedSettings

CODE_KIND = "refactor.rewrite.phasewise"
OTHER_KIND = "source.phasewise"
LOOK_ABOVE = 3  # comment lines above the cursor searched for an instruction
TITLE_LIMIT = 72
DEFAULTS = {
    "plan": "Plan a change to this code",
    "code": "Fix the problems in this code",
    "review": "Review this code",
}
# A comment opener of any common syntax, then `phasewise:` (or TODO/FIXME), then the instruction.
_COMMENT = re.compile(
    r"(?:#|//|--|;+|/\*+|\*|<!--|%|\"\"\"|'''|\bREM\b)\s*(?P<tag>phasewise|todo|fixme)\b\s*[:\-]?\s*(?P<text>.*?)"
    r"\s*(?:\*/|-->|\"\"\"|''')?\s*$",
    re.IGNORECASE,
)


def instruction_at(lines: list[str]) -> tuple[str, str] | None:
    """``(tag, instruction)`` from the nearest ``phasewise:`` comment in ``lines`` (the cursor line
    last), else the nearest TODO/FIXME; None when there is neither."""
    found: tuple[str, str] | None = None
    for line in reversed(lines):
        match = _COMMENT.search(line)
        if match is None or not match.group("text"):
            continue
        tag = match.group("tag").lower()
        if tag == "phasewise":
            return tag, match.group("text")
        found = found or (tag, match.group("text"))
    return found


def _offered(only: Sequence[str] | None, kind: str) -> bool:
    """Whether ``context.only`` admits ``kind`` (a prefix admits the kinds under it)."""
    return not only or any(kind == o or kind.startswith(f"{o}.") for o in only)


class CodeActionsFeature(Feature):
    def __init__(self, ls: Any) -> None:
        super().__init__(ls)
        # the phases offered, as (phase, kind, route label): resolved once per settings object
        self._routes: tuple[LoadedSettings | None, list[tuple[str, str, str]]] = (None, [])

    def register(self) -> None:
        @self.ls.feature(
            types.TEXT_DOCUMENT_CODE_ACTION,
            types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, CODE_KIND, OTHER_KIND]),
        )
        async def on_code_action(params: types.CodeActionParams) -> list[types.CodeAction]:
            actions = self.quick_fixes(params)
            if _offered(params.context.only, CODE_KIND) or _offered(params.context.only, OTHER_KIND):
                actions += await self.phase_actions(params)
            return actions

        # the fixes a client without Phasewise's own commands can use (edge.fixes)
        register_command(self.ls, fixes.SHOW_SETTINGS, ShowSettingsArgs, self.show_settings)
        register_command(self.ls, fixes.SHOW_KEY_HELP, KeyHelpArgs, self.show_key_help)
        register_command(self.ls, fixes.DISMISS_FINDING, FindingArgs, self.dismiss_finding)

    def quick_fixes(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        if not _offered(params.context.only, types.CodeActionKind.QuickFix):
            return []
        return fixes.code_actions(self.ls, params)

    async def show_settings(self, args: ShowSettingsArgs) -> dict[str, Any]:
        return await fixes.show_settings_command(self.ls, {"setting": args.setting, "uri": args.uri})

    async def show_key_help(self, args: KeyHelpArgs) -> dict[str, Any]:
        return fixes.show_key_help_command(self.ls, {"env": args.env, "provider": args.provider,
                                                     "phase": args.phase})

    async def dismiss_finding(self, args: FindingArgs) -> dict[str, Any]:
        return {"dismissed": self.ls.diagnostics.dismiss(args.uri, args.id)}

    def _phase_routes(self, loaded: LoadedSettings) -> list[tuple[str, str, str]]:
        cached, routes = self._routes
        if cached is loaded:
            return routes

        resolver = self.ls.engine.resolver(loaded)
        routes = []
        for phase in resolver.phase_names():
            phase_route = resolver.phase(phase)
            main = phase_route.main
            routes.append((phase, phase_route.kind, main.label if main else "not routed"))
        self._routes = (loaded, routes)
        return routes

    async def phase_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        doc = self.ls.workspace.text_documents.get(uri)
        if doc is None:
            return []
        rng = params.range
        start = rng.start.line
        # Only the lines around the cursor: a 20,000-line document is not split whole.
        head = doc.source.split("\n", start + 1)[: start + 1]
        found = instruction_at(head[max(0, start - LOOK_ABOVE):])
        selected = rng.end.line > rng.start.line or rng.end.character > rng.start.character
        loaded = await self.ls.settings_for(uri)
        actions = []
        for phase, kind, label in self._phase_routes(loaded):
            code_action_kind = f"{CODE_KIND if kind == 'code' else OTHER_KIND}.{phase}"
            if not _offered(params.context.only, code_action_kind):
                continue
            instruction = found[1] if found else _default(loaded, phase)
            title = f"Phasewise {phase} ({label}): {instruction}"
            if len(title) > TITLE_LIMIT:
                title = title[: TITLE_LIMIT - 1].rstrip() + "…"
            # the repository wrote this instruction (a comment, or the settings' default), not the user
            arg: dict[str, Any] = {"phase": phase, "uri": uri, "instruction": instruction, "origin": "document"}
            if selected:
                arg["range"] = {"start": {"line": rng.start.line, "character": 0},
                                "end": {"line": rng.end.line, "character": 0}}
            actions.append(types.CodeAction(
                title=title, kind=code_action_kind,
                command=types.Command(title=title, command="phasewise.phase", arguments=[arg]),
            ))
        return actions


def _default(loaded: LoadedSettings, phase: str) -> str:
    """A phase's instruction when the code says none: the first line of its own instructions,
    else a sentence of its kind."""
    own = loaded.settings.phases.get(phase)
    if own is not None and own.instructions and not own.instructions.startswith("@"):
        first = own.instructions.strip().splitlines()[0]
        return first.rstrip(".")
    return DEFAULTS.get(phase) or f"Run {phase} on this code"

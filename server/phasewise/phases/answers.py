"""What a phase makes of its model's answer, by the phase's kind (``ANSWERS``): a plan is its text;
a review, its findings (on the document or on another file of the change); a code answer, the
change its edit format parses (``phases.formats``), with one repair round on the route that answered
when blocks do not match (the model is told which block of which file failed and why).

``ask_again`` (a repair round) may be None where no repair round can be asked for (a phase that
worked in steps answers its last step; a code phase's change there is its staged edits). Each kind
also names the tool whose object its structured answer is (``tool``; a plan has none).
An answer cut at the output limit: a code answer (or its repair) is refused whole (``CutAtLimit``),
a plan or a review is kept, marked ``incomplete`` with ``cut_note``. An answer Phasewise cannot use
becomes the phase's ``bad-request`` problem (``unusable``), and nothing of it is applied.
May not import: edge, workflows, sim.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final

from phasewise.gate import PathRefused
from phasewise.phases.context import CHANGED, NAMED, Context
from phasewise.phases.documents import AnswerError, Document, LineRange, parse_findings, structured_answer
from phasewise.phases.edits import EditFailure, FileText, Resolve, line_edits
from phasewise.phases.formats import FORMATS
from phasewise.phases.prompts import EDIT_TOOL_SPEC, FINDINGS_TOOL_SPEC, ToolSpec
from phasewise.phases.results import PhaseInput, PhaseResult
from phasewise.problems import Problem, ProblemKind
from phasewise.router.messages import provider_label
from phasewise.router.router import Observer, RouteFailed, Served, output_budget
from phasewise.router.routes import Route

AskAgain = Callable[[Route, str], Awaitable[Served]]
"""The phase's request once more on that route alone, with the text after the request's own blocks
(so the cached prefix still holds); raises ``RouteFailed``."""


class CutAtLimit(AnswerError):
    """A code answer (or its repair round's) stopped at the output limit: none of its edits is applied."""


class PhaseAnswer:
    """How a phase of one kind takes its model's answer into its result: a plan's is its text."""

    tool: ClassVar[ToolSpec | None] = None  # the tool whose object the answer is; None: free text

    async def take(self, result: PhaseResult, served: Served, inp: PhaseInput, rng: LineRange,
                   context: Context | None, ask_again: AskAgain | None, observer: Observer) -> bool:
        """Fill ``result`` from ``served``'s answer; whether a repair round was asked for. Raises
        ``AnswerError`` (``EditFailure``, ``CutAtLimit``) when the answer cannot be used."""
        return False


class ReviewAnswer(PhaseAnswer):
    tool = FINDINGS_TOOL_SPEC

    async def take(self, result: PhaseResult, served: Served, inp: PhaseInput, rng: LineRange,
                   context: Context | None, ask_again: AskAgain | None, observer: Observer) -> bool:
        c = served.completion
        answer = structured_answer(c.tool_input, c.text)
        changed = {f.path: Document(f.uri, f.text) for f in context.files
                   if f.reason == CHANGED} if context else {}
        result.findings = parse_findings(answer, inp.document, rng, changed)
        result.text = str(answer.get("summary") or c.text or "")
        return False


class CodeAnswer(PhaseAnswer):
    tool = EDIT_TOOL_SPEC

    async def take(self, result: PhaseResult, served: Served, inp: PhaseInput, rng: LineRange,
                   context: Context | None, ask_again: AskAgain | None, observer: Observer) -> bool:
        c = served.completion
        if c.cut_at_limit:
            # whatever edits came before the cut are a part of the change: none is applied
            raise CutAtLimit("its edits end where the answer was cut off")
        try:
            self.change(result, served.route, c.text, c.tool_input, inp, rng, context)
        except EditFailure as failed:
            if ask_again is None:  # no repair round to ask for
                raise
            await self.repair(result, served, failed, ask_again, observer, inp, rng, context)
            return True
        return False

    @staticmethod
    def change(result: PhaseResult, route: Route, text: str, tool_input: dict[str, Any] | None,
               inp: PhaseInput, rng: LineRange, context: Context | None) -> None:
        """The change the answer makes, in ``result`` (every file, and the document's own edits)."""
        main, resolve = resolver(inp, context)
        windows = {main.path: rng} if inp.range is not None else {}
        fmt = FORMATS.of(route)  # a code route's own format (a fenced JSON block where a named tool_choice is ignored)
        changes = fmt.change(text=text, tool_input=tool_input, resolve=resolve, document=main, windows=windows)
        result.changes = changes
        mine = changes.get(main.path)
        result.new_text = mine.after if mine else inp.document.text
        result.edits = line_edits(inp.document.text, result.new_text) if mine else []
        result.diff = changes.diff
        result.text = fmt.summary(text, tool_input)

    async def repair(self, result: PhaseResult, served: Served, failed: EditFailure, ask_again: AskAgain,
                     observer: Observer, inp: PhaseInput, rng: LineRange, context: Context | None) -> None:
        """One repair round on the route that answered; raises ``EditFailure`` when it fails again,
        ``CutAtLimit`` when its answer stopped at the output limit."""
        if result.attempts and result.attempts[-1].outcome == "ok":
            result.attempts[-1] = dataclasses.replace(result.attempts[-1], outcome="edit-failed")
        f = failed.first
        observer.on_status(f"edit block {f.block} of {f.path} did not apply: asking "
                           f"{served.route.label} once more")
        tool_input = served.completion.tool_input
        previous = served.completion.text or (json.dumps(tool_input, ensure_ascii=False) if tool_input else "")
        repair = (f"<previous_answer>\n{previous.rstrip()}\n</previous_answer>\n"
                  f"<repair>\n{failed.repair_prompt()}\n</repair>")
        route = served.route
        try:
            again = await ask_again(route, repair)
        except RouteFailed as err:
            result.attempts += err.attempts
            raise failed from None
        result.attempts += again.attempts
        c = again.completion
        result.add_usage(c.usage, route.info)
        if c.cut_at_limit:  # as the first answer: edits before the cut are part of a change, none applies
            raise CutAtLimit("the repair round's edits end where the answer was cut off")
        try:
            self.change(result, route, c.text, c.tool_input, inp, rng, context)
        except EditFailure:
            if result.attempts and result.attempts[-1].outcome == "ok":
                result.attempts[-1] = dataclasses.replace(result.attempts[-1], outcome="edit-failed")
            raise


ANSWERS: Final[dict[str, PhaseAnswer]] = {"plan": PhaseAnswer(), "code": CodeAnswer(), "review": ReviewAnswer()}


def answer_tool(kind: str) -> ToolSpec | None:
    """The tool whose object a phase of ``kind`` answers with (None: a plan, or no kind known)."""
    found = ANSWERS.get(kind)
    return found.tool if found is not None else None


def resolver(inp: PhaseInput, context: Context | None) -> tuple[FileText, Resolve]:
    """The document as a change sees it, and the resolver of the paths an answer names."""
    doc, ws = inp.document, inp.workspace
    rel = (ws.rel(doc.uri) if ws else None) or doc.path
    main = FileText(rel, doc.uri, doc.text, doc.version)
    sent = {f.path: FileText(f.path, f.uri, f.text, f.version) for f in context.files} if context else {}
    named = frozenset(f.path for f in context.files if f.reason == NAMED) if context else frozenset()

    def resolve(name: str) -> FileText | None:
        name = name.strip().lstrip("@")
        if name in (rel, doc.path, "./" + rel) or (ws is None and name == doc.path.rsplit("/", 1)[-1]):
            return main
        if name in sent:
            return sent[name]
        if ws is None:
            raise PathRefused(name, "is not the document, which lies in no workspace folder and is "
                                    "worked on alone")
        found = ws.resolve(name, named)
        if found is not None and found.path == rel:
            return main
        return found

    return main, resolve


def unusable(err: AnswerError, result: PhaseResult, served: Served, phase: str) -> Problem:
    """The ``bad-request`` problem of an answer Phasewise cannot use (nothing of it is applied):
    blocks that still do not match after the repair round, a change cut at the output limit, or an
    answer in a shape the phase cannot read."""
    if isinstance(err, EditFailure):
        f = err.first
        more = f" (and {len(err.failures) - 1} more)" if len(err.failures) > 1 else ""
        if all(x.refused for x in err.failures):  # no format would help: the paths are not the workspace's
            message = (f"{result.provider}/{result.model} answered the code phase with a change to a file it "
                       f"may not change, even after being told why: {f.path}, {f.reason}{more}. Nothing was "
                       f"applied: a change stays inside the workspace folders.")
        else:
            message = (f"{result.provider}/{result.model} answered the code phase with edits that do not apply, "
                       f"even after being told why: {f.path}, {f.reason}{more}. Nothing was applied; retry, or "
                       f"set `phasewise.phases.code.editFormat` (e.g. \"whole\").")
        return Problem(ProblemKind.BAD_REQUEST, message, phase=phase, provider=result.provider,
                       model=result.model)
    route = served.route
    if served.completion.cut_at_limit or isinstance(err, CutAtLimit):
        # the answer is unusable because it was cut off, not because the model got the format wrong
        message = (f"{stopped_at_limit(route, phase)}: {err}. Nothing was applied; raise "
                   f"`phasewise.phases.{phase}.maxOutputTokens`, or ask for a smaller change.")
    else:
        who = provider_label(route.spec.name, route.provider)
        message = (f"{who} answered the {phase} phase ({route.model}) in a shape Phasewise "
                   f"cannot use: {err}. Nothing was applied; retry, or set "
                   f"`phasewise.phases.{phase}.editFormat`.")
    return Problem(ProblemKind.BAD_REQUEST, message, phase=phase, provider=route.provider, model=route.model)


def cut_note(route: Route, phase: str, kind: str) -> str:
    """The note on a plan or a review kept although the answer stopped at the output limit."""
    return (f"{stopped_at_limit(route, phase)}: the {kind} ends where the answer was cut "
            f"off. Raise `phasewise.phases.{phase}.maxOutputTokens` for the whole answer, or ask "
            f"for less.")


def stopped_at_limit(route: Route, phase: str) -> str:
    """What an answer cut at the output limit is said to be, in the problem or the note."""
    return (f"{provider_label(route.spec.name, route.provider)} stopped answering the {phase} phase "
            f"({route.model}) at its output limit of {output_budget(route)} tokens")

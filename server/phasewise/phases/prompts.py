"""What each phase says to a model, and the structured answers it asks for.

This module is the one place the prompt wire format is defined. The simulator reads the same
format to answer plausibly, so a change here is a change there.

A request is laid out for the providers' prompt caches by ``layout`` (the one function that
orders the blocks): what is stable comes first and is byte-identical in every phase of a run on
the same document, what changes comes last::

    system   SHARED_SYSTEM                          (the same text in every phase)
    context  <repository_map>                       (when the budget leaves room)
             src/util.py: helper, Thing
             </repository_map>
             <file path="src/util.py" language="python" reason="imported by the document" first_line="1" last_line="9">
                1| a related file (zero or more, see ``context_blocks``)
             </file>
             <document path="src/app.py" language="python" first_line="1" last_line="40">
                1| first line of the document
                2| ...
             </document>
    user     <phase name="code">                    (the phase's own instructions)
             Phasewise phase: code.
             ...
             Edit format: search-replace. ...
             </phase>
             <plan>                                 (code phase, when a plan is handed over)
             free text
             </plan>
             <change>                               (review phase after a code phase: the applied diff)
             unified diff
             </change>
             <instruction>
             free text
             </instruction>

Paths are workspace-relative when the phase knows the workspace folders (absolute otherwise). The
phase block starts with ``Phasewise phase: <name>.`` and ends with its edit format's instructions
(``phases.formats``, whose classes hold those texts): SEARCH/REPLACE blocks or whole files for
``code`` (the default), else tool calling (tools below) or a fenced
```json block holding the same object. With tool calling, every phase declares the same tools
(``RUN_TOOLS``), since tools head the cached prefix, and the code and review phases each require
theirs. The adapters put ``context`` where their protocol caches it (see ``ChatRequest``).
``user_prompt`` is the older single-message form (instruction, plan, change, related files,
document), still read by the simulator and used for preflight's size estimate.

The code phase's edit format is named on its own line, ``Edit format: <name>.``: ``search-replace``
(SEARCH/REPLACE blocks headed by their file's path, see ``phases.formats``), ``whole`` (whole files
back), ``tool`` (tool call) or ``text`` (the same object in a fenced JSON block).

In the ``tool``/``text`` formats, edits are line based, 1-based and inclusive:
``{start_line, end_line, new_text}`` replaces lines
``start_line..end_line`` by ``new_text`` (no trailing newline needed). An insertion before line
``k`` is ``start_line = k, end_line = k - 1``. Deleting is ``new_text = ""``. An edit of a related
file names it in ``path``; a new file is an insertion at line 1 of a path that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from phasewise.tool_names import EDIT_TOOL, FINDINGS_TOOL

SEVERITIES: Final = ("error", "warning", "information", "hint")

EDIT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "description": "One or two sentences on what changed."},
        "edits": {
            "type": "array",
            "description": "Line-range replacements against the numbered document.",
            "items": {
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "description": "Workspace-relative path of the file edited; the document when left out.",
                    },
                    "start_line": {"type": "integer", "description": "First line replaced (1-based)."},
                    "end_line": {
                        "type": "integer",
                        "description": "Last line replaced, inclusive; start_line - 1 to insert.",
                    },
                    "new_text": {"type": "string", "description": "Replacement text for those lines."},
                },
                "required": ["start_line", "end_line", "new_text"],
            },
        },
    },
    "required": ["edits"],
}

FINDINGS_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "description": "The review in a few sentences."},
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "description": "Path of a changed file the finding is on; the document when left out.",
                    },
                    "start_line": {"type": "integer"},
                    "end_line": {"type": "integer"},
                    "severity": {"type": "string", "enum": list(SEVERITIES)},
                    "message": {"type": "string"},
                    "suggestion": {
                        "type": "string",
                        "description": "Replacement text for lines start_line..end_line, if any.",
                    },
                },
                "required": ["start_line", "end_line", "severity", "message"],
            },
        },
    },
    "required": ["findings"],
}


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model must call to answer, protocol neutral."""

    name: str
    description: str
    schema: dict[str, Any]


EDIT_TOOL_SPEC: Final = ToolSpec(
    EDIT_TOOL, "Propose the edits that carry out the instruction on the document.", EDIT_SCHEMA
)
FINDINGS_TOOL_SPEC: Final = ToolSpec(
    FINDINGS_TOOL, "Report review findings on the document.", FINDINGS_SCHEMA
)
# The tools every phase of a run declares (in this order) when it uses tool calling.
RUN_TOOLS: Final = (EDIT_TOOL_SPEC, FINDINGS_TOOL_SPEC)

SHARED_SYSTEM: Final = (
    "You are Phasewise, an engineer's assistant that works in phases (plan, code, review) on the "
    "numbered document below. Each request ends with the phase to carry out, in <phase>, and what it "
    "is given: the plan, the change, the instruction. Line numbers refer to the numbered document."
)

_SYSTEM = {
    "plan": (
        "Phasewise phase: plan.\n"
        "You are a senior engineer. Write a short, concrete, numbered plan in Markdown for carrying "
        "out the instruction on the document. Name functions and lines. Do not write the code."
    ),
    "code": (
        "Phasewise phase: code.\n"
        "You are a careful engineer. Carry out the instruction on the document with the smallest "
        "correct change, updating the related files it affects (callers, tests). Line numbers are "
        "there for reference only."
    ),
    "review": (
        "Phasewise phase: review.\n"
        "You are a demanding reviewer. Report real problems only: bugs, unsafe code, unclear "
        "names. Give a suggestion (replacement text for the lines) where you have one."
    ),
    "qa": (
        "Phasewise phase: qa.\n"
        "You check the work by running the project's commands (its tests, its linters) and reading what "
        "fails. You do not change files. Report each failure on the file and line it is about."
    ),
}

def system_prompt(phase: str, *, answer: str | None = None, kind: str | None = None,
                  instructions: str | None = None) -> str:
    """The phase's own instructions (the ``<phase>`` block of ``layout``; the system prompt of the
    older layout). A phase of the user's own is its ``kind``'s (plan unless it says) under its own
    name, ``Phasewise phase: test (a code phase).``; ``instructions`` (the phase's own text from
    settings) follow the kind's, and ``answer`` (its edit format's ``prompt``: how to answer) ends it."""
    kind = kind or (phase if phase in _SYSTEM else "plan")
    base = _SYSTEM[kind]
    if phase != kind:
        base = base.replace(f"Phasewise phase: {kind}.", f"Phasewise phase: {phase} (a {kind} phase).", 1)
    if instructions and instructions.strip():
        base = f"{base}\n<phase_instructions>\n{instructions.strip()}\n</phase_instructions>"
    return f"{base}\n{answer}" if answer else base


def number_lines(text: str, first_line: int = 1) -> str:
    """The document body as ``   N| line`` rows, as models see it."""
    lines = text.split("\n")
    width = max(4, len(str(first_line + len(lines))))
    return "\n".join(f"{n:>{width}}| {line}" for n, line in enumerate(lines, first_line))


def user_prompt(
    *,
    instruction: str,
    path: str,
    language: str,
    text: str,
    first_line: int = 1,
    plan: str | None = None,
    change: str | None = None,
    context: str = "",
) -> str:
    """The older single user message (instruction, plan, change, related files, document last),
    which the simulator still reads; ``context`` is what ``context_blocks`` rendered. Phases send
    ``layout``'s."""
    parts = [f"<instruction>\n{instruction.strip()}\n</instruction>"]
    if plan:
        parts.append(f"<plan>\n{plan.strip()}\n</plan>")
    if change:
        parts.append(f"<change>\n{change.rstrip()}\n</change>")
    if context:
        parts.append(context)
    parts.append(document_block(path=path, language=language, text=text, first_line=first_line))
    return "\n".join(parts)


def document_block(*, path: str, language: str, text: str, first_line: int = 1) -> str:
    """One numbered ``<document>`` block."""
    last_line = first_line + text.count("\n")
    return (f'<document path="{path}" language="{language}" first_line="{first_line}" '
            f'last_line="{last_line}">\n{number_lines(text, first_line)}\n</document>')


def context_blocks(files: Sequence[tuple[str, str, str, str]], repo_map: str = "") -> str:
    """The repository map and the related files (``(path, language, reason, text)``): the map
    first (the most stable), then one ``<file>`` block each, numbered like the document."""
    parts = []
    if repo_map:
        parts.append(f"<repository_map>\n{repo_map}\n</repository_map>")
    for path, language, reason, text in files:
        body = text[:-1] if text.endswith("\n") else text
        last = 1 + body.count("\n")
        parts.append(
            f'<file path="{path}" language="{language}" reason="{reason}" first_line="1" last_line="{last}">\n'
            f"{number_lines(body)}\n</file>"
        )
    return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Layout:
    """A request's text in cache order: ``system`` then ``context`` (the repository map, related
    files, the document) are the stable prefix, ``user`` is what changes from phase to phase."""

    system: str
    context: str
    user: str

    def chars(self) -> int:
        return len(self.system) + len(self.context) + len(self.user)


def layout(
    phase: str,
    *,
    instruction: str,
    context: Sequence[str],
    answer: str | None = None,
    plan: str | None = None,
    change: str | None = None,
    kind: str | None = None,
    instructions: str | None = None,
) -> Layout:
    """The one function that orders a request's blocks: the shared system text and the context
    blocks (``context_blocks`` and ``document_block``, in a stable order) first; then the phase's
    own instructions, the plan, the change and the instruction."""
    own = system_prompt(phase, answer=answer, kind=kind, instructions=instructions)
    changing = [f'<phase name="{phase}">\n{own}\n</phase>']
    if plan:
        changing.append(f"<plan>\n{plan.strip()}\n</plan>")
    if change:
        changing.append(f"<change>\n{change.rstrip()}\n</change>")
    changing.append(f"<instruction>\n{instruction.strip()}\n</instruction>")
    return Layout(SHARED_SYSTEM, "\n".join(c for c in context if c), "\n".join(changing))

"""A stand-in for the agent tools, for tests of the wire: files in a dict, the tools' result formats.

Not Phasewise's tools (``phases.tools`` is built elsewhere): only what a test needs to answer the
simulated agent's calls the way those tools answer, ``read_file`` numbering lines ``N<TAB>text``,
``search_files`` listing hits ``path:line:text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from phasewise.providers.base import ChatRequest, Completion, Endpoint, Timeouts
from phasewise.providers.turns import AssistantTurn, ResultsTurn, ToolCall, ToolResult, Turn


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    schema: dict[str, Any]


def _schema(**props: str) -> dict[str, Any]:
    return {"type": "object", "properties": {k: {"type": v} for k, v in props.items()},
            "required": [k for k in props if k != "start_line"]}


READ = Tool("read_file", "Read a file of the workspace, lines numbered.", _schema(path="string"))
LIST = Tool("list_files", "List the workspace's files.", {"type": "object", "properties": {}})
SEARCH = Tool("search_files", "Search the workspace's files for a regular expression.", _schema(pattern="string"))
EDIT = Tool("edit_file", "Replace one exact, unique block of a file.",
            _schema(path="string", search="string", replace="string"))
FINDINGS = Tool("report_findings", "Report the review's findings.",
                {"type": "object", "properties": {"summary": {"type": "string"}, "findings": {"type": "array"}}})
CODE_TOOLS = (READ, LIST, SEARCH, EDIT)
READ_ONLY = (READ, LIST, SEARCH)


@dataclass
class Workspace:
    files: dict[str, str]
    log: list[str] = field(default_factory=list)

    def run(self, call: ToolCall, offered: tuple[Tool, ...]) -> ToolResult:
        if call.name not in {t.name for t in offered}:
            return ToolResult(call.id, f"unknown tool {call.name!r}: use one of "
                                       f"{', '.join(t.name for t in offered)}", True)
        if call.input is None:
            return ToolResult(call.id, f"the arguments are not a JSON object: {call.arguments[:80]!r}", True)
        self.log.append(call.name)
        args = call.input
        if call.name == "list_files":
            return ToolResult(call.id, "\n".join(sorted(self.files)))
        if call.name == "read_file":
            text = self.files.get(str(args.get("path")))
            if text is None:
                return ToolResult(call.id, f"no file {args.get('path')}", True)
            return ToolResult(call.id, "\n".join(f"{n}\t{line}" for n, line in enumerate(text.split("\n"), 1)))
        if call.name == "search_files":
            rx = re.compile(str(args["pattern"]))
            hits = [f"{p}:{n}:{line}" for p, t in sorted(self.files.items())
                    for n, line in enumerate(t.split("\n"), 1) if rx.search(line)]
            return ToolResult(call.id, "\n".join(hits) or "no match")
        if call.name == "edit_file":
            path, search, replace = str(args["path"]), str(args["search"]), str(args["replace"])
            text = self.files.get(path, "")
            if search and text.count(search) != 1:
                return ToolResult(call.id, f"the search text occurs {text.count(search)} times in {path}", True)
            self.files[path] = text.replace(search, replace, 1) if search else replace
            return ToolResult(call.id, f"edited {path}")
        return ToolResult(call.id, "done")


async def run_loop(adapter: Any, endpoint: Endpoint, first: ChatRequest, workspace: Workspace,
                   offered: tuple[Tool, ...], max_steps: int = 8,
                   switch: Any = None) -> tuple[list[Completion], tuple[Turn, ...]]:
    """Steps until an answer without tool calls: each step sends the transcript so far. ``switch``
    (step number → (adapter, endpoint) or None) moves the loop onto another protocol mid-way."""
    turns: tuple[Turn, ...] = ()
    answers: list[Completion] = []
    for step in range(max_steps):
        if switch is not None and (moved := switch(step)) is not None:
            adapter, endpoint = moved
        request = ChatRequest(**{**_fields(first), "turns": turns})
        c = await adapter.complete(endpoint, request, lambda _d: None, Timeouts(first_token=10, idle=10))
        answers.append(c)
        if not c.tool_calls:
            break
        results = tuple(workspace.run(call, offered) for call in c.tool_calls)
        turns += (AssistantTurn(c.text, tuple(c.tool_calls)), ResultsTurn(results))
    return answers, turns


def _fields(request: ChatRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in request.__dataclass_fields__}

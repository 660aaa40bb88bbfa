"""A request's tool-call transcript, read back out of either protocol's messages and checked as the
real APIs check it.

Each tool call the model made earlier in the conversation becomes an ``Exchange`` with the result
the caller sent back for it. A transcript the real provider would refuse is refused with its kind of
message: Anthropic wants every ``tool_use`` answered by a ``tool_result`` in the next user message
(results first, ids paired, ids of ``[A-Za-z0-9_-]``, at most four ``cache_control`` blocks);
OpenAI wants every ``tool_calls`` id answered by a ``role: "tool"`` message before anything else,
and no ``tool`` message that answers nothing. OpenAI has no error flag on a result: by this
simulator's convention (and Phasewise's), an error result's content starts with "Error:".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ANTHROPIC_ID = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_CACHE_BREAKPOINTS = 4


class BadTranscript(ValueError):
    """The messages break the protocol's rules for tool calls (the provider's 400)."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One tool call of the transcript (``turn``: which assistant turn made it) and the result sent
    back for it (``result`` None: none yet)."""

    id: str
    name: str
    arguments: str
    turn: int
    result: str | None = None
    is_error: bool = False

    @property
    def input(self) -> dict[str, Any] | None:
        """The arguments as the object they spell; None when they spell none."""
        try:
            parsed = json.loads(self.arguments or "{}")
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    @property
    def ok(self) -> bool:
        return self.result is not None and not self.is_error


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, Mapping) and b.get("type") == "text")
    return ""


def _answered(calls: list[Exchange], results: Mapping[str, tuple[str, bool]]) -> list[Exchange]:
    return [Exchange(c.id, c.name, c.arguments, c.turn, *results[c.id]) if c.id in results else c for c in calls]


def anthropic_history(body: Mapping[str, Any]) -> tuple[Exchange, ...]:
    """The ``tool_use`` / ``tool_result`` pairs of a Messages request, checked."""
    system = body.get("system")
    blocks: list[Any] = [*(body.get("tools") or ()), *(system if isinstance(system, list) else ())]
    calls: list[Exchange] = []
    results: dict[str, tuple[str, bool]] = {}
    pending: list[str] = []
    turn = 0
    for i, msg in enumerate(body.get("messages") or ()):
        content = msg.get("content")
        items = [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []
        blocks += items
        if msg.get("role") == "assistant":
            if pending:
                raise BadTranscript(_unanswered(i - 1, pending))
            turn += 1
            for j, block in enumerate(items):
                if block.get("type") != "tool_use":
                    continue
                call_id = str(block.get("id", ""))
                if not _ANTHROPIC_ID.match(call_id):
                    raise BadTranscript(f"messages.{i}.content.{j}.tool_use.id: String should match pattern "
                                        f"'^[a-zA-Z0-9_-]+$'")
                value = block.get("input")
                if not isinstance(value, Mapping):
                    raise BadTranscript(f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary")
                calls.append(Exchange(call_id, str(block.get("name", "")), json.dumps(value, ensure_ascii=False), turn))
                pending.append(call_id)
            continue
        answered: list[str] = []
        seen_text = False
        for j, block in enumerate(items):
            if block.get("type") == "text":
                seen_text = True
            if block.get("type") != "tool_result":
                continue
            use_id = str(block.get("tool_use_id", ""))
            if use_id not in pending:
                raise BadTranscript(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                                    f"blocks: {use_id}. Each `tool_result` block must have a corresponding "
                                    f"`tool_use` block in the previous message.")
            if seen_text:
                raise BadTranscript(f"messages.{i}.content.{j}: `tool_result` blocks must come before any other "
                                    f"content in a user message.")
            answered.append(use_id)
            results[use_id] = (_text(block.get("content")), bool(block.get("is_error")))
        if missing := [p for p in pending if p not in answered]:
            raise BadTranscript(_unanswered(i - 1, missing))
        pending = []
    marks = sum(1 for b in blocks if isinstance(b, Mapping) and isinstance(b.get("cache_control"), Mapping))
    if marks > MAX_CACHE_BREAKPOINTS:
        raise BadTranscript(f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
                            f"Found {marks}.")
    return tuple(_answered(calls, results))


def _unanswered(index: int, ids: list[str]) -> str:
    return (f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
            f"{', '.join(ids)}. Each `tool_use` block must have a corresponding `tool_result` block in the next "
            f"message.")


def openai_history(body: Mapping[str, Any]) -> tuple[Exchange, ...]:
    """The ``tool_calls`` / ``role: "tool"`` pairs of a Chat Completions request, checked."""
    calls: list[Exchange] = []
    results: dict[str, tuple[str, bool]] = {}
    pending: list[str] = []
    turn = 0
    for msg in body.get("messages") or ():
        role = msg.get("role")
        if role == "tool":
            call_id = str(msg.get("tool_call_id", ""))
            if call_id not in pending:
                raise BadTranscript("Invalid parameter: messages with role 'tool' must be a response to a preceding "
                                    "message with 'tool_calls'.")
            pending.remove(call_id)
            text = _text(msg.get("content"))
            results[call_id] = (text, text.startswith("Error:"))
            continue
        if pending:
            raise BadTranscript("An assistant message with 'tool_calls' must be followed by tool messages responding "
                                "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                                + ", ".join(pending))
        if role != "assistant" or not msg.get("tool_calls"):
            continue
        turn += 1
        for call in msg["tool_calls"]:
            fn = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(fn, Mapping) or not isinstance(call.get("id"), str):
                raise BadTranscript("Invalid value for 'messages': each tool call needs an id and a function.")
            calls.append(Exchange(call["id"], str(fn.get("name", "")), str(fn.get("arguments", "")), turn))
            pending.append(call["id"])
    if pending:
        raise BadTranscript("An assistant message with 'tool_calls' must be followed by tool messages responding "
                            "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                            + ", ".join(pending))
    return tuple(_answered(calls, results))


__all__ = ["BadTranscript", "Exchange", "anthropic_history", "openai_history"]

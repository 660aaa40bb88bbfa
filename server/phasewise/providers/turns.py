"""A conversation with tool calls, protocol neutral: what an agent loop sends back each step.

A phase that works in steps (``phases.agent``) sends its first request as today (system, context,
user) and then the transcript so far as ``ChatRequest.turns``: each ``AssistantTurn`` the model
answered (its text and the tool calls it made) followed by a ``ResultsTurn`` with one result per
call, in the calls' order. Each adapter renders the transcript in its protocol's shapes (Anthropic:
``tool_use`` / ``tool_result`` content blocks; OpenAI: ``tool_calls`` and ``role: "tool"``
messages), so a fallback onto the other protocol in the middle of a loop continues the same
transcript. Call ids stay paired across protocols: ``ToolCall.id`` is whatever the model sent,
and an adapter that needs another form (Anthropic takes ``[A-Za-z0-9_-]`` only) maps it the same
way for the call and its result (``wire_id``).

May import: nothing of Phasewise (providers, router and phases all use it).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call as the model made it: ``arguments`` the raw JSON text it sent, ``input`` the
    object it spells (None when it is not a JSON object: the loop answers with an error result)."""

    id: str
    name: str
    arguments: str = "{}"
    input: dict[str, Any] | None = None

    @classmethod
    def read(cls, call_id: str, name: str, arguments: str | None) -> ToolCall:
        """A call as an adapter read it off the wire: empty arguments are ``{}`` (a tool without
        parameters); arguments that do not spell a JSON object are kept as sent, ``input`` None. A
        call without an id (some local servers) gets one, unique, so its result can be paired."""
        call_id = call_id or f"call_{uuid.uuid4().hex[:24]}"
        raw = arguments if arguments and arguments.strip() else "{}"
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return cls(call_id, name, raw, parsed if isinstance(parsed, dict) else None)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave back, for the model: ``content`` text, ``is_error`` when it failed
    (the model can act on it: a path refused, a search that matched nothing, bad arguments)."""

    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class AssistantTurn:
    """One answer of the model in the transcript: its text and its tool calls, in order."""

    text: str = ""
    calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ResultsTurn:
    """The results of the previous turn's calls, one per call in the same order, then ``text``
    (a word from the loop to the model: the steps left, say), if any."""

    results: tuple[ToolResult, ...] = ()
    text: str = ""


Turn = AssistantTurn | ResultsTurn

_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def wire_id(call_id: str) -> str:
    """``call_id`` as a protocol that takes ``[A-Za-z0-9_-]`` only can carry it (the same mapping for a
    call and its result, so they stay paired)."""
    safe = _SAFE_ID.sub("_", call_id)
    return safe or "call"


def transcript_chars(turns: tuple[Turn, ...]) -> int:
    """About how many characters a transcript sends (texts, call arguments, results)."""
    return sum(len(t.text) + (sum(len(c.name) + len(c.arguments) for c in t.calls) if isinstance(t, AssistantTurn)
                              else sum(len(r.content) for r in t.results)) for t in turns)


__all__ = ["AssistantTurn", "ResultsTurn", "ToolCall", "ToolResult", "Turn", "transcript_chars", "wire_id"]

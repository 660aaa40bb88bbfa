"""The two wire protocols the simulator speaks: OpenAI chat completions and Anthropic messages.

Reads a request body into a protocol-neutral ``Call`` and writes an ``Answer`` back as the
provider would: a whole JSON object, or SSE events split into preamble, content and closing so
the server can inject faults after any number of content chunks. Shapes follow the installed
SDKs' types (``openai.types.chat.ChatCompletionChunk``, ``anthropic.types.RawMessageStreamEvent``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phasewise.sim.answers import Answer, chunk_json, chunk_text
from phasewise.sim.faults import anthropic_error
from phasewise.sim.transcript import BadTranscript, Exchange, anthropic_history, openai_history


class BadRequest(Exception):
    """The request body does not follow the protocol: a 400 in that protocol's shape."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(slots=True)
class Call:
    """One chat request, protocol neutral."""

    model: str
    system: str
    user: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    tools: tuple[str, ...]
    prompt_chars: int
    callable: tuple[str, ...] = ()  # the tools ``tool_choice`` lets the model call (a subset of ``tools``)
    history: tuple[Exchange, ...] = ()  # the tool calls made earlier in the conversation, with their results
    commands: tuple[str, ...] = ()  # the names ``run_command`` accepts (its schema's enum), if it is declared


def _command_names(schemas: list[Any]) -> tuple[str, ...]:
    """The ``name`` enum of a declared ``run_command`` tool's schema (either protocol's shape)."""
    for schema in schemas:
        enum = (((schema or {}).get("properties") or {}).get("name") or {}).get("enum") \
            if isinstance(schema, Mapping) else None
        if isinstance(enum, list):
            return tuple(str(n) for n in enum)
    return ()


def callable_tools(names: tuple[str, ...], choice: Any) -> tuple[str, ...]:
    """The tools the model may call under ``tool_choice`` (either protocol's shape): none for
    "none", the named one when one is forced, else all of them."""
    if choice == "none" or (isinstance(choice, Mapping) and choice.get("type") == "none"):
        return ()
    if isinstance(choice, Mapping):
        forced = choice.get("name") or (choice.get("function") or {}).get("name")
        if isinstance(forced, str):
            return tuple(n for n in names if n == forced)
    return names


@dataclass(slots=True)
class StreamPlan:
    """SSE events in three parts, so faults can cut in after any number of content chunks."""

    preamble: list[bytes] = field(default_factory=list)
    content: list[bytes] = field(default_factory=list)
    closing: list[bytes] = field(default_factory=list)


def tokens(chars: int) -> int:
    return max(1, chars // 4) if chars else 0


# --------------------------------------------------------------------------- prompt caching

CACHE_SHAPES = ("anthropic", "openai", "zai", "deepseek")


@dataclass(frozen=True, slots=True)
class CacheUse:
    """Prompt-cache tokens of one answer, and the provider shape its usage reports them in
    (``anthropic``: ``cache_read_input_tokens``/``cache_creation_input_tokens``; ``openai`` and
    ``zai``: ``prompt_tokens_details.cached_tokens``; ``deepseek``: ``prompt_cache_hit_tokens``/
    ``prompt_cache_miss_tokens``; None: no caching reported, the older shapes)."""

    read: int = 0
    write: int = 0
    shape: str | None = None


@dataclass(frozen=True, slots=True)
class PromptLayout:
    """The prompt as one string in the order providers cache it (tools, system, messages), where
    each block of it ends (``ends``) and where each block marked ``cache_control`` ends (``marks``)."""

    text: str
    marks: tuple[int, ...] = ()
    ends: tuple[int, ...] = ()


def _block_text(block: Mapping[str, Any]) -> str:
    """A content block as prompt text: its text; a tool call or a result as what it carries."""
    kind = block.get("type")
    if kind == "tool_use":
        return json.dumps({"tool_use": block.get("id"), "name": block.get("name"), "input": block.get("input")},
                          ensure_ascii=False, sort_keys=True)
    if kind == "tool_result":
        head = json.dumps({"tool_result": block.get("tool_use_id"), "is_error": bool(block.get("is_error"))})
        return head + _text_of(block.get("content"))
    return str(block.get("text", ""))


def prompt_layout(protocol: str, body: Mapping[str, Any]) -> PromptLayout:
    """``body``'s prompt laid out for a prefix cache (see ``PromptLayout``)."""
    parts: list[str] = []
    marks: list[int] = []
    ends: list[int] = []
    size = 0

    def add(text: str, marked: bool = False, block: bool = True) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)
        if block:
            ends.append(size)
        if marked:
            marks.append(size)

    def marked(block: Any) -> bool:
        return isinstance(block, Mapping) and isinstance(block.get("cache_control"), Mapping)

    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        add(json.dumps(tool, ensure_ascii=False, sort_keys=True), protocol == "anthropic" and marked(tool))
    # tool_choice is taken as outside the cached prefix (a constraint on the answer, not prompt text)
    system = body.get("system")
    if isinstance(system, str):
        add(system)
    elif isinstance(system, list):
        for block in system:
            add(str(block.get("text", "")) if isinstance(block, Mapping) else "", marked(block))
    messages = body.get("messages")
    for msg in messages if isinstance(messages, list) else ():
        if not isinstance(msg, Mapping):
            continue
        add(f"\x00{msg.get('role')}\x00", block=False)
        content = msg.get("content")
        if isinstance(content, list):
            for block in content:
                add(_block_text(block) if isinstance(block, Mapping) else "", marked(block))
        else:
            if msg.get("role") == "tool":
                add(f"\x00{msg.get('tool_call_id')}\x00", block=False)
            add(_text_of(content), block=not msg.get("tool_calls"))
            if msg.get("tool_calls"):
                add(json.dumps(msg["tool_calls"], ensure_ascii=False, sort_keys=True))
    return PromptLayout("".join(parts), tuple(marks), tuple(ends))


def prompt_text(protocol: str, body: Mapping[str, Any]) -> tuple[str, int | None]:
    """The prompt as one string in the order providers cache it (tools, system, messages), and,
    for Anthropic, where the last block marked ``cache_control`` ends (None: no mark)."""
    layout = prompt_layout(protocol, body)
    return layout.text, layout.marks[-1] if layout.marks else None


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings (binary search on C-speed slices)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def _list_field(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"Invalid type for '{key}': expected an array.", key)
    return value


def _require_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    return model


def parse_openai(body: Any) -> Call:
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    model = _require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Missing required parameter: 'messages'.", "messages")
    system, users, chars = [], [], 0
    for msg in messages:
        if not isinstance(msg, Mapping) or not isinstance(msg.get("role"), str):
            raise BadRequest("Invalid value for 'messages': each message needs a role.", "messages")
        text = _text_of(msg.get("content"))
        chars += len(text) + (len(json.dumps(msg["tool_calls"])) if msg.get("tool_calls") else 0)
        if msg["role"] in {"system", "developer"}:
            system.append(text)
        elif msg["role"] == "user":
            users.append(text)
    try:
        history = openai_history(body)
    except BadTranscript as exc:
        raise BadRequest(str(exc), "messages") from None
    names: list[str] = []
    run_schemas: list[Any] = []
    for tool in _list_field(body, "tools"):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            names.append(fn["name"])
            if fn["name"] == "run_command":
                run_schemas.append(fn.get("parameters"))
    for fn in _list_field(body, "functions"):
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            names.append(fn["name"])
    options = body.get("stream_options")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    return Call(
        model=model,
        system="\n".join(system),
        user=_prompt_message(users, history),
        stream=bool(body.get("stream")),
        include_usage=isinstance(options, Mapping) and bool(options.get("include_usage")),
        max_tokens=limit if isinstance(limit, int) and limit > 0 else None,
        tools=tuple(names),
        prompt_chars=chars + (len(json.dumps(body.get("tools"))) if body.get("tools") else 0),
        callable=callable_tools(tuple(names), body.get("tool_choice")),
        history=history,
        commands=_command_names(run_schemas),
    )


def _prompt_message(users: list[str], history: tuple[Exchange, ...]) -> str:
    """The user message holding the request: the last one, or in a conversation with tool calls
    the first (the later ones carry results and the loop's words)."""
    if not users:
        return ""
    return users[0] if history else users[-1]


def parse_anthropic(body: Any) -> Call:
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body.get("model"):
        raise BadRequest("model: Field required")
    if not isinstance(body.get("max_tokens"), int):
        raise BadRequest("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise BadRequest("messages: Field required")
    if not messages:
        raise BadRequest("messages: at least one message is required")
    system = _text_of(body.get("system"))
    users, chars = [], len(system)
    for msg in messages:
        if not isinstance(msg, Mapping) or msg.get("role") not in {"user", "assistant"}:
            raise BadRequest("messages: each message needs a role of 'user' or 'assistant'")
        text = _text_of(msg.get("content"))
        chars += len(text) + _tool_chars(msg.get("content"))
        if msg["role"] == "user":
            users.append(text)
    try:
        history = anthropic_history(body)
    except BadTranscript as exc:
        raise BadRequest(str(exc)) from None
    names = tuple(
        str(t["name"]) for t in _list_field(body, "tools") if isinstance(t, Mapping) and isinstance(t.get("name"), str)
    )
    return Call(
        model=str(body["model"]),
        system=system,
        user=_prompt_message(users, history),
        stream=bool(body.get("stream")),
        include_usage=True,
        max_tokens=int(body["max_tokens"]),
        tools=names,
        prompt_chars=chars + (len(json.dumps(body.get("tools"))) if body.get("tools") else 0),
        callable=callable_tools(names, body.get("tool_choice")),
        history=history,
        commands=_command_names([t.get("input_schema") for t in _list_field(body, "tools")
                                 if isinstance(t, Mapping) and t.get("name") == "run_command"]),
    )


def _tool_chars(content: Any) -> int:
    """Characters of a message's ``tool_use`` inputs and ``tool_result`` contents."""
    if not isinstance(content, list):
        return 0
    return sum(len(json.dumps(b.get("input"))) if b.get("type") == "tool_use" else len(_text_of(b.get("content")))
               for b in content if isinstance(b, Mapping) and b.get("type") in {"tool_use", "tool_result"})


def _input_of(arguments: str) -> Any:
    """A ``tool_use`` block's ``input``: the object the arguments spell, else (a misbehaving
    server) the text as it came."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return parsed if isinstance(parsed, dict) else arguments


def truncate(ans: Answer, max_tokens: int | None) -> Answer:
    """Honour ``max_tokens`` loosely: cut plain prose (never a JSON answer) and say "length"."""
    if max_tokens is None or ans.tool_uses() or "```json" in ans.text:
        return ans
    limit = max_tokens * 4
    if len(ans.text) <= limit:
        return ans
    return Answer(text=ans.text[:limit], stop="length")


# --------------------------------------------------------------------------- OpenAI


def openai_error(message: str, etype: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def _sse(data: Mapping[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def _sse_event(event: str, data: Mapping[str, Any]) -> bytes:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {text}\n\n".encode()


@dataclass(slots=True)
class Ids:
    """Identifiers of one answer: the message/completion id and the tool-call id."""

    message: str
    tool: str
    created: int = field(default_factory=lambda: int(time.time()))

    def call(self, index: int) -> str:
        """The id of the answer's ``index``-th tool call (the first keeps ``tool``)."""
        return self.tool if index == 0 else f"{self.tool}_{index}"


def _openai_finish(ans: Answer) -> str:
    if ans.tool_uses():
        return "tool_calls"
    return "length" if ans.stop == "length" else "stop"


def openai_usage(prompt_tokens: int, ans: Answer, cache: CacheUse | None = None) -> dict[str, Any]:
    out = tokens(ans.output_chars())
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": out,
                             "total_tokens": prompt_tokens + out}
    if cache is not None and cache.shape in {"openai", "zai"}:
        usage["prompt_tokens_details"] = {"cached_tokens": cache.read}
    elif cache is not None and cache.shape == "deepseek":
        usage["prompt_cache_hit_tokens"] = cache.read
        usage["prompt_cache_miss_tokens"] = prompt_tokens - cache.read
    return usage


def openai_completion(ans: Answer, model: str, ids: Ids, prompt_tokens: int,
                      cache: CacheUse | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ans.text or None, "refusal": None,
                               "annotations": []}
    if uses := ans.tool_uses():
        message["tool_calls"] = [{"id": ids.call(i), "type": "function",
                                  "function": {"name": u.name, "arguments": u.arguments}} for i, u in enumerate(uses)]
    return {
        "id": ids.message,
        "object": "chat.completion",
        "created": ids.created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _openai_finish(ans)}],
        "usage": openai_usage(prompt_tokens, ans, cache),
        "service_tier": "default",
        "system_fingerprint": "fp_phasewise_sim",
    }


def openai_chunk(model: str, ids: Ids, delta: Mapping[str, Any] | None, finish: str | None = None,
                 include_usage: bool = False, usage: Mapping[str, Any] | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": ids.message,
        "object": "chat.completion.chunk",
        "created": ids.created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_phasewise_sim",
        "choices": [] if delta is None else [
            {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}
        ],
    }
    if include_usage:
        chunk["usage"] = dict(usage) if usage is not None else None
    return chunk


def openai_stream(ans: Answer, model: str, ids: Ids, prompt_tokens: int, include_usage: bool,
                  words: int = 3, cache: CacheUse | None = None) -> StreamPlan:
    plan = StreamPlan()

    def chunk(delta: Mapping[str, Any] | None, finish: str | None = None,
              usage: Mapping[str, Any] | None = None) -> bytes:
        return _sse(openai_chunk(model, ids, delta, finish, include_usage, usage))

    uses = ans.tool_uses()
    if not uses or ans.text:
        plan.preamble.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in chunk_text(ans.text, words) if ans.text else ():
            plan.content.append(chunk({"content": piece}))
    for index, use in enumerate(uses):
        start = {"index": index, "id": ids.call(index), "type": "function",
                 "function": {"name": use.name, "arguments": ""}}
        if index == 0 and not ans.text:
            plan.preamble.append(chunk({"role": "assistant", "content": None, "tool_calls": [start], "refusal": None}))
        else:
            plan.content.append(chunk({"tool_calls": [start]}))
        for piece in chunk_json(use.arguments):
            plan.content.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    plan.closing.append(chunk({}, _openai_finish(ans)))
    if include_usage:
        plan.closing.append(chunk(None, usage=openai_usage(prompt_tokens, ans, cache)))
    plan.closing.append(_sse("[DONE]"))
    return plan


def openai_sse_data(payload: Mapping[str, Any]) -> bytes:
    return _sse(payload)


def sse_comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


# --------------------------------------------------------------------------- Anthropic


def _anthropic_stop(ans: Answer) -> str:
    if ans.tool_uses():
        return "tool_use"
    return "max_tokens" if ans.stop == "length" else "end_turn"


def _anthropic_usage(input_tokens: int, output_tokens: int, cache: CacheUse | None = None) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` leaves out the tokens read from or written to the cache."""
    read, write = (cache.read, cache.write) if cache is not None else (0, 0)
    return {"input_tokens": max(0, input_tokens - read - write), "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read, "output_tokens": output_tokens, "service_tier": "standard"}


def anthropic_message(ans: Answer, model: str, ids: Ids, prompt_tokens: int,
                      cache: CacheUse | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if ans.text:
        content.append({"type": "text", "text": ans.text})
    for index, use in enumerate(ans.tool_uses()):
        content.append({"type": "tool_use", "id": ids.call(index), "name": use.name, "input": _input_of(use.arguments)})
    return {
        "id": ids.message,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _anthropic_stop(ans),
        "stop_sequence": None,
        "usage": _anthropic_usage(prompt_tokens, tokens(ans.output_chars()), cache),
    }


def anthropic_stream(ans: Answer, model: str, ids: Ids, prompt_tokens: int, words: int = 3,
                     cache: CacheUse | None = None) -> StreamPlan:
    plan = StreamPlan()
    start: dict[str, Any] = {"id": ids.message, "type": "message", "role": "assistant", "model": model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": _anthropic_usage(prompt_tokens, 1, cache)}
    plan.preamble.append(_sse_event("message_start", {"type": "message_start", "message": start}))
    index = 0
    uses = ans.tool_uses()
    if ans.text:
        plan.preamble.append(_sse_event("content_block_start", {
            "type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}))
        plan.preamble.append(_sse_event("ping", {"type": "ping"}))
        for piece in chunk_text(ans.text, words):
            plan.content.append(_sse_event("content_block_delta", {
                "type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}))
        stop_text = _sse_event("content_block_stop", {"type": "content_block_stop", "index": index})
        if uses:
            plan.content.append(stop_text)
        else:
            plan.closing.append(stop_text)
        index += 1
    for number, use in enumerate(uses):
        block_start = _sse_event("content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": ids.call(number), "name": use.name, "input": {}}})
        first = index == 0
        (plan.preamble if first else plan.content).append(block_start)
        if first:
            plan.preamble.append(_sse_event("ping", {"type": "ping"}))
        plan.content.append(_sse_event("content_block_delta", {
            "type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}}))
        for piece in chunk_json(use.arguments):
            plan.content.append(_sse_event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece}}))
        block_stop = _sse_event("content_block_stop", {"type": "content_block_stop", "index": index})
        (plan.closing if number == len(uses) - 1 else plan.content).append(block_stop)
        index += 1
    plan.closing.append(_sse_event("message_delta", {
        "type": "message_delta", "delta": {"stop_reason": _anthropic_stop(ans), "stop_sequence": None},
        "usage": {"output_tokens": tokens(ans.output_chars())}}))
    plan.closing.append(_sse_event("message_stop", {"type": "message_stop"}))
    return plan


def anthropic_error_event(payload: Mapping[str, Any]) -> bytes:
    return _sse_event("error", payload)


def anthropic_bad_request(message: str, request_id: str) -> dict[str, Any]:
    return anthropic_error("invalid_request_error", message, request_id)

"""The Anthropic messages protocol over the official ``anthropic`` SDK.

Serves Anthropic and the Anthropic-compatible endpoints (Z.AI, DeepSeek, MiniMax). Streams text
and every ``tool_use`` block's input, reads usage from ``message_start``/``message_delta``, and
treats an ``error`` event, a stream without ``message_stop``, a page that is not the protocol or an
empty answer as failures, never as a short success.

A transcript (``ChatRequest.turns``) becomes assistant messages of ``text`` and ``tool_use`` blocks,
each followed by a user message of ``tool_result`` blocks (one per call, in order) and the loop's
word, if any. With ``cache_prefix`` the prefix keeps its breakpoint and a loop's step (a transcript,
or the first step of one: ``may_call_tools``) gets sliding ones: the last block of the last
message, and of the message that ended the step before (which the previous request marked), within
the protocol's four. A single-shot phase's request is as it was.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from phasewise.problems import ProblemKind, ProviderError
from phasewise.providers.base import (
    ChatRequest,
    Completion,
    Endpoint,
    SdkAdapter,
    StreamClock,
    TextSink,
    Timeouts,
    call_failed,
    check_stream_response,
    finish_answer,
    guard_content_type,
    sdk_timeout,
)
from phasewise.providers.classify import Origin
from phasewise.providers.turns import AssistantTurn, ToolCall, Turn, wire_id

MAX_BREAKPOINTS = 4  # cache_control blocks a request may carry
_EPHEMERAL = {"type": "ephemeral"}


def render_turns(turns: tuple[Turn, ...]) -> list[dict[str, Any]]:
    """The transcript as Messages: ``tool_use`` ids in the form the protocol takes (``wire_id``, the
    same for a call and its result); a call whose arguments were no JSON object shows ``{}`` (its
    result says what was wrong). A turn with nothing to say is left out."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        content: list[dict[str, Any]]
        if isinstance(turn, AssistantTurn):
            content = [{"type": "text", "text": turn.text}] if turn.text.strip() else []
            content += [{"type": "tool_use", "id": wire_id(c.id), "name": c.name,
                         "input": c.input if c.input is not None else {}} for c in turn.calls]
            role = "assistant"
        else:
            content = [{"type": "tool_result", "tool_use_id": wire_id(r.call_id), "content": r.content,
                        "is_error": r.is_error} for r in turn.results]
            content += [{"type": "text", "text": turn.text}] if turn.text.strip() else []
            role = "user"
        if content:
            messages.append({"role": role, "content": content})
    return messages


def mark_transcript(params: dict[str, Any]) -> None:
    """Sliding ``cache_control`` breakpoints on the transcript's end: the last message's last block,
    then the last block of the message two before it (the previous step's end, so the step before
    is read even when this one added more than the cache's 20-block look-back), never past the
    four breakpoints a request may carry (those already on tools and system count)."""
    messages = params["messages"]
    system = params["system"] if isinstance(params["system"], list) else []
    blocks = [*params.get("tools", ()), *system,
              *(b for m in messages if isinstance(m["content"], list) for b in m["content"])]
    used = sum(1 for b in blocks if "cache_control" in b)
    for index in (len(messages) - 1, len(messages) - 3):
        if index < 0 or used >= MAX_BREAKPOINTS:
            break
        message = messages[index]
        if isinstance(message["content"], str):
            if not message["content"]:
                continue
            message["content"] = [{"type": "text", "text": message["content"]}]
        message["content"][-1] = {**message["content"][-1], "cache_control": _EPHEMERAL}
        used += 1


def _tool_call(block: Any) -> ToolCall:
    """A whole answer's ``tool_use`` block (its ``input`` an object; a server's odd string kept raw)."""
    value = getattr(block, "input", None)
    raw = value if isinstance(value, str) else json.dumps(value if value is not None else {})
    return ToolCall.read(getattr(block, "id", "") or "", getattr(block, "name", "") or "", raw)


class AnthropicMessagesAdapter(SdkAdapter):
    protocol = "anthropic"

    def _client(self, endpoint: Endpoint) -> Any:
        def build(http_client: Any) -> Any:
            from anthropic import AsyncAnthropic

            creds: dict[str, Any] = (
                {"auth_token": endpoint.key} if endpoint.auth_token else
                {"api_key": endpoint.key or "not-needed"}
            )
            return AsyncAnthropic(
                **creds,
                base_url=endpoint.base_url,
                http_client=http_client,
                max_retries=0,
                default_headers=dict(endpoint.headers) or None,
            )

        return self._clients.get(self.protocol, endpoint, build)

    @staticmethod
    def _params(request: ChatRequest) -> dict[str, Any]:
        # The documents end the system text: tools, system and documents are then one prefix,
        # which tool_choice (it differs between phases) does not invalidate.
        system = f"{request.system}\n\n{request.context}" if request.context else request.system
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "system": ([{"type": "text", "text": system, "cache_control": _EPHEMERAL}]
                       if request.cache_prefix else system),
            "messages": [{"role": "user", "content": request.user}, *render_turns(request.turns)],
        }
        if request.temperature is not None:
            params["temperature"] = min(request.temperature, 1.0)
        if tools := request.declared_tools():
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.schema} for t in tools
            ]
            params["tool_choice"] = (
                {"type": "tool", "name": request.tool.name} if request.tool is not None
                else {"type": "auto"} if request.may_call_tools else {"type": "none"}
            )
        if request.cache_prefix and (request.turns or request.may_call_tools):
            mark_transcript(params)  # a loop's step: the next one reads all of this one
        return params

    @staticmethod
    def _usage(out: Completion, usage: Any, *, with_output: bool = True) -> None:
        """Anthropic's usage in the common form: its ``input_tokens`` leave out cache reads and
        writes, which ``Usage.input_tokens`` counts."""
        read = getattr(usage, "cache_read_input_tokens", None) or 0
        write = getattr(usage, "cache_creation_input_tokens", None) or 0
        out.usage.input_tokens = (getattr(usage, "input_tokens", None) or 0) + read + write
        out.usage.cache_read_tokens, out.usage.cache_write_tokens = read, write
        if with_output:
            out.usage.output_tokens = getattr(usage, "output_tokens", None) or 0

    async def _complete(
        self, endpoint: Endpoint, request: ChatRequest, on_text: TextSink, timeouts: Timeouts
    ) -> Completion:
        secrets = (endpoint.key or "",)
        origin = Origin(endpoint.family, self.protocol)
        client = self._client(endpoint)
        clock = StreamClock(timeouts)
        out = Completion()
        stream: Any = None
        text: list[str] = []
        answered = False  # a 200 arrived: a broken connection now is a stream cut short
        try:
            if not request.stream:
                raw = await clock.within_first(
                    client.messages.with_raw_response.create(
                        **self._params(request), timeout=sdk_timeout(timeouts)
                    )
                )
                answered = True
                out.headers = dict(raw.headers)
                guard_content_type(out.headers)
                message = await clock.within_first(raw.parse())
                clock.mark_first()
                for block in message.content:
                    if block.type == "text":
                        text.append(block.text)
                    elif block.type == "tool_use":
                        out.tool_calls.append(_tool_call(block))
                out.text = "".join(text)
                if out.text:
                    on_text(out.text)
                self._usage(out, message.usage)
                out.stop_reason = message.stop_reason
                out.request_id = out.headers.get("request-id")
                return self._finish(out, clock, stopped=True)
            stream = await clock.within_first(
                client.messages.create(**self._params(request), stream=True,
                                       timeout=sdk_timeout(timeouts))
            )
            answered = True
            out.headers = dict(stream.response.headers)
            out.request_id = out.headers.get("request-id")
            await clock.within_first(check_stream_response(stream.response, secrets, origin))
            calls: dict[int, tuple[Any, list[str]]] = {}  # block index → (tool_use block, input pieces)
            current: int | None = None  # the tool_use block open now (for a delta without an index)
            stopped = False
            async for event in clock.items(stream):
                kind = event.type
                if kind == "message_start":
                    self._usage(out, event.message.usage, with_output=False)
                elif kind == "content_block_start":
                    current = None
                    if event.content_block.type == "tool_use":
                        clock.mark_first()
                        current = event.index if event.index is not None else len(calls)
                        calls[current] = (event.content_block, [])
                elif kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        clock.mark_first()
                        text.append(delta.text)
                        on_text(delta.text)
                    elif delta.type == "input_json_delta":
                        at = event.index if event.index in calls else current
                        if at is not None:
                            calls[at][1].append(delta.partial_json or "")
                elif kind == "content_block_stop":
                    current = None
                elif kind == "message_delta":
                    out.stop_reason = event.delta.stop_reason or out.stop_reason
                    if event.usage is not None:
                        out.usage.output_tokens = event.usage.output_tokens or 0
                elif kind == "message_stop":
                    stopped = True
            out.text = "".join(text)
            for block, parts in (calls[i] for i in sorted(calls)):
                # a server may send the whole input in the start block instead of in pieces
                streamed = "".join(parts)
                out.tool_calls.append(_tool_call(block) if not streamed.strip() else
                                      ToolCall.read(block.id or "", block.name or "", streamed))
            return self._finish(out, clock, stopped=stopped)
        except Exception as exc:
            raise call_failed(exc, secrets, streamed="".join(text), mid_stream=answered, origin=origin) from None
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.close()

    @staticmethod
    def _finish(out: Completion, clock: StreamClock, *, stopped: bool) -> Completion:
        """The answer, or why it is not one: cut short, refused, empty."""
        if not stopped:
            raise ProviderError(
                ProblemKind.SERVER_ERROR,
                "the stream ended before the answer was complete (no message_stop)",
                request_id=out.request_id,
            )
        if out.stop_reason == "refusal":
            raise ProviderError(
                ProblemKind.CONTENT_FILTER, "the model refused to answer", request_id=out.request_id,
            )
        return finish_answer(out, clock)

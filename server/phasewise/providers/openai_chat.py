"""The OpenAI chat-completions protocol over the official ``openai`` SDK.

Covers OpenAI and every OpenAI-compatible provider (Z.AI, DeepSeek, Qwen, MiniMax, Moonshot,
OpenRouter, Ollama, vLLM, LiteLLM, ...). Streams text and tool-call deltas, reads usage, and
treats a stream that ends without a finish reason, an error chunk, a MiniMax ``base_resp``
error, an HTML page, a JSON body where events were asked for, or an empty answer as failures,
never as a short success.

A transcript (``ChatRequest.turns``) becomes assistant messages with ``tool_calls`` (ids as the
model sent them), each followed by one ``role: "tool"`` message per result (an error result starts
with "Error: ": the protocol has no flag for it) and the loop's word as a user message, if any.
Every tool call of an answer is read, by its stream ``index``, its arguments joined from pieces.

The messages and tools reach the SDK as ``extra_body``, already in the wire's shape: its typed
arguments go through a transform that walks every message against the parameter types (about half
a millisecond a message on a loop's step, so a loop's server time grew with its transcript;
bench/RESULTS.md), and plain strings and dicts come out of it unchanged.
"""

from __future__ import annotations

import contextlib
import inspect
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
from phasewise.providers.classify import Origin, classify, minimax_status
from phasewise.providers.turns import AssistantTurn, ToolCall, Turn


def render_turns(turns: tuple[Turn, ...]) -> list[dict[str, Any]]:
    """The transcript as Chat Completions messages. A call whose arguments were no JSON object is
    sent back as ``{}`` (servers that fill a chat template parse them and would refuse the whole
    request; its result says what was wrong). A turn with nothing to say is left out."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if isinstance(turn, AssistantTurn):
            if not turn.text and not turn.calls:
                continue
            message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
            if turn.calls:
                message["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": c.arguments if c.input is not None else "{}"}}
                    for c in turn.calls]
            messages.append(message)
            continue
        messages += [{"role": "tool", "tool_call_id": r.call_id,
                      "content": f"Error: {r.content}" if r.is_error else r.content} for r in turn.results]
        if turn.text.strip():
            messages.append({"role": "user", "content": turn.text})
    return messages


class CallPieces:
    """Streamed tool calls put together: pieces go to the call of their ``index``; a piece with a
    new id at an index already taken opens another call (servers that number every call 0)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._at: dict[int, int] = {}

    def add(self, piece: Any) -> None:
        index = piece.index if isinstance(piece.index, int) else 0
        pos = self._at.get(index)
        if pos is None or (piece.id and self.calls[pos]["id"] and piece.id != self.calls[pos]["id"]):
            pos = self._at[index] = len(self.calls)
            self.calls.append({"id": "", "name": "", "args": []})
        call = self.calls[pos]
        call["id"] = call["id"] or piece.id or ""
        if piece.function is not None:
            call["name"] = call["name"] or piece.function.name or ""
            if piece.function.arguments:
                call["args"].append(piece.function.arguments)

    def read(self) -> list[ToolCall]:
        return [ToolCall.read(c["id"], c["name"], "".join(c["args"])) for c in self.calls]


def read_usage(out: Completion, usage: Any) -> None:
    """OpenAI-protocol usage, cached tokens included: ``prompt_tokens_details.cached_tokens``
    (OpenAI, Z.AI, DashScope) or ``prompt_cache_hit_tokens`` (DeepSeek); both are part of
    ``prompt_tokens``. None of these providers bills cache writes separately."""
    out.usage.input_tokens = usage.prompt_tokens or 0
    out.usage.output_tokens = usage.completion_tokens or 0
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    if not cached:
        extra = getattr(usage, "model_extra", None) or {}
        hit = extra.get("prompt_cache_hit_tokens")
        cached = hit if isinstance(hit, int) else 0
    out.usage.cache_read_tokens = min(int(cached or 0), out.usage.input_tokens)


class OpenAIChatAdapter(SdkAdapter):
    protocol = "openai"

    def _client(self, endpoint: Endpoint) -> Any:
        def build(http_client: Any) -> Any:
            from openai import AsyncOpenAI

            return AsyncOpenAI(
                api_key=endpoint.key or "not-needed",
                base_url=endpoint.base_url,
                http_client=http_client,
                max_retries=0,
                default_headers=dict(endpoint.headers) or None,
            )

        return self._clients.get(self.protocol, endpoint, build)

    def _params(self, endpoint: Endpoint, request: ChatRequest) -> dict[str, Any]:
        user = f"{request.context}\n{request.user}" if request.context else request.user
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": user},
                *render_turns(request.turns),
            ],
        }
        if request.cache_key:
            params["prompt_cache_key"] = request.cache_key
        # OpenAI's own newer models take max_completion_tokens; compatible servers max_tokens.
        if endpoint.provider == "openai":
            params["max_completion_tokens"] = request.max_tokens
        else:
            params["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if tools := request.declared_tools():
            params["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.schema}}
                for t in tools
            ]
            params["tool_choice"] = (
                {"type": "function", "function": {"name": request.tool.name}} if request.tool is not None
                else "auto" if request.may_call_tools else "none"
            )
        return params

    @staticmethod
    def _sdk_args(params: dict[str, Any]) -> dict[str, Any]:
        """``params`` as ``create`` arguments: the (large) messages and tools as ``extra_body``, which
        the SDK sends as given, over the empty message list it requires."""
        passed = {k: params[k] for k in ("messages", "tools") if k in params}
        return {**{k: v for k, v in params.items() if k not in passed}, "messages": [], "extra_body": passed}

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
                    client.chat.completions.with_raw_response.create(
                        **self._sdk_args(self._params(endpoint, request)), timeout=sdk_timeout(timeouts)
                    )
                )
                answered = True
                out.headers = dict(raw.headers)
                guard_content_type(out.headers)
                whole: Completion = await clock.within_first(self._whole(raw, out, clock, on_text, secrets, origin))
                return whole
            stream = await clock.within_first(
                client.chat.completions.create(
                    **self._sdk_args(self._params(endpoint, request)),
                    stream=True,
                    stream_options={"include_usage": True},
                    timeout=sdk_timeout(timeouts),
                )
            )
            answered = True
            out.headers = dict(stream.response.headers)
            out.request_id = out.headers.get("x-request-id")
            await clock.within_first(check_stream_response(stream.response, secrets, origin))
            calls = CallPieces()
            async for chunk in clock.items(stream):
                extra = getattr(chunk, "model_extra", None) or {}
                if minimax_status(extra) is not None:
                    raise classify(None, extra, out.headers, origin=origin, secrets=secrets)
                if chunk.usage is not None:
                    read_usage(out, chunk.usage)
                for choice in chunk.choices or ():
                    delta = choice.delta
                    if delta is not None and delta.content:
                        clock.mark_first()
                        text.append(delta.content)
                        on_text(delta.content)
                    for piece in (delta.tool_calls or ()) if delta is not None else ():
                        clock.mark_first()
                        calls.add(piece)
                    if choice.finish_reason:
                        out.stop_reason = choice.finish_reason
            out.text = "".join(text)
            out.tool_calls = calls.read()
            return self._finish(out, clock)
        except Exception as exc:
            raise call_failed(exc, secrets, streamed="".join(text), mid_stream=answered, origin=origin) from None
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.close()

    async def _whole(self, raw: Any, out: Completion, clock: StreamClock, on_text: TextSink,
                     secrets: tuple[str, ...], origin: Origin) -> Completion:
        try:
            body = json.loads(await raw.http_response.aread())
        except ValueError:
            raise ProviderError(
                ProblemKind.SERVER_ERROR, "the answer was not JSON (not the provider's protocol: a proxy page?)"
            ) from None
        if minimax_status(body) is not None or (isinstance(body, dict) and "error" in body):
            raise classify(None, body, out.headers, origin=origin, secrets=secrets)
        # The openai SDK's raw response parses synchronously (anthropic's is a coroutine).
        completion = raw.parse()
        if inspect.isawaitable(completion):
            completion = await completion
        clock.mark_first()
        choice = completion.choices[0] if completion.choices else None
        if choice is not None:
            out.text = choice.message.content or ""
            if out.text:
                on_text(out.text)
            for call in choice.message.tool_calls or ():
                function = getattr(call, "function", None)  # a "custom" tool call has none
                if function is not None:
                    out.tool_calls.append(ToolCall.read(call.id or "", function.name or "", function.arguments))
            out.stop_reason = choice.finish_reason
        if completion.usage is not None:
            read_usage(out, completion.usage)
        out.request_id = out.headers.get("x-request-id")
        return self._finish(out, clock)

    @staticmethod
    def _finish(out: Completion, clock: StreamClock) -> Completion:
        """The answer, or why it is not one: cut short, ended by an error, filtered, empty."""
        if out.stop_reason is None:
            raise ProviderError(
                ProblemKind.SERVER_ERROR,
                "the stream ended before the answer was complete (no finish reason, no [DONE])",
                request_id=out.request_id,
            )
        if out.stop_reason == "error":
            # OpenRouter ends a failed upstream generation with finish_reason "error".
            raise ProviderError(
                ProblemKind.SERVER_ERROR, "the provider ended the answer with an error (finish_reason \"error\")",
                request_id=out.request_id,
            )
        if out.stop_reason == "content_filter":
            raise ProviderError(
                ProblemKind.CONTENT_FILTER, "the provider's content filter stopped the answer",
                request_id=out.request_id,
            )
        return finish_answer(out, clock)

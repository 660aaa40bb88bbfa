"""The OpenAI chat-completions protocol over the official ``openai`` SDK.

Covers OpenAI and every OpenAI-compatible provider (Z.AI, DeepSeek, Qwen, MiniMax, Moonshot,
OpenRouter, Ollama, vLLM, LiteLLM, ...). Streams text and tool-call deltas, reads usage, and
treats a stream that ends without a finish reason, an error chunk, a MiniMax ``base_resp``
error, an HTML page, a JSON body where events were asked for, or an empty answer as failures,
never as a short success.
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
                {"type": "function", "function": {"name": request.tool.name}} if request.tool is not None else "none"
            )
        return params

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
                        **self._params(endpoint, request), timeout=sdk_timeout(timeouts)
                    )
                )
                answered = True
                out.headers = dict(raw.headers)
                guard_content_type(out.headers)
                whole: Completion = await clock.within_first(self._whole(raw, out, clock, on_text, secrets, origin))
                return whole
            stream = await clock.within_first(
                client.chat.completions.create(
                    **self._params(endpoint, request),
                    stream=True,
                    stream_options={"include_usage": True},
                    timeout=sdk_timeout(timeouts),
                )
            )
            answered = True
            out.headers = dict(stream.response.headers)
            out.request_id = out.headers.get("x-request-id")
            await clock.within_first(check_stream_response(stream.response, secrets, origin))
            calls: dict[int, dict[str, Any]] = {}
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
                    for call in (delta.tool_calls or ()) if delta is not None else ():
                        clock.mark_first()
                        slot = calls.setdefault(call.index or 0, {"name": "", "args": []})
                        if call.function is not None:
                            if call.function.name:
                                slot["name"] = call.function.name
                            if call.function.arguments:
                                slot["args"].append(call.function.arguments)
                    if choice.finish_reason:
                        out.stop_reason = choice.finish_reason
            out.text = "".join(text)
            if calls:
                first = calls[min(calls)]
                out.tool_input_raw = "".join(first["args"])
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
            if choice.message.tool_calls:
                out.tool_input_raw = choice.message.tool_calls[0].function.arguments
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

"""The OpenAI chat-completions protocol over the official ``openai`` SDK.

Covers OpenAI and every OpenAI-compatible provider (Z.AI, DeepSeek, Qwen, MiniMax, Moonshot,
OpenRouter, Ollama, vLLM, LiteLLM, ...). Streams text and tool-call deltas, reads usage, and
treats a stream that ends without a finish reason, an error chunk, a MiniMax ``base_resp``
error, an HTML page or an empty answer as failures, never as a short success.
May not import: edge, phases, router.
"""

from __future__ import annotations

import json
from typing import Any

from phasewise.problems import ProblemKind, ProviderError
from phasewise.providers.base import (
    ChatRequest,
    Completion,
    Endpoint,
    SdkClients,
    StreamClock,
    TextSink,
    Timeouts,
    from_sdk_exception,
    guard_content_type,
    sdk_timeout,
)
from phasewise.providers.classify import classify, minimax_status


class OpenAIChatAdapter:
    protocol = "openai"

    def __init__(self, clients: SdkClients) -> None:
        self._clients = clients

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
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
        }
        # OpenAI's own newer models take max_completion_tokens; compatible servers max_tokens.
        if endpoint.provider == "openai":
            params["max_completion_tokens"] = request.max_tokens
        else:
            params["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.tool is not None:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": request.tool.name,
                        "description": request.tool.description,
                        "parameters": request.tool.schema,
                    },
                }
            ]
            params["tool_choice"] = {"type": "function", "function": {"name": request.tool.name}}
        return params

    async def complete(
        self, endpoint: Endpoint, request: ChatRequest, on_text: TextSink, timeouts: Timeouts
    ) -> Completion:
        secrets = (endpoint.key or "",)
        client = self._client(endpoint)
        clock = StreamClock(timeouts)
        out = Completion()
        stream: Any = None
        try:
            if not request.stream:
                raw = await clock.within_first(
                    client.chat.completions.with_raw_response.create(
                        **self._params(endpoint, request), timeout=sdk_timeout(timeouts)
                    )
                )
                out.headers = dict(raw.headers)
                guard_content_type(out.headers)
                return await self._whole(raw, out, clock, on_text, secrets)
            stream = await clock.within_first(
                client.chat.completions.create(
                    **self._params(endpoint, request),
                    stream=True,
                    stream_options={"include_usage": True},
                    timeout=sdk_timeout(timeouts),
                )
            )
            out.headers = dict(stream.response.headers)
            out.request_id = out.headers.get("x-request-id")
            guard_content_type(out.headers)
            calls: dict[int, dict[str, Any]] = {}
            text: list[str] = []
            async for chunk in clock.items(stream):
                extra = getattr(chunk, "model_extra", None) or {}
                if minimax_status(extra) is not None:
                    err = classify(None, extra, out.headers, secrets=secrets)
                    err.after_output = bool(text)
                    err.partial_text = "".join(text) or None
                    raise err
                if chunk.usage is not None:
                    out.usage.input_tokens = chunk.usage.prompt_tokens or 0
                    out.usage.output_tokens = chunk.usage.completion_tokens or 0
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
        except ProviderError as err:
            err.partial_text = err.partial_text or (out.text or None)
            raise
        except Exception as exc:
            failure = from_sdk_exception(exc, secrets)
            raise failure from None
        finally:
            if stream is not None:
                await stream.close()

    async def _whole(self, raw: Any, out: Completion, clock: StreamClock, on_text: TextSink,
               secrets: tuple[str, ...]) -> Completion:
        try:
            body = json.loads(raw.http_response.text)
        except ValueError:
            raise ProviderError(
                ProblemKind.SERVER_ERROR, "the answer was not JSON (a proxy page?)"
            ) from None
        if minimax_status(body) is not None or (isinstance(body, dict) and "error" in body):
            raise classify(None, body, out.headers, secrets=secrets)
        completion = await raw.parse()
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
            out.usage.input_tokens = completion.usage.prompt_tokens or 0
            out.usage.output_tokens = completion.usage.completion_tokens or 0
        out.request_id = out.headers.get("x-request-id")
        return self._finish(out, clock)

    @staticmethod
    def _finish(out: Completion, clock: StreamClock) -> Completion:
        out.first_token_ms = clock.first_token_ms
        out.total_ms = clock.elapsed_ms()
        if out.stop_reason is None:
            raise ProviderError(
                ProblemKind.SERVER_ERROR,
                "the stream ended before the answer was complete (no finish reason)",
                partial_text=out.text or None,
                after_output=bool(out.text),
                request_id=out.request_id,
            )
        if out.stop_reason == "content_filter":
            raise ProviderError(
                ProblemKind.CONTENT_FILTER, "the provider's content filter stopped the answer",
                partial_text=out.text or None, request_id=out.request_id,
            )
        if out.tool_input_raw is not None:
            try:
                parsed = json.loads(out.tool_input_raw or "{}")
            except ValueError:
                parsed = None
            out.tool_input = parsed if isinstance(parsed, dict) else None
        if not out.text.strip() and out.tool_input_raw is None:
            raise ProviderError(
                ProblemKind.SERVER_ERROR, "the provider returned an empty answer",
                request_id=out.request_id,
            )
        return out

    async def list_models(self, endpoint: Endpoint, timeouts: Timeouts) -> list[str]:
        client = self._client(endpoint)
        clock = StreamClock(timeouts)
        try:
            page = await clock.within_first(client.models.list(timeout=sdk_timeout(timeouts)))
            return sorted(m.id for m in page.data)
        except ProviderError:
            raise
        except Exception as exc:
            raise from_sdk_exception(exc, (endpoint.key or "",)) from None

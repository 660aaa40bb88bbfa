"""The Anthropic messages protocol over the official ``anthropic`` SDK.

Serves Anthropic and the Anthropic-compatible endpoints (Z.AI, DeepSeek, MiniMax). Streams text
and ``tool_use`` input, reads usage from ``message_start``/``message_delta``, and treats an
``error`` event, a stream without ``message_stop``, a page that is not the protocol or an empty
answer as failures, never as a short success.
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
            "system": ([{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
                       if request.cache_prefix else system),
            "messages": [{"role": "user", "content": request.user}],
        }
        if request.temperature is not None:
            params["temperature"] = min(request.temperature, 1.0)
        if tools := request.declared_tools():
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.schema} for t in tools
            ]
            params["tool_choice"] = (
                {"type": "tool", "name": request.tool.name} if request.tool is not None else {"type": "none"}
            )
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
                    elif block.type == "tool_use" and out.tool_input_raw is None:
                        out.tool_input_raw = json.dumps(block.input)
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
            tool_parts: list[str] | None = None
            in_tool = False
            stopped = False
            async for event in clock.items(stream):
                kind = event.type
                if kind == "message_start":
                    self._usage(out, event.message.usage, with_output=False)
                elif kind == "content_block_start":
                    in_tool = event.content_block.type == "tool_use" and tool_parts is None
                    if in_tool:
                        clock.mark_first()
                        tool_parts = []
                elif kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        clock.mark_first()
                        text.append(delta.text)
                        on_text(delta.text)
                    elif delta.type == "input_json_delta" and in_tool and tool_parts is not None:
                        tool_parts.append(delta.partial_json)
                elif kind == "content_block_stop":
                    in_tool = False
                elif kind == "message_delta":
                    out.stop_reason = event.delta.stop_reason or out.stop_reason
                    if event.usage is not None:
                        out.usage.output_tokens = event.usage.output_tokens or 0
                elif kind == "message_stop":
                    stopped = True
            out.text = "".join(text)
            if tool_parts is not None:
                out.tool_input_raw = "".join(tool_parts)
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

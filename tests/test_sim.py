"""The provider simulator, driven by the real ``openai`` and ``anthropic`` SDKs (never mocked).

Covers both wire protocols (streaming and whole answers, tool calls, usage, model lists), the
deterministic phase answers, the documented fault presets as the SDKs see them, stream faults
(error events, cuts, stalls, HTML, garbage), the control endpoints, and the observability the
rest of the test-suite relies on. No sleeps: tests wait for the simulator's own events.
"""

from __future__ import annotations

import ast
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from phasewise.phases.formats import JSON_BLOCK, TOOL_CALL
from phasewise.phases.prompts import EDIT_TOOL_SPEC, FINDINGS_TOOL_SPEC, ToolSpec, system_prompt, user_prompt
from phasewise.sim import Simulator, SimulatorThread, preset_names, run_cli
from phasewise.sim.cli import banner

DOC = """import os


def load(path, cache=[]):
    print("loading", path)
    try:
        return open(path).read()
    except:
        return None  # TODO handle errors


class Store:
    def get(self, key):
        if key == None:
            return None
        return load(key)
"""


# --------------------------------------------------------------------------- fixtures & helpers


@pytest.fixture(scope="module")
def sim_thread() -> Iterator[SimulatorThread]:
    with SimulatorThread(first_token_ms=0, chunk_interval_ms=0) as thread:
        yield thread


@pytest.fixture
def sim(sim_thread: SimulatorThread) -> Iterator[SimulatorThread]:
    sim_thread.reset()
    yield sim_thread
    sim_thread.reset()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient() as client:
        yield client


def oai(sim: SimulatorThread | Simulator, http: httpx2.AsyncClient, name: str = "sim-openai",
        key: str = "sk-test-openai") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=sim.base_url(name, "openai"), http_client=http, max_retries=0)


def ant(sim: SimulatorThread | Simulator, http: httpx2.AsyncClient, name: str = "sim-claude",
        key: str = "sk-ant-test") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key, base_url=sim.base_url(name, "anthropic"), http_client=http,
                                    max_retries=0)


def prompts(phase: str, instruction: str, *, tool: ToolSpec | None = None, use_tools: bool = True,
            text: str = DOC, path: str = "src/app.py", language: str = "python") -> tuple[str, str]:
    answer = (TOOL_CALL if use_tools else JSON_BLOCK).prompt(tool) if tool is not None else None
    return (system_prompt(phase, answer=answer),
            user_prompt(instruction=instruction, path=path, language=language, text=text))


def oai_messages(system: str, user: str) -> list[Any]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def oai_tools(tool: ToolSpec) -> list[Any]:
    return [{"type": "function", "function": {"name": tool.name, "description": tool.description,
                                              "parameters": tool.schema}}]


def ant_tools(tool: ToolSpec) -> list[Any]:
    return [{"name": tool.name, "description": tool.description, "input_schema": tool.schema}]


def apply_edits(text: str, edits: list[dict[str, Any]]) -> str:
    lines = text.split("\n")
    for edit in sorted(edits, key=lambda e: e["start_line"], reverse=True):
        start, end = edit["start_line"], edit["end_line"]
        assert 1 <= start <= len(lines) + 1 and start - 1 <= end <= len(lines)
        lines[start - 1 : end] = edit["new_text"].split("\n") if edit["new_text"] else []
    return "\n".join(lines)


PLAN = prompts("plan", "add caching to the loader")


async def oai_stream_text(client: openai.AsyncOpenAI, **extra: Any) -> tuple[str, str | None, list[Any]]:
    stream = await client.chat.completions.create(model="gpt-sim", messages=oai_messages(*PLAN), stream=True,
                                                  **extra)
    text, finish, chunks = [], None, []
    async for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    return "".join(text), finish, chunks


# --------------------------------------------------------------------------- OpenAI protocol


async def test_openai_stream_plan_with_usage_and_record(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    text, finish, chunks = await oai_stream_text(oai(sim, http), stream_options={"include_usage": True})
    assert finish == "stop"
    assert text.startswith('_(simulated by sim provider "sim-openai", model gpt-sim)_')
    assert "add caching to the loader" in text and "`src/app.py`" in text
    assert "`load` (line 4)" in text and "`Store` (line 12)" in text
    assert len(chunks) > 5
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    [rec] = await sim.await_requests(1, finished=True)
    assert (rec.provider, rec.protocol, rec.endpoint, rec.model, rec.stream) == (
        "sim-openai", "openai", "chat", "gpt-sim", True)
    assert rec.phase == "plan" and rec.outcome == "ok" and rec.status == 200
    assert rec.api_key == "sk-test-openai"
    assert "authorization" not in rec.headers
    assert "sk-test-openai" not in repr(rec)
    assert rec.body["messages"][1]["content"] == PLAN[1]


async def test_openai_stream_without_include_usage_has_no_usage(sim: SimulatorThread,
                                                               http: httpx2.AsyncClient) -> None:
    _text, finish, chunks = await oai_stream_text(oai(sim, http))
    assert finish == "stop"
    assert all(c.usage is None for c in chunks)


async def test_openai_whole_answer_is_deterministic(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    client = oai(sim, http)
    first = await client.chat.completions.create(model="gpt-sim", messages=oai_messages(*PLAN))
    second = await client.chat.completions.create(model="gpt-sim", messages=oai_messages(*PLAN))
    assert first.choices[0].finish_reason == "stop"
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage is not None and first.usage.completion_tokens > 0
    raw = await client.chat.completions.with_raw_response.create(model="gpt-sim", messages=oai_messages(*PLAN))
    assert re.fullmatch(r"req_sim_\d+", raw.headers["x-request-id"])


async def test_openai_streamed_tool_call_renames(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    system, user = prompts("code", "Rename load to read_file", tool=EDIT_TOOL_SPEC)
    stream = await oai(sim, http).chat.completions.create(
        model="gpt-sim", messages=oai_messages(system, user), tools=oai_tools(EDIT_TOOL_SPEC),
        tool_choice={"type": "function", "function": {"name": "apply_edits"}}, stream=True)
    pieces, names, finish = [], [], None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                assert call.index == 0
                if call.function and call.function.name:
                    names.append(call.function.name)
                if call.function and call.function.arguments:
                    pieces.append(call.function.arguments)
            finish = choice.finish_reason or finish
    assert names == ["apply_edits"] and finish == "tool_calls"
    assert len(pieces) >= 3
    args = json.loads("".join(pieces))
    assert args["summary"] == "Renamed `load` to `read_file` on 2 lines."
    new = apply_edits(DOC, args["edits"])
    assert "def read_file(path, cache=[]):" in new and "return read_file(key)" in new
    assert not re.search(r"\bload\b", new)


async def test_openai_whole_tool_call_adds_docstring(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    system, user = prompts("code", "document the loader", tool=EDIT_TOOL_SPEC)
    done = await oai(sim, http).chat.completions.create(
        model="gpt-sim", messages=oai_messages(system, user), tools=oai_tools(EDIT_TOOL_SPEC))
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "apply_edits"
    args = json.loads(call.function.arguments)
    assert args["edits"] == [{"start_line": 5, "end_line": 4, "new_text": '    """Load."""'}]
    ast.parse(apply_edits(DOC, args["edits"]))


async def test_text_format_code_answer_has_one_json_block(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    js = "const a = 1;\n\nexport function fetchUser(id) {\n  return get(id);\n}\n"
    system, user = prompts("code", "add retries", tool=EDIT_TOOL_SPEC, use_tools=False, text=js, path="a.js",
                           language="javascript")
    done = await oai(sim, http).chat.completions.create(model="m", messages=oai_messages(system, user))
    content = done.choices[0].message.content or ""
    block = re.search(r"```json\n(.*)\n```$", content, re.S)
    assert block is not None
    args = json.loads(block.group(1))
    assert args["edits"] == [{"start_line": 3, "end_line": 2, "new_text": "// add retries"}]


# --------------------------------------------------------------------------- Anthropic protocol


async def test_anthropic_stream_review_tool_use(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    system, user = prompts("review", "review this", tool=FINDINGS_TOOL_SPEC)
    async with ant(sim, http).messages.stream(
        model="claude-sim", max_tokens=2000, system=system, messages=[{"role": "user", "content": user}],
        tools=ant_tools(FINDINGS_TOOL_SPEC), tool_choice={"type": "tool", "name": "report_findings"},
    ) as stream:
        events = [event.type async for event in stream]
        message = await stream.get_final_message()
    assert events.count("input_json") >= 3 and events[-1] == "message_stop"
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    [block] = message.content
    assert block.type == "tool_use" and block.name == "report_findings"
    args: Any = block.input
    found = {(f["start_line"], f["severity"]) for f in args["findings"]}
    assert found == {(4, "error"), (5, "warning"), (8, "warning"), (9, "information"), (14, "warning")}
    by_line = {f["start_line"]: f for f in args["findings"]}
    assert by_line[8]["suggestion"] == "    except Exception:"
    assert by_line[14]["suggestion"] == "        if key is None:"
    assert args["summary"].startswith("Reviewed `src/app.py`: 5 findings")
    [rec] = sim.requests
    assert rec.protocol == "anthropic" and rec.phase == "review" and rec.api_key == "sk-ant-test"
    assert "x-api-key" not in rec.headers and "anthropic-version" in rec.headers


async def test_anthropic_raw_stream_text_events(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    stream = await ant(sim, http).messages.create(
        model="claude-sim", max_tokens=500, system=PLAN[0], messages=[{"role": "user", "content": PLAN[1]}],
        stream=True)
    kinds, text = [], []
    async for event in stream:
        kinds.append(event.type)
        if event.type == "message_start":
            assert event.message.usage.input_tokens > 0
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text.append(event.delta.text)
        if event.type == "message_delta":
            assert event.delta.stop_reason == "end_turn" and event.usage.output_tokens > 0
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "".join(text).startswith('_(simulated by sim provider "sim-claude", model claude-sim)_')


async def test_anthropic_whole_review_text_format_and_auth_token(sim: SimulatorThread,
                                                                 http: httpx2.AsyncClient) -> None:
    client = anthropic.AsyncAnthropic(auth_token="tok-123", base_url=sim.base_url("zai-anthropic", "anthropic"),
                                      http_client=http, max_retries=0)
    system, user = prompts("review", "review", tool=FINDINGS_TOOL_SPEC, use_tools=False, text="x = 1\n")
    message = await client.messages.create(model="glm-sim", max_tokens=1000, system=system,
                                           messages=[{"role": "user", "content": user}])
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
    block = re.search(r"```json\n(.*)\n```$", message.content[0].text, re.S)
    assert block is not None and json.loads(block.group(1))["findings"] == []
    assert sim.requests[0].api_key == "tok-123"


# --------------------------------------------------------------------------- models, keys, config


async def test_models_listing_in_both_shapes(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.configure("sim-openai", models=["gpt-a", "gpt-b"])
    page = await oai(sim, http).models.list()
    assert [m.id for m in page.data] == ["gpt-a", "gpt-b"] and page.data[0].object == "model"
    apage = await ant(sim, http).models.list()
    assert [m.id for m in apage.data] == ["sim-fast", "sim-smart", "sim-coder", "sim-reviewer"]
    assert apage.data[0].type == "model" and apage.data[0].display_name
    assert apage.has_more is False and apage.last_id == "sim-reviewer"
    recs = await sim.await_requests(2, endpoint="models", finished=True)
    assert [r.protocol for r in recs] == ["openai", "anthropic"]


async def test_explicit_model_list_rejects_unknown_models(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.configure("sim-openai", models=["gpt-a"])
    sim.configure("sim-claude", models=["claude-a"])
    with pytest.raises(openai.NotFoundError) as oerr:
        await oai(sim, http).chat.completions.create(model="gpt-zzz", messages=oai_messages(*PLAN))
    assert oerr.value.code == "model_not_found"
    with pytest.raises(anthropic.NotFoundError) as aerr:
        await ant(sim, http).messages.create(model="claude-zzz", max_tokens=10,
                                             messages=[{"role": "user", "content": "hi"}])
    assert aerr.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    ok = await oai(sim, http).chat.completions.create(model="gpt-a", messages=oai_messages(*PLAN))
    assert ok.choices[0].finish_reason == "stop"


async def test_keys_required_and_rejected(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.configure("locked", require_key=True, reject_keys=["sk-bad"])
    with pytest.raises(openai.AuthenticationError):
        await oai(sim, http, "locked", key="sk-bad").chat.completions.create(model="m", messages=oai_messages(*PLAN))
    with pytest.raises(anthropic.AuthenticationError) as aerr:
        await ant(sim, http, "locked", key="sk-bad").messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert aerr.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    raw = await http.post(f"{sim.url}/locked/v1/chat/completions",
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert raw.status_code == 401
    ok = await oai(sim, http, "locked", key="sk-good").chat.completions.create(model="m",
                                                                              messages=oai_messages(*PLAN))
    assert ok.choices[0].message.content
    # Keys stay in memory for tests, never in the JSON view.
    listing = (await http.get(f"{sim.url}/_sim/requests")).text
    assert "sk-bad" not in listing and "sk-good" not in listing
    assert [r.outcome for r in sim.requests] == ["error:401", "error:401", "error:401", "ok"]


async def test_ratelimit_headers_merged_into_success(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.configure("sim-openai", ratelimit_headers={"x-ratelimit-remaining-requests": "0",
                                                   "x-ratelimit-reset-requests": "2s"})
    sim.add_fault(ratelimit_headers={"anthropic-ratelimit-requests-remaining": "0"}, provider="sim-claude")
    raw = await oai(sim, http).chat.completions.with_raw_response.create(model="m", messages=oai_messages(*PLAN))
    assert raw.headers["x-ratelimit-remaining-requests"] == "0" and raw.headers["x-ratelimit-reset-requests"] == "2s"
    araw = await ant(sim, http).messages.with_raw_response.create(
        model="m", max_tokens=1000, messages=[{"role": "user", "content": "hi"}])
    assert araw.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert (await araw.parse()).stop_reason == "end_turn"
    assert [r.outcome for r in sim.requests] == ["ok", "ok"]


# --------------------------------------------------------------------------- fault presets

PRESET_CASES: list[tuple[str, str, type[Exception], int, str | None]] = [
    ("openai.invalid_api_key", "openai", openai.AuthenticationError, 401, "invalid_api_key"),
    ("openai.insufficient_quota", "openai", openai.RateLimitError, 429, "insufficient_quota"),
    ("openai.model_not_found", "openai", openai.NotFoundError, 404, "model_not_found"),
    ("openai.context_length", "openai", openai.BadRequestError, 400, "context_length_exceeded"),
    ("openai.server_error", "openai", openai.InternalServerError, 500, None),
    ("openai.overloaded", "openai", openai.InternalServerError, 503, None),
    ("openai.region", "openai", openai.PermissionDeniedError, 403, "unsupported_country_region_territory"),
    ("anthropic.billing_error", "anthropic", anthropic.APIStatusError, 402, "billing_error"),
    ("anthropic.request_too_large", "anthropic", anthropic.RequestTooLargeError, 413, "request_too_large"),
    ("anthropic.timeout_error", "anthropic", anthropic.InternalServerError, 504, "timeout_error"),
    ("anthropic.overloaded_error", "anthropic", anthropic.OverloadedError, 529, "overloaded_error"),
    ("zai.1113", "openai", openai.RateLimitError, 429, "1113"),
    ("zai.1211", "openai", openai.BadRequestError, 400, "1211"),
    ("zai.1004", "openai", openai.AuthenticationError, 401, "1004"),
    ("deepseek.insufficient_balance", "openai", openai.APIStatusError, 402, "invalid_request_error"),
    ("deepseek.invalid_params", "openai", openai.UnprocessableEntityError, 422, "invalid_request_error"),
    ("qwen.Arrearage", "openai", openai.BadRequestError, 400, "Arrearage"),
    ("anthropic.credit_balance", "anthropic", anthropic.BadRequestError, 400, "invalid_request_error"),
    ("qwen.Throttling.RateQuota", "openai", openai.RateLimitError, 429, "Throttling.RateQuota"),
    ("moonshot.overloaded", "openai", openai.RateLimitError, 429, None),
    ("openrouter.credits", "openai", openai.APIStatusError, 402, "402"),
    ("openrouter.no_provider", "openai", openai.InternalServerError, 503, "503"),
]


@pytest.mark.parametrize(("preset", "protocol", "exc_type", "status", "code"), PRESET_CASES,
                         ids=[c[0] for c in PRESET_CASES])
async def test_presets_raise_the_sdk_exception(sim: SimulatorThread, http: httpx2.AsyncClient, preset: str,
                                               protocol: str, exc_type: type[Exception], status: int,
                                               code: str | None) -> None:
    sim.add_fault(preset)
    with pytest.raises(exc_type) as err:
        if protocol == "openai":
            await oai(sim, http).chat.completions.create(model="m", messages=oai_messages(*PLAN), stream=True)
        else:
            await ant(sim, http).messages.create(model="m", max_tokens=10, stream=True,
                                                 messages=[{"role": "user", "content": "hi"}])
    exc: Any = err.value
    assert exc.status_code == status
    body = exc.response.json()
    if protocol == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == code
        assert body["request_id"] == exc.response.headers["request-id"]
    elif code is not None:
        assert str(body["error"]["code"]) == code
    [rec] = sim.requests
    assert rec.outcome == f"fault:{preset}" and rec.status == status
    assert sim.faults == []  # consumed


async def test_openai_rate_limit_headers(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault("openai.rate_limit", retry_after=7, retry_after_ms=6500, reset_requests="6s")
    sim.add_fault("openai.rate_limit", retry_after=None, retry_after_date="Wed, 21 Oct 2026 07:28:00 GMT")
    client = oai(sim, http)
    with pytest.raises(openai.RateLimitError) as first:
        await client.chat.completions.create(model="gpt-x", messages=oai_messages(*PLAN))
    h = first.value.response.headers
    assert (h["retry-after"], h["retry-after-ms"], h["x-ratelimit-reset-requests"]) == ("7", "6500", "6s")
    assert h["x-ratelimit-remaining-requests"] == "0" and first.value.code == "rate_limit_exceeded"
    assert "gpt-x" in first.value.message
    with pytest.raises(openai.RateLimitError) as second:
        await client.chat.completions.create(model="gpt-x", messages=oai_messages(*PLAN))
    assert second.value.response.headers["retry-after"] == "Wed, 21 Oct 2026 07:28:00 GMT"
    assert "retry-after-ms" not in second.value.response.headers


async def test_anthropic_rate_limit_headers(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault("anthropic.rate_limit_error", retry_after=3)
    with pytest.raises(anthropic.RateLimitError) as err:
        await ant(sim, http).messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    h = err.value.response.headers
    assert h["retry-after"] == "3" and h["anthropic-ratelimit-requests-remaining"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", h["anthropic-ratelimit-requests-reset"])


async def test_zai_1302_has_no_retry_after(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault("zai.1302")
    with pytest.raises(openai.RateLimitError) as err:
        await oai(sim, http, "zai").chat.completions.create(model="glm-sim", messages=oai_messages(*PLAN))
    assert "retry-after" not in err.value.response.headers
    assert err.value.response.json()["error"]["code"] == "1302"
    assert err.value.code == "1302"


async def test_minimax_base_resp_in_200(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault("minimax.1008")
    sim.add_fault("minimax.1004")
    client = oai(sim, http, "minimax")
    stream = await client.chat.completions.create(model="MiniMax-sim", messages=oai_messages(*PLAN), stream=True)
    chunks = [c async for c in stream]
    assert chunks[0].model_extra is not None
    assert chunks[0].model_extra["base_resp"] == {"status_code": 1008, "status_msg": "insufficient balance"}
    raw = await client.chat.completions.with_raw_response.create(model="MiniMax-sim", messages=oai_messages(*PLAN))
    assert raw.status_code == 200 and json.loads(raw.http_response.text)["base_resp"]["status_code"] == 1004
    assert [r.outcome for r in sim.requests] == ["fault:minimax.1008", "fault:minimax.1004"]


async def test_openrouter_error_chunk_mid_stream(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault("openrouter.stream_error", after_chunks=2)
    stream = await oai(sim, http, "openrouter").chat.completions.create(
        model="anthropic/claude-sim", messages=oai_messages(*PLAN), stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError) as err:
        async for chunk in stream:
            seen.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert len(seen) == 2
    assert not isinstance(err.value, openai.APIStatusError)
    assert err.value.body == {"code": 502, "message": "Provider returned error: upstream disconnected"}


# --------------------------------------------------------------------------- stream faults


async def test_error_event_mid_stream_anthropic(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault(stream="error_event", after_chunks=3, error_type="overloaded_error")
    stream = await ant(sim, http).messages.create(model="m", max_tokens=500, stream=True, system=PLAN[0],
                                                  messages=[{"role": "user", "content": PLAN[1]}])
    deltas = 0
    with pytest.raises(anthropic.APIStatusError) as err:
        async for event in stream:
            deltas += event.type == "content_block_delta"
    assert deltas == 3
    assert err.value.status_code == 200
    assert err.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}  # type: ignore[index]
    [rec] = sim.requests
    assert rec.outcome == "fault:stream:error_event" and rec.chunks_sent == 3


async def test_error_event_mid_stream_openai(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault({"stream": "error_event", "after_chunks": 1, "error_type": "server_error"}, protocol="openai")
    stream = await oai(sim, http).chat.completions.create(model="m", messages=oai_messages(*PLAN), stream=True)
    with pytest.raises(openai.APIError) as err:
        async for _chunk in stream:
            pass
    assert not isinstance(err.value, openai.APIStatusError)
    assert err.value.body["type"] == "server_error"  # type: ignore[index]


async def test_stream_faults_on_whole_answers(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault(stream="error_event", error_type="overloaded_error", protocol="anthropic")
    sim.add_fault(stream="error_event", protocol="openai")
    sim.add_fault(stream="cut")
    with pytest.raises(anthropic.OverloadedError):
        await ant(sim, http).messages.create(model="m", max_tokens=100, messages=[{"role": "user", "content": "x"}])
    raw = await oai(sim, http).chat.completions.with_raw_response.create(model="m", messages=oai_messages(*PLAN))
    assert raw.status_code == 200 and json.loads(raw.http_response.text)["error"]["type"] == "overloaded_error"
    with pytest.raises(openai.APIConnectionError):  # half a body, then the socket closes
        await oai(sim, http).chat.completions.create(model="m", messages=oai_messages(*PLAN))


async def test_model_listing_faults(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault("openai.invalid_api_key", endpoint="models")
    sim.add_fault("anthropic.permission_error", endpoint="any")
    with pytest.raises(openai.AuthenticationError):
        await oai(sim, http).models.list()
    with pytest.raises(anthropic.PermissionDeniedError):
        await ant(sim, http).models.list()
    assert [r.endpoint for r in sim.requests] == ["models", "models"]


async def test_cut_stream_ends_without_terminator(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault(stream="cut", after_chunks=2, protocol="openai")
    sim.add_fault(stream="cut", after_chunks=2, protocol="anthropic")
    text, finish, _chunks = await oai_stream_text(oai(sim, http))
    assert finish is None and text
    stream = await ant(sim, http).messages.create(model="m", max_tokens=500, stream=True, system=PLAN[0],
                                                  messages=[{"role": "user", "content": PLAN[1]}])
    kinds = [event.type async for event in stream]
    assert "message_stop" not in kinds and "message_delta" not in kinds
    assert kinds.count("content_block_delta") == 2
    assert [r.outcome for r in sim.requests] == ["fault:stream:cut"] * 2


async def test_abrupt_cut_is_a_connection_error(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault(stream="cut", after_chunks=1, abrupt=True)
    stream = await oai(sim, http).chat.completions.create(model="m", messages=oai_messages(*PLAN), stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for _chunk in stream:
            pass


async def test_stall_then_client_close_is_observed(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault(stream="stall", after_chunks=1, provider="sim-claude")
    stream = await ant(sim, http).messages.create(model="m", max_tokens=500, stream=True, system=PLAN[0],
                                                  messages=[{"role": "user", "content": PLAN[1]}])
    async for event in stream:
        if event.type == "content_block_delta":
            break  # the one chunk before the stall; then give up, as a timed-out client would
    await stream.close()
    closed = await sim.await_client_close()
    assert closed.provider == "sim-claude" and closed.stream and closed.chunks_sent == 1
    [rec] = sim.requests
    assert rec.outcome == "client-closed" and rec.fault == "stream:stall"
    assert any(c.closed_by == "client" for c in sim.connections)


def test_stall_client_close_blocking_wait(sim: SimulatorThread) -> None:
    sim.add_fault(stream="stall", after_chunks=0)
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    with socket.create_connection((sim.simulator.host, sim.port)) as sock:
        sock.sendall(b"POST /raw/v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    closed = sim.wait_for_client_close()
    assert closed.chunks_sent == 0
    assert sim.wait_for_requests(1, finished=True)[0].outcome == "client-closed"


async def test_html_and_garbage_bodies(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault(stream="html")
    sim.add_fault(stream="garbage")
    client = oai(sim, http)
    raw = await client.chat.completions.with_raw_response.create(model="m", messages=oai_messages(*PLAN))
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/html")
    assert "<html>" in raw.http_response.text and "Bad Gateway" in raw.http_response.text
    with pytest.raises(json.JSONDecodeError):  # the SDK lets the decoder's error through
        await client.chat.completions.create(model="m", messages=oai_messages(*PLAN))
    assert [r.outcome for r in sim.requests] == ["fault:stream:html", "fault:stream:garbage"]


async def test_empty_stream_is_well_formed(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault(stream="empty", protocol="openai")
    sim.add_fault(stream="empty", protocol="anthropic")
    text, finish, _ = await oai_stream_text(oai(sim, http))
    assert (text, finish) == ("", "stop")
    async with ant(sim, http).messages.stream(model="m", max_tokens=100,
                                              messages=[{"role": "user", "content": "hi"}]) as stream:
        message = await stream.get_final_message()
    assert message.content == [] and message.stop_reason == "end_turn"


async def test_close_and_delay_faults(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault(close=True)
    sim.add_fault(delay_ms=60_000)
    client = oai(sim, http)
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=oai_messages(*PLAN))
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=oai_messages(*PLAN), timeout=0.2)
    closed = await sim.await_client_close()
    assert not closed.stream
    assert [r.outcome for r in sim.requests] == ["fault:close", "client-closed"]


async def test_an_answer_cut_at_an_output_limit_says_so_in_each_protocol(sim: SimulatorThread,
                                                                         http: httpx2.AsyncClient) -> None:
    """``cut_at_tokens``: the answer stops there, whatever ``max_tokens`` asked, with each protocol's stop reason."""
    whole, finish, _ = await oai_stream_text(oai(sim, http))
    assert finish == "stop" and len(whole) > 40
    sim.add_fault(cut_at_tokens=10, times=2)
    cut, finish, _ = await oai_stream_text(oai(sim, http), max_tokens=4000)
    assert finish == "length" and cut == whole[:40]
    message = await ant(sim, http).messages.create(model="claude-sim", max_tokens=4000, system=PLAN[0],
                                                   messages=[{"role": "user", "content": PLAN[1]}])
    assert message.stop_reason == "max_tokens" and len(message.content[0].text) == 40
    assert [r.outcome for r in sim.requests] == ["ok", "fault:cut-at-limit", "fault:cut-at-limit"]
    with pytest.raises(ValueError, match="cut_at_tokens"):
        sim.add_fault(cut_at_tokens=0)


# --------------------------------------------------------------------------- rules


async def test_rules_match_in_order_and_count_down(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    sim.add_fault("openai.server_error", provider="other")
    sim.add_fault("openai.overloaded", model="gpt-b", times=2)
    sim.add_fault("openai.server_error", phase="review", times=-1)
    client = oai(sim, http)
    ok = await client.chat.completions.create(model="gpt-a", messages=oai_messages(*PLAN))
    assert ok.choices[0].finish_reason == "stop"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as err:
            await client.chat.completions.create(model="gpt-b", messages=oai_messages(*PLAN))
        assert err.value.status_code == 503
    assert (await client.chat.completions.create(model="gpt-b", messages=oai_messages(*PLAN))).choices
    review = prompts("review", "r", tool=FINDINGS_TOOL_SPEC)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-a", messages=oai_messages(*review))
    await client.models.list()  # model listings do not consume chat rules
    assert [(r.provider, r.phase, r.times) for r in sim.faults] == [("other", None, 1), (None, "review", -1)]


def test_bad_faults_are_refused_when_queued(sim: SimulatorThread) -> None:
    with pytest.raises(ValueError, match="unknown fault preset"):
        sim.add_fault("openai.nope")
    with pytest.raises(ValueError, match="unknown stream fault"):
        sim.add_fault(stream="sideways")
    with pytest.raises(ValueError, match="unknown fault field"):
        sim.add_fault({"stauts": 500})
    with pytest.raises(ValueError, match="protocol"):
        sim.add_fault("openai.server_error", protocol="grpc")
    assert sim.faults == []


def test_preset_catalogue_is_complete() -> None:
    names = set(preset_names())
    wanted = {
        "openai.invalid_api_key", "openai.insufficient_quota", "openai.rate_limit", "openai.model_not_found",
        "openai.context_length", "openai.server_error", "openai.overloaded", "openai.region",
        "anthropic.authentication_error", "anthropic.billing_error", "anthropic.credit_balance",
        "anthropic.permission_error",
        "anthropic.not_found_error", "anthropic.request_too_large", "anthropic.rate_limit_error",
        "anthropic.api_error", "anthropic.timeout_error", "anthropic.overloaded_error",
        "deepseek.insufficient_balance", "deepseek.invalid_params", "deepseek.overloaded", "qwen.InvalidApiKey",
        "qwen.Arrearage", "qwen.ModelNotFound", "qwen.Throttling.RateQuota", "moonshot.overloaded",
        "moonshot.content_filter", "openrouter.credits", "openrouter.moderation", "openrouter.model_down",
        "openrouter.no_provider", "openrouter.stream_error",
        *(f"zai.{c}" for c in (1000, 1001, 1002, 1003, 1004, 1113, 1211, 1261, 1301, 1302, 1303, 1304, 1308,
                               1309, 1310)),
        *(f"minimax.{c}" for c in (1002, 1004, 1008, 1024)),
    }
    assert wanted <= names


# --------------------------------------------------------------------------- control & robustness


async def test_control_endpoints(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    health = (await http.get(f"{sim.url}/_sim/health")).json()
    assert health["ok"] and "SIMULATOR" in health["notice"]
    queued = await http.post(f"{sim.url}/_sim/faults", json={"rules": [
        {"provider": "ctl", "protocol": "anthropic", "times": 1, "fault": "anthropic.api_error"},
        {"provider": "ctl", "fault": {"status": 418, "headers": {"x-teapot": "yes"}, "body": {"error": "tea"}}},
    ]})
    assert queued.json() == {"queued": 2, "pending": 2}
    bad = await http.post(f"{sim.url}/_sim/faults", json={"rules": [{"fault": "no.such"}]})
    assert bad.status_code == 400 and "unknown fault preset" in bad.json()["error"]["message"]
    config = await http.post(f"{sim.url}/_sim/config", json={"provider": "ctl", "models": ["only-me"]})
    assert config.status_code == 200

    with pytest.raises(anthropic.InternalServerError):
        await ant(sim, http, "ctl").messages.create(model="only-me", max_tokens=5,
                                                    messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIStatusError) as teapot:
        await oai(sim, http, "ctl").chat.completions.create(model="only-me", messages=oai_messages(*PLAN))
    assert teapot.value.status_code == 418 and teapot.value.response.headers["x-teapot"] == "yes"
    page = await oai(sim, http, "ctl").models.list()
    assert [m.id for m in page.data] == ["only-me"]

    listing = (await http.get(f"{sim.url}/_sim/requests")).json()["requests"]
    assert [r["outcome"] for r in listing] == ["fault:anthropic.api_error", "fault:status:418", "ok"]
    assert all("api_key" not in r and r["has_key"] for r in listing)
    assert (await http.post(f"{sim.url}/_sim/reset")).json() == {"ok": True}
    assert sim.requests == [] and (await http.get(f"{sim.url}/_sim/nope")).status_code == 404


async def test_malformed_requests_get_protocol_shaped_errors(sim: SimulatorThread,
                                                             http: httpx2.AsyncClient) -> None:
    bad_json = await http.post(f"{sim.url}/p/v1/chat/completions", content=b"{not json",
                               headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
    no_model = await http.post(f"{sim.url}/p/v1/chat/completions", json={"messages": []})
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
    no_max = await http.post(f"{sim.url}/p/v1/messages", headers={"anthropic-version": "2023-06-01"},
                             json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert no_max.status_code == 400
    assert no_max.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    unknown = await http.get(f"{sim.url}/p/v2/whatever")
    assert unknown.status_code == 404 and "error" in unknown.json()
    wrong_method = await http.get(f"{sim.url}/p/v1/chat/completions")
    assert wrong_method.status_code == 405
    with socket.create_connection((sim.simulator.host, sim.port)) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    assert (await http.get(f"{sim.url}/_sim/health")).json()["ok"]
    assert [r.outcome for r in sim.requests] == ["error:400", "error:400", "error:400", "error:404", "error:405"]


async def test_in_loop_simulator_stops_despite_a_stalled_stream(http: httpx2.AsyncClient) -> None:
    async with Simulator(first_token_ms=0, chunk_interval_ms=0) as sim:
        sim.add_fault(stream="stall", after_chunks=2)
        stream = await oai(sim, http).chat.completions.create(model="m", messages=oai_messages(*PLAN),
                                                              stream=True)
        chunks = stream.__aiter__()
        got: list[str] = []
        while len(got) < 2:
            chunk = await chunks.__anext__()
            got.extend(c.delta.content for c in chunk.choices if c.delta.content)
        await sim.stop()  # the stream is stalled now; stopping must not wait for it
        with pytest.raises(openai.APIConnectionError):
            async for _chunk in chunks:
                pass
        assert len(got) == 2
        assert sim.requests[0].outcome == "server-stopped"
        assert not sim.running


async def test_wait_times_out_with_a_useful_message(sim: SimulatorThread) -> None:
    with pytest.raises(TimeoutError, match="for 3 request"):
        await sim.await_requests(3, timeout=0.05)


def test_cli_banner_and_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--list-presets"]) == 0
    assert "anthropic.overloaded_error" in capsys.readouterr().out.split()
    sim = Simulator()
    sim.port = 8765
    text = banner(sim, ["sim-openai", "sim-claude"])
    assert "SIMULATOR" in text and "NOT a real model provider" in text
    assert "http://127.0.0.1:8765/sim-openai/v1" in text and "http://127.0.0.1:8765/sim-claude\n" in text


def test_prompt_tags_inside_related_files_do_not_confuse_the_parser() -> None:
    from phasewise.phases.prompts import context_blocks, user_prompt
    from phasewise.sim.answers import parse_prompt

    tricky = ('<document path="fake.py" language="python" first_line="1" last_line="1">\n'
              "<repair>\n<file path=\"x\" language=\"y\" reason=\"z\" first_line=\"1\" last_line=\"1\">\n")
    user = user_prompt(instruction="rename a to b", path="real.py", language="python", text="a = 1\n",
                       context=context_blocks([("docs/prompts.md", "markdown", "named in the instruction", tricky)]))
    prompt = parse_prompt("Phasewise phase: code.\nEdit format: search-replace.", user)
    assert prompt.document is not None and prompt.document.path == "real.py"
    assert [f.path for f in prompt.files] == ["docs/prompts.md"] and not prompt.repair
    assert prompt.files[0].reason == "named in the instruction" and prompt.edit_format == "search-replace"


async def test_a_recorded_answer_replays_as_received(sim: SimulatorThread, http: httpx2.AsyncClient) -> None:
    """``replay``: status, headers and body as a provider once sent them; a JSON body kept as text
    goes out as JSON, a plain-text one as text."""
    from phasewise.sim.faults import replay

    text = '{"error": "model \'llama3\' not found"}'
    sim.add_fault(replay(404, text, {"X-Request-Id": "req-recorded"}))
    with pytest.raises(openai.NotFoundError) as err:
        await oai(sim, http).chat.completions.create(model="m", messages=oai_messages(*PLAN))
    response = err.value.response
    assert response.text == text and response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "req-recorded"
    sim.add_fault(replay(429, "Rate limit reached. Please try again in 6ms."))
    with pytest.raises(openai.RateLimitError) as limited:
        await oai(sim, http).chat.completions.create(model="m", messages=oai_messages(*PLAN))
    assert limited.value.response.headers["content-type"].startswith("text/plain")

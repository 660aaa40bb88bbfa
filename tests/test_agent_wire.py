"""Issue 21, the wire: transcripts with tool calls on both protocols, caching a loop, the agent sim.

The adapters run against the simulator through the real SDKs; what reached the wire is read from
the simulator's request log, which also checks each transcript as the real APIs do (every call
answered, ids paired, at most four cache breakpoints). The loop of these tests is a stand-in
(``tests.helpers.toolbox``): the real one lives in ``phases``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from phasewise.phases.documents import Document
from phasewise.phases.service import PhaseInput, PhaseService
from phasewise.problems import ProblemKind, ProviderError
from phasewise.providers.anthropic_messages import AnthropicMessagesAdapter, mark_transcript
from phasewise.providers.base import ChatRequest, Completion, Endpoint, HttpPool, SdkClients, Timeouts
from phasewise.providers.catalogue import builtin
from phasewise.providers.openai_chat import CallPieces, OpenAIChatAdapter
from phasewise.providers.pricing import cost
from phasewise.providers.turns import AssistantTurn, ResultsTurn, ToolCall, ToolResult, Turn
from phasewise.router.router import Engine, Preflight, Router, phase_request
from phasewise.router.routes import Keyring
from phasewise.settings import load_settings
from phasewise.sim import SimulatorThread
from tests.helpers.toolbox import CODE_TOOLS, READ_ONLY, Tool, Workspace, run_loop

K = ProblemKind
FILES = {
    "inventory.py": "def load(path):\n    with open(path) as f:\n        return f.read()\n\n\n"
                    "def main():\n    return load('stock.txt')\n",
    "app.py": "from inventory import load\n\n\ndef run():\n    print(load('a.txt'))\n    return load('b.txt')\n",
    "notes.py": "x = 1\n",
}
RENAME = "<instruction>\nrename load to read_file\n</instruction>"
SYSTEM = "You change code in steps, calling tools.\nPhasewise phase: code."


class Wire:
    """The two adapters over one pool, and an endpoint per simulated provider."""

    def __init__(self, sim: SimulatorThread) -> None:
        self.sim = sim
        self.pool = HttpPool()
        clients = SdkClients(self.pool)
        self.adapters: dict[str, Any] = {"anthropic": AnthropicMessagesAdapter(clients),
                                          "openai": OpenAIChatAdapter(clients)}

    def at(self, protocol: str, provider: str = "w") -> tuple[Any, Endpoint]:
        return self.adapters[protocol], Endpoint(provider, self.sim.base_url(provider, protocol), "k")

    async def send(self, protocol: str, request: ChatRequest, provider: str = "w") -> Completion:
        adapter, endpoint = self.at(protocol, provider)
        completion: Completion = await adapter.complete(endpoint, request, lambda _d: None, Timeouts(10, 10, 10))
        return completion

    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.sim.requests if r.endpoint == "chat"]


@pytest.fixture
async def wire(sim: SimulatorThread) -> AsyncIterator[Wire]:
    w = Wire(sim)
    yield w
    await w.pool.aclose()


def step(user: str = RENAME, *, model: str = "sim-agent", tools: tuple[Tool, ...] = CODE_TOOLS,
         turns: tuple[Turn, ...] = (), stream: bool = True, system: str = SYSTEM, **rest: Any) -> ChatRequest:
    return ChatRequest(model=model, system=system, user=user, max_tokens=4000, tools=tools, may_call_tools=True,
                       turns=turns, stream=stream, **rest)


TRANSCRIPT: tuple[Turn, ...] = (
    AssistantTurn("Two looks first.", (ToolCall("toolu_01A", "read_file", '{"path": "a.py"}', {"path": "a.py"}),
                                       ToolCall("call:2", "search_files", '{"pattern": "x"}', {"pattern": "x"}))),
    ResultsTurn((ToolResult("toolu_01A", "1\tx = 1"), ToolResult("call:2", "no match", is_error=True)),
                "2 steps left."),
)


# --------------------------------------------------------------------------- rendering


async def test_a_transcript_with_parallel_calls_renders_in_each_protocol(wire: Wire) -> None:
    await wire.send("anthropic", step("U", system="S", turns=TRANSCRIPT))
    await wire.send("openai", step("U", system="S", turns=TRANSCRIPT))
    ant, oai = wire.bodies()
    assert ant["messages"] == [
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Two looks first."},
            {"type": "tool_use", "id": "toolu_01A", "name": "read_file", "input": {"path": "a.py"}},
            # an id Anthropic does not take is mapped, the same for the call and its result
            {"type": "tool_use", "id": "call_2", "name": "search_files", "input": {"pattern": "x"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "1\tx = 1", "is_error": False},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "no match", "is_error": True},
            {"type": "text", "text": "2 steps left."}]},
    ]
    assert ant["tool_choice"] == {"type": "auto"} and [t["name"] for t in ant["tools"]] == [
        "read_file", "list_files", "search_files", "edit_file"]
    assert oai["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "Two looks first.", "tool_calls": [
            {"id": "toolu_01A", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "a.py"}'}},
            {"id": "call:2", "type": "function", "function": {"name": "search_files", "arguments": '{"pattern": "x"}'}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "1\tx = 1"},
        {"role": "tool", "tool_call_id": "call:2", "content": "Error: no match"},  # no error flag in this protocol
        {"role": "user", "content": "2 steps left."},
    ]
    assert oai["tool_choice"] == "auto"


async def test_a_call_with_bad_arguments_goes_back_as_an_empty_object(wire: Wire) -> None:
    bad = ToolCall("c1", "read_file", '{"path": "a.py"', None)
    turns = (AssistantTurn("", (bad,)), ResultsTurn((ToolResult("c1", "the arguments are not JSON", True),)))
    for protocol in ("anthropic", "openai"):
        await wire.send(protocol, step(turns=turns))
    ant, oai = wire.bodies()
    assert ant["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "c1", "name": "read_file", "input": {}}]}
    assert oai["messages"][2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]}


async def test_single_shot_requests_are_unchanged(wire: Wire) -> None:
    """Nothing of the transcript machinery reaches a phase that answers at once."""
    plain = ChatRequest(model="sim-fast", system="S", user="U", max_tokens=100, cache_prefix=True)
    await wire.send("anthropic", plain)
    await wire.send("openai", plain)
    ant, oai = wire.bodies()
    assert ant["messages"] == [{"role": "user", "content": "U"}]
    assert ant["system"] == [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]
    assert oai["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert "tools" not in ant and "tools" not in oai


@pytest.mark.parametrize("stream", [True, False])
async def test_openai_bodies_reach_the_wire_as_the_adapter_built_them(wire: Wire, stream: bool) -> None:
    """The messages and tools go to the SDK as ``extra_body`` (its per-message transform is skipped,
    bench/RESULTS.md): what the provider gets is the adapter's body, key for key."""
    request = step(turns=TRANSCRIPT, stream=stream)
    adapter, endpoint = wire.at("openai")
    await wire.send("openai", request)
    sent = wire.bodies()[-1]
    built = adapter._params(endpoint, request)
    assert {k: sent[k] for k in built} == built
    assert set(sent) - set(built) <= {"stream", "stream_options"}


# --------------------------------------------------------------------------- reading calls


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
async def test_parallel_calls_streamed_in_pieces_read_whole(wire: Wire, protocol: str) -> None:
    """The agent's edit step: four ``edit_file`` calls in one turn, each one's arguments streamed in
    several pieces, read the same as the whole (non-streamed) answer."""
    ws = Workspace(dict(FILES))
    adapter, endpoint = wire.at(protocol)
    _answers, turns = await run_loop(adapter, endpoint, step(), ws, CODE_TOOLS, max_steps=2)
    streamed = await wire.send(protocol, step(turns=turns))
    whole = await wire.send(protocol, step(turns=turns, stream=False))
    calls = [(c.name, c.input) for c in streamed.tool_calls]
    assert calls == [(c.name, c.input) for c in whole.tool_calls]
    assert calls == [
        ("edit_file", {"path": "app.py", "search": "from inventory import load",
                       "replace": "from inventory import read_file"}),
        ("edit_file", {"path": "app.py", "search": "    print(load('a.txt'))\n    return load('b.txt')",
                       "replace": "    print(read_file('a.txt'))\n    return read_file('b.txt')"}),
        ("edit_file", {"path": "inventory.py", "search": "def load(path):", "replace": "def read_file(path):"}),
        ("edit_file", {"path": "inventory.py", "search": "    return load('stock.txt')",
                       "replace": "    return read_file('stock.txt')"}),
    ]
    assert len({c.id for c in streamed.tool_calls}) == 4 and streamed.text == ""
    assert streamed.tool_input == calls[0][1]  # a phase's single tool answer is still the first call's
    assert streamed.stop_reason == whole.stop_reason == ("tool_use" if protocol == "anthropic" else "tool_calls")
    request = [r for r in wire.sim.requests if r.endpoint == "chat"][-2]
    assert request.chunks_sent > 2 * len(calls)  # each call's arguments came in several pieces


def test_openai_pieces_of_calls_all_numbered_zero_stay_apart() -> None:
    """Some servers number every parallel call 0: a new id opens a new call."""
    pieces = CallPieces()

    def piece(index: int | None, id: str | None, name: str | None, args: str | None) -> SimpleNamespace:
        return SimpleNamespace(index=index, id=id, function=SimpleNamespace(name=name, arguments=args))

    for p in (piece(0, "a", "read_file", '{"pa'), piece(0, None, None, 'th": "x"}'),
              piece(0, "b", "read_file", ""), piece(None, "b", None, '{"path": "y"}'),
              piece(1, "", "list_files", None)):
        pieces.add(p)
    calls = pieces.read()
    assert [(c.id, c.name, c.input) for c in calls] == [
        ("a", "read_file", {"path": "x"}), ("b", "read_file", {"path": "y"}), (calls[2].id, "list_files", {})]
    assert calls[2].id.startswith("call_")  # none sent: one made up, so its result can be paired


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
@pytest.mark.parametrize("stream", [True, False])
async def test_arguments_that_are_not_json_are_kept_raw(wire: Wire, protocol: str, stream: bool) -> None:
    c = await wire.send(protocol, step(model="sim-badargs", stream=stream))
    [call] = c.tool_calls
    assert call.name == "search_files" and call.input is None
    assert call.arguments == '{"pattern": "\\\\bload\\\\b"'  # as sent, the closing brace missing
    assert c.tool_input is None and c.tool_input_raw == call.arguments


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
async def test_a_loop_goes_on_after_bad_arguments_and_a_tool_not_given(wire: Wire, protocol: str) -> None:
    adapter, endpoint = wire.at(protocol)
    ws = Workspace(dict(FILES))
    answers, _ = await run_loop(adapter, endpoint, step(model="sim-badargs"), ws, CODE_TOOLS)
    assert answers[0].tool_calls[0].input is None and "Renamed `load` to `read_file`: 4 edits" in answers[-1].text
    assert "def read_file(path):" in ws.files["inventory.py"]
    plan = step("<instruction>\nrename load to read_file\n</instruction>", model="sim-rogue", tools=READ_ONLY,
                system="Phasewise phase: plan.")
    answers, turns = await run_loop(adapter, endpoint, plan, Workspace(dict(FILES)), READ_ONLY)
    assert answers[0].tool_calls[0].name == "edit_file"  # not among its tools: answered with an error
    assert isinstance(turns[1], ResultsTurn) and turns[1].results[0].is_error
    assert answers[-1].text.count("Plan") and "Read with tools: `app.py`" in answers[-1].text


# --------------------------------------------------------------------------- the agent sim


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
async def test_the_agent_renames_across_files_in_four_steps(wire: Wire, protocol: str) -> None:
    adapter, endpoint = wire.at(protocol)
    ws = Workspace(dict(FILES))
    answers, turns = await run_loop(adapter, endpoint, step(), ws, CODE_TOOLS)
    assert [[c.name for c in a.tool_calls] for a in answers] == [
        ["search_files"], ["read_file", "read_file"], ["edit_file"] * 4, []]
    assert answers[-1].text.endswith("Renamed `load` to `read_file`: 4 edits in 2 files (`app.py`, `inventory.py`).\n")
    assert ws.files["app.py"] == ("from inventory import read_file\n\n\ndef run():\n    print(read_file('a.txt'))\n"
                                  "    return read_file('b.txt')\n")
    assert ws.files["notes.py"] == FILES["notes.py"]
    assert len(turns) == 6 and len(wire.bodies()) == 4


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
async def test_the_agent_reviews_by_reading_then_reporting(wire: Wire, protocol: str) -> None:
    adapter, endpoint = wire.at(protocol)
    ws = Workspace({"calc.py": "def add(a, b=[]):\n    print(a)\n    return a\n"})
    review = Tool("report_findings", "findings", {"type": "object", "properties": {}})
    user = '<document path="calc.py" language="python" first_line="1" last_line="1">\n1| x\n</document>\nReview.'
    answers, _ = await run_loop(adapter, endpoint, step(user, tools=(*READ_ONLY, review),
                                                        system="Phasewise phase: review."),
                                ws, (*READ_ONLY, review), max_steps=2)
    assert [c.name for c in answers[0].tool_calls] == ["read_file"]
    [report] = answers[1].tool_calls
    assert report.name == "report_findings" and report.input is not None
    assert [(f["start_line"], f["severity"]) for f in report.input["findings"]] == [(1, "error"), (2, "warning")]


async def test_misbehaving_models_loop_and_answer_text_with_a_call(wire: Wire) -> None:
    adapter, endpoint = wire.at("anthropic")
    answers, _ = await run_loop(adapter, endpoint, step(model="sim-loop"), Workspace(dict(FILES)), CODE_TOOLS,
                                max_steps=3)
    assert [[(c.name, c.arguments) for c in a.tool_calls] for a in answers] == [
        [("search_files", '{"pattern": "\\\\bload\\\\b"}')]] * 3
    text_asked = ChatRequest(model="sim-toolonly", system="Phasewise phase: plan.", user="<instruction>\nx\n"
                             "</instruction>", max_tokens=100, tools=CODE_TOOLS)
    c = await wire.send("openai", text_asked)
    assert c.tool_only and text_asked.expects_text and wire.bodies()[-1]["tool_choice"] == "none"


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
async def test_a_transcript_the_api_would_refuse_is_refused(wire: Wire, protocol: str) -> None:
    unanswered = (AssistantTurn("", (ToolCall("c1", "list_files", "{}", {}),)), ResultsTurn((), "go on"))
    with pytest.raises(ProviderError) as info:
        await wire.send(protocol, step(turns=unanswered))
    assert info.value.kind is K.BAD_REQUEST and "c1" in info.value.detail
    stray = (AssistantTurn("", (ToolCall("c1", "list_files", "{}", {}),)),
             ResultsTurn((ToolResult("c1", "a.py"), ToolResult("c9", "b.py"))))
    with pytest.raises(ProviderError) as info:
        await wire.send(protocol, step(turns=stray))
    assert info.value.kind is K.BAD_REQUEST


# --------------------------------------------------------------------------- caching a loop


def _marks(body: dict[str, Any]) -> list[str]:
    """Where a body's ``cache_control`` breakpoints are: ``system``, or ``message <i>``."""
    out = ["system" for b in body["system"] if "cache_control" in b] if isinstance(body["system"], list) else []
    out += ["tools" for t in body.get("tools", ()) if "cache_control" in t]
    for i, m in enumerate(body["messages"]):
        if isinstance(m["content"], list):
            out += [f"message {i}" for b in m["content"] if "cache_control" in b]
    return out


async def test_a_loop_step_carries_sliding_breakpoints_within_four(wire: Wire) -> None:
    ws = Workspace(dict(FILES))
    adapter, endpoint = wire.at("anthropic")
    await run_loop(adapter, endpoint, step(cache_prefix=True), ws, CODE_TOOLS)
    bodies = wire.bodies()
    # the first step marks its message; then the newest results and the previous step's end slide
    assert [_marks(b) for b in bodies] == [
        ["system", "message 0"], ["system", "message 0", "message 2"], ["system", "message 2", "message 4"],
        ["system", "message 4", "message 6"]]
    last = bodies[-1]["messages"][-1]["content"][-1]
    assert last["type"] == "tool_result" and last["cache_control"] == {"type": "ephemeral"}


def test_sliding_breakpoints_count_those_already_there() -> None:
    mark = {"type": "ephemeral"}
    params: dict[str, Any] = {
        "tools": [{"name": "a", "cache_control": mark}, {"name": "b", "cache_control": mark}],
        "system": [{"type": "text", "text": "S", "cache_control": mark}],
        "messages": [{"role": "user", "content": "U"},
                     {"role": "assistant", "content": [{"type": "text", "text": "A"}]},
                     {"role": "user", "content": [{"type": "text", "text": "R"}]}],
    }
    mark_transcript(params)
    assert _marks(params) == ["system", "tools", "tools", "message 2"]  # four: the older end goes unmarked
    assert params["messages"][0] == {"role": "user", "content": "U"}


async def _loop_cost(wire: Wire, protocol: str, provider: str, caching: bool, steps: int = 10) -> tuple[float, float]:
    """Billed input cost of a ``steps``-step loop (each step reads one 60-line file), with the prompt
    layout of ``promptCaching`` on or off, on catalogue prices; and the same tokens billed uncached."""
    spec = builtin(protocol)  # the catalogue's Anthropic and OpenAI, with their list prices
    assert spec is not None
    info = spec.models["claude-sonnet-4-5" if protocol == "anthropic" else "gpt-5"]
    loaded = load_settings({"phases": {"code": {"model": f"{provider}/sim-agent"}}, "providers": {provider: {
        "protocol": protocol, "baseUrl": wire.sim.base_url(provider, protocol), "requiresKey": False,
        "models": {"sim-agent": {"toolCalling": True, "cacheMinTokens": 1024}}}}})
    route = Router(Engine(Keyring(environ={})), loaded).resolver.phase("code").main
    assert route is not None
    system = "You work in steps.\n" + "Rules of the house: keep changes small and say why. " * 60
    turns: tuple[Turn, ...] = ()
    billed = uncached = 0.0
    for k in range(steps):
        request = phase_request(route, system=system, user=RENAME, tool=None, tools=CODE_TOOLS, caching=caching,
                                cache_key="loop-key", turns=turns, may_call_tools=True)
        c = await wire.send(protocol, request, provider)
        u = c.usage
        billed += cost(info, u.input_tokens, 0, u.cache_read_tokens, u.cache_write_tokens) or 0.0
        uncached += cost(info, u.input_tokens, 0) or 0.0
        call = ToolCall(f"read_{k}", "read_file", json.dumps({"path": f"m{k}.py"}), {"path": f"m{k}.py"})
        body = "\n".join(f"{n}\tdef step_{k}_{n}(items):  # line {n} of module {k}" for n in range(1, 61))
        turns += (AssistantTurn(f"Reading m{k}.py.", (call,)), ResultsTurn((ToolResult(call.id, body),)))
    return billed, uncached


@pytest.mark.parametrize(("protocol", "target"), [("anthropic", 0.30), ("openai", 0.35)])
async def test_a_ten_step_loop_costs_close_to_linear_with_caching(wire: Wire, protocol: str, target: float) -> None:
    wire.sim.configure("cached", prompt_cache=protocol)
    billed, uncached = await _loop_cost(wire, protocol, "cached", caching=True)
    off, off_uncached = await _loop_cost(wire, protocol, "cached-off", caching=False)
    assert off == off_uncached  # no cache at the provider named "cached-off": the baseline
    assert abs(uncached - off_uncached) / off_uncached < 0.01  # the same tokens either way
    assert billed / off < target, f"{protocol}: {billed / off:.1%} of the uncached cost"
    reads = [r for r in wire.sim.requests if r.provider == "cached"]
    assert len(reads) == 10


async def test_a_fallback_continues_the_transcript_on_the_other_protocol(sim: SimulatorThread) -> None:
    """Step 1 on the main route (Anthropic); the main route is then overloaded, and step 2 goes to the
    fallback (OpenAI) with the transcript converted: the calls' ids stay paired with their results."""
    loaded = load_settings({
        "phases": {"code": {"model": "main/sim-agent", "fallbacks": ["fb/sim-agent"], "fallbackOn": ["overloaded"]}},
        "providers": {"main": {"protocol": "anthropic", "baseUrl": sim.base_url("main", "anthropic"),
                               "requiresKey": False},
                      "fb": {"protocol": "openai", "baseUrl": sim.base_url("fb", "openai"), "requiresKey": False}},
        "retry": {"maxAttempts": 1},
    })
    engine = Engine(Keyring(environ={}))
    router = Router(engine, loaded)
    phase_route = router.resolver.phase("code")
    check = Preflight(tool_use=None, prompt_chars=2000, output_tokens=100)
    ws = Workspace(dict(FILES))
    turns: tuple[Turn, ...] = ()
    served = []
    for n in range(4):
        if n == 1:
            sim.add_fault("anthropic.overloaded_error", provider="main", times=5)

        def build(route: Any, turns: tuple[Turn, ...] = turns) -> ChatRequest:
            return phase_request(route, system=SYSTEM, user=RENAME, tool=None, tools=CODE_TOOLS, caching=True,
                                 turns=turns, may_call_tools=True)

        s = await router.serve(phase_route, build, check, _Quiet())
        served.append(s)
        c = s.completion
        if not c.tool_calls:
            break
        turns += (AssistantTurn(c.text, tuple(c.tool_calls)),
                  ResultsTurn(tuple(ws.run(call, CODE_TOOLS) for call in c.tool_calls)))
    await engine.aclose()
    assert [(s.route.provider, s.fallback_used) for s in served] == [
        ("main", False), ("fb", True), ("fb", True), ("fb", True)]
    assert "Renamed `load` to `read_file`" in served[-1].completion.text and "def read_file" in ws.files["inventory.py"]
    first_on_fb = next(r.body for r in sim.requests if r.provider == "fb")
    anthropic_id = served[0].completion.tool_calls[0].id
    assert anthropic_id.startswith("toolu_")
    assert first_on_fb["messages"][2]["tool_calls"][0]["id"] == anthropic_id
    assert first_on_fb["messages"][3]["role"] == "tool" and first_on_fb["messages"][3]["tool_call_id"] == anthropic_id
    assert "inventory.py:1:def load(path):" in first_on_fb["messages"][3]["content"]


class _Quiet:
    def on_text(self, delta: str) -> None:
        pass

    def on_status(self, message: str) -> None:
        pass


# --------------------------------------------------------------------------- text asked, a call answered


class _Status(_Quiet):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def on_status(self, message: str) -> None:
        self.lines.append(message)


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
async def test_a_plan_answered_with_only_a_tool_call_is_asked_again_without_tools(sim: SimulatorThread,
                                                                                  protocol: str) -> None:
    loaded = load_settings({"phases": {"plan": {"model": "p/sim-toolonly"}}, "providers": {"p": {
        "protocol": protocol, "baseUrl": sim.base_url("p", protocol), "requiresKey": False,
        "models": {"sim-toolonly": {"toolCalling": True}}}}})
    status = _Status()
    doc = Document("file:///w/calc.py", "def add(a, b):\n    return a + b\n", 1, "python")
    service = PhaseService(Engine(Keyring(environ={})))
    result = await service.run(loaded, "plan", PhaseInput(doc, "add a mul function"), status)
    await service.engine.aclose()
    assert result.ok and result.text.count("Plan for") == 1, result.error
    assert [a.outcome for a in result.attempts] == ["tool-only", "ok"]
    first, second = (r.body for r in sim.requests if r.endpoint == "chat")
    assert [t.get("name") or t["function"]["name"] for t in first["tools"]] == ["apply_edits", "report_findings"]
    assert "tools" not in second and "tool_choice" not in second
    assert any("with only a tool call (apply_edits) where text was asked: asking once more without tools" in line
               for line in status.lines)


async def test_an_answer_still_only_a_call_without_tools_is_a_bad_request(sim: SimulatorThread) -> None:
    class Stubborn:
        """A server that answers every request with a call, tools declared or not."""

        async def complete(self, endpoint: Endpoint, request: ChatRequest, on_text: Any,
                           timeouts: Timeouts) -> Completion:
            self.sent = [*getattr(self, "sent", []), request]
            return Completion(tool_calls=[ToolCall("x", "apply_edits")], tool_input_raw="{}", stop_reason="tool_calls")

        async def list_models(self, endpoint: Endpoint, timeouts: Timeouts) -> list[str]:
            return []

    loaded = load_settings({"phases": {"plan": {"model": "p/m"}}, "providers": {"p": {
        "protocol": "openai", "baseUrl": sim.base_url("p"), "requiresKey": False,
        "models": {"m": {"toolCalling": True}}}}})
    engine = Engine(Keyring(environ={}))
    stub = Stubborn()
    engine.adapters["openai"] = stub
    doc = Document("file:///w/calc.py", "x = 1\n", 1, "python")
    result = await PhaseService(engine).run(loaded, "plan", PhaseInput(doc, "explain"), _Quiet())
    assert not result.ok and result.error is not None and result.error.kind is K.BAD_REQUEST
    assert "with only a tool call (apply_edits) where text was asked, even when asked again without any tool" in \
        result.error.message
    assert [bool(r.tools) for r in stub.sent] == [True, False]
    assert [a.outcome for a in result.attempts] == ["tool-only", "tool-only"]

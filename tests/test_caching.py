"""Issue 14: provider prompt caching, exact cost, the response cache and provider health.

The phase service runs in the test's event loop against the simulator, the real SDKs
underneath. The simulator's prefix cache (config ``prompt_cache``) reports cached tokens in each
provider's usage shape; what the requests carried is read from its request log. The response
cache's clock is injected: no test sleeps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from phasewise import cli
from phasewise.phases.documents import Document
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService
from phasewise.router.router import Engine
from phasewise.router.routes import Keyring, RouteResolver
from phasewise.settings import LoadedSettings, load_settings
from phasewise.sim import SimulatorThread
from phasewise.sim.wire import common_prefix, prompt_text
from phasewise.workflows.health import health_report
from phasewise.workflows.ledger import Ledger, Recorder
from phasewise.workflows.runs import Step, run_plan_code_review
from tests.helpers import Editor, make_client_fixture, server_env

KEYS = {"MAIN_KEY": "test-key-main-0001"}
client = make_client_fixture(server_env(PHASEWISE_WARMUP="0"))
URI = "file:///work/proj/inventory.py"
PRICES = {"toolCalling": True, "inputPricePerMtok": 3.0, "outputPricePerMtok": 15.0, "cacheReadPricePerMtok": 0.3,
          "cacheWritePricePerMtok": 3.75}


def big_document(functions: int = 60) -> str:
    """A Python module of about 10 KB (well over 1,024 tokens), with a function to rename."""
    parts = ["import os\n\n\ndef load(path):\n    with open(path) as f:\n        return f.read()\n"]
    for n in range(functions):
        parts.append(f"\n\ndef helper_{n}(items, limit={n}):\n    total = 0\n    for item in items[:limit]:\n"
                     f"        total += item * {n}\n    return total\n")
    return "".join(parts)


class Quiet:
    def on_text(self, delta: str) -> None:
        pass

    def on_status(self, message: str) -> None:
        pass


def settings(sim: SimulatorThread, protocol: str, *, provider: str = "solo", models: dict[str, Any] | None = None,
             **rest: Any) -> LoadedSettings:
    ref = f"{provider}/claude-sim"
    raw = {
        "phases": {"plan": {"model": ref}, "code": {"model": ref}, "review": {"model": ref}},
        "providers": {provider: {"protocol": protocol, "baseUrl": sim.base_url(provider, protocol),
                                 "apiKeyEnv": "MAIN_KEY", "models": models or {"claude-sim": PRICES}}},
        "retry": {"maxAttempts": 1}, **rest,
    }
    loaded = load_settings(raw)
    assert not loaded.issues, loaded.issues
    return loaded


def service(tmp_path: Path) -> PhaseService:
    svc = PhaseService(Engine(Keyring(environ=dict(KEYS))))
    svc.cache_dir = tmp_path / "responses"
    return svc


def chats(sim: SimulatorThread) -> list[Any]:
    return [r for r in sim.requests if r.endpoint == "chat"]


async def three_phases(svc: PhaseService, loaded: LoadedSettings, text: str) -> list[PhaseResult]:
    """plan → code → review on one document, the code phase's change applied in between."""
    state = {"text": text}

    async def step(s: Step) -> PhaseResult:
        doc = Document(URI, state["text"], 1, "python")
        result = await svc.run(loaded, s.phase, PhaseInput(doc, s.instruction, plan=s.plan, change=s.change,
                                                            run_id=s.run_id), Quiet())
        if result.phase == "code" and result.ok and result.new_text is not None:
            state["text"] = result.new_text
        return result

    outcome = await run_plan_code_review(step, "Rename load to read_file")
    assert outcome.ok, [r.to_json() for r in outcome.results]
    return outcome.results


def expected_cost(r: PhaseResult, read_price: float = 0.3, write_price: float = 3.75) -> float:
    uncached = r.input_tokens - r.cache_read_tokens - r.cache_write_tokens
    return (uncached * 3.0 + r.cache_read_tokens * read_price + r.cache_write_tokens * write_price
            + r.output_tokens * 15.0) / 1e6


# --------------------------------------------------------------------------- one prefix per run


@pytest.mark.parametrize(("protocol", "shape"), [("anthropic", "anthropic"), ("openai", "openai")])
async def test_three_phase_run_shares_one_prefix(sim: SimulatorThread, tmp_path: Path, protocol: str,
                                                 shape: str) -> None:
    sim.configure("solo", prompt_cache=shape)
    loaded = settings(sim, protocol)
    svc = service(tmp_path)
    results = await three_phases(svc, loaded, big_document())
    plan, code, review = chats(sim)
    assert [r.phase for r in (plan, code, review)] == ["plan", "code", "review"]
    # every phase declares the same tools, in the same order; a phase that answers by tool requires its own
    names = [[t.get("name") or t["function"]["name"] for t in r.body["tools"]] for r in (plan, code, review)]
    assert names == [["apply_edits", "report_findings"]] * 3
    assert [json.dumps(r.body["tools"]) for r in (code, review)] == [json.dumps(plan.body["tools"])] * 2
    texts = [prompt_text(protocol, r.body)[0] for r in (plan, code, review)]
    if protocol == "anthropic":
        # tools, shared system text and document form the marked prefix; the phase's text is in the message
        systems = [r.body["system"] for r in (plan, code, review)]
        assert systems[0] == systems[1] and all(s[0]["cache_control"] == {"type": "ephemeral"} for s in systems)
        assert "<document" in systems[0][0]["text"] and "Phasewise phase" not in systems[0][0]["text"]
        # plan and code (search-replace blocks, the default edit format) answer in text, review by its tool
        assert [r.body["tool_choice"] for r in (plan, code, review)] == [
            {"type": "none"}, {"type": "none"}, {"type": "tool", "name": "report_findings"}]
        # the review sees the changed document: only the tools and the system text are shared with it
        assert systems[2][0]["text"] != systems[0][0]["text"] and "def read_file(path)" in systems[2][0]["text"]
    else:
        users = [r.body["messages"][-1]["content"] for r in (plan, code, review)]
        plan_doc = users[0][: users[0].index("</document>")]
        assert users[1].startswith(plan_doc) and plan.body["messages"][0] == code.body["messages"][0]
        assert review.body["messages"][0] == plan.body["messages"][0]
        assert "prompt_cache_key" not in plan.body  # a provider of the user's own: not known to take it
    # plan and code share everything up to the end of the document: tens of thousands of characters
    shared = common_prefix(texts[0], texts[1])
    assert shared > len(big_document()) and texts[0][:shared].endswith('<phase name="')
    assert common_prefix(texts[1], texts[2]) > 1000  # tools and system text at least

    plan_r, code_r, review_r = results
    assert code_r.cache_read_tokens > 2500 and code_r.cache_read_tokens <= code_r.input_tokens
    if protocol == "anthropic":
        assert plan_r.cache_write_tokens > 2500 and plan_r.cache_read_tokens == 0
        assert code_r.cache_write_tokens == 0 and review_r.cache_write_tokens > 0
    else:
        assert plan_r.cache_read_tokens == 0 and code_r.cache_read_tokens % 128 == 0
        assert all(r.cache_write_tokens == 0 for r in results)
    for r in results:
        assert r.cost_usd == pytest.approx(expected_cost(r))
        body = r.to_json()
        assert body["usage"]["cacheReadTokens"] == r.cache_read_tokens
        assert body["usage"]["cacheWriteTokens"] == r.cache_write_tokens
    assert code_r.saved_usd is not None and code_r.saved_usd > 0

    # the run record keeps the cached tokens and the saving
    ledger_file = tmp_path / "runs.jsonl"
    recorder = Recorder(str(ledger_file), record_content=False, source="test")
    for r in results:
        recorder.record(r.to_json(), protocol=protocol)
    lines = Ledger(ledger_file).read()
    assert [(x["cacheReadTokens"], x["cacheWriteTokens"]) for x in lines] == [
        (r.cache_read_tokens, r.cache_write_tokens) for r in results]
    run = Ledger(ledger_file).runs()[0]
    assert run.saved_usd == pytest.approx(sum(r.saved_usd for r in results if r.saved_usd is not None), abs=1e-5)


async def test_cache_control_only_over_the_minimum(sim: SimulatorThread, tmp_path: Path) -> None:
    sim.configure("solo", prompt_cache="anthropic")
    svc = service(tmp_path)
    loaded = settings(sim, "anthropic")
    small = Document(URI, "def load(path):\n    return open(path).read()\n", 1, "python")
    big = Document(URI, big_document(), 1, "python")
    await svc.run(loaded, "plan", PhaseInput(small, "add a docstring"), Quiet())
    await svc.run(loaded, "plan", PhaseInput(big, "add a docstring"), Quiet())
    # a minimum set per model (here over the big document) leaves even that unmarked
    high = settings(sim, "anthropic", models={"claude-sim": {**PRICES, "cacheMinTokens": 50_000}})
    result = await svc.run(high, "plan", PhaseInput(big, "add a docstring"), Quiet())
    small_req, big_req, high_req = chats(sim)
    assert isinstance(small_req.body["system"], str) and "cache_control" not in json.dumps(small_req.body)
    assert big_req.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert isinstance(high_req.body["system"], str) and "cache_control" not in json.dumps(high_req.body)
    assert result.ok and result.cache_read_tokens == 0 and result.cache_write_tokens == 0


async def test_prompt_caching_off_sends_no_cache_markers(sim: SimulatorThread, tmp_path: Path) -> None:
    sim.configure("solo", prompt_cache="anthropic")
    sim.configure("sim-gpt", prompt_cache="openai")
    svc = service(tmp_path)
    big = Document(URI, big_document(), 1, "python")
    for caching in (True, False):
        gpt = {"model": "sim-gpt/gpt-sim"}
        for loaded in (settings(sim, "anthropic", promptCaching=caching),
                       load_settings({"phases": {"plan": gpt, "code": gpt},
                                      "providers": {"sim-gpt": {"baseUrl": sim.base_url("sim-gpt")}},
                                      "promptCaching": caching})):
            for phase in ("plan", "code"):
                result = await svc.run(loaded, phase, PhaseInput(big, "Rename load to read_file"), Quiet())
                assert result.ok, result.to_json()
    on, off = chats(sim)[:4], chats(sim)[4:]
    # on: Anthropic marks its prefix, OpenAI itself gets one stable prompt_cache_key, plan declares the tools
    assert all(r.body["system"][0]["cache_control"] for r in on if r.protocol == "anthropic")
    keys = {r.body["prompt_cache_key"] for r in on if r.protocol == "openai"}
    assert len(keys) == 1 and next(iter(keys)).startswith("phasewise-") and "proj" not in next(iter(keys))
    assert all(len(r.body["tools"]) == 2 for r in on)
    # off: no marks, no key, and each phase declares only what it needs (plan, and code in
    # search-replace blocks, the default edit format, answer in text: no tools)
    assert all("cache_control" not in json.dumps(r.body) and "prompt_cache_key" not in r.body for r in off)
    assert [len(r.body.get("tools") or ()) for r in off] == [0, 0, 0, 0]


@pytest.mark.parametrize(("protocol", "shape", "step"),
                         [("anthropic", "anthropic", 1), ("openai", "openai", 128), ("openai", "zai", 128),
                          ("openai", "deepseek", 64)])
async def test_cached_tokens_come_back_from_every_usage_shape(sim: SimulatorThread, tmp_path: Path, protocol: str,
                                                              shape: str, step: int) -> None:
    sim.configure("solo", prompt_cache=shape)
    svc = service(tmp_path)
    loaded = settings(sim, protocol)
    doc = Document(URI, big_document(), 1, "python")
    first = await svc.run(loaded, "plan", PhaseInput(doc, "add a docstring"), Quiet())
    second = await svc.run(loaded, "plan", PhaseInput(doc, "add type hints"), Quiet())
    assert first.ok and second.ok
    assert first.cache_read_tokens == 0
    assert second.cache_read_tokens > 2500 and second.cache_read_tokens % step == 0
    assert second.cache_read_tokens < second.input_tokens  # the instruction differs: not all of it
    if protocol == "anthropic":
        assert first.cache_write_tokens == second.cache_read_tokens
    for r in (first, second):
        assert r.cost_usd == pytest.approx(expected_cost(r))
    assert second.cost_usd is not None and first.cost_usd is not None and second.cost_usd < first.cost_usd


async def test_catalogue_cache_prices_are_used(sim: SimulatorThread, tmp_path: Path) -> None:
    """A built-in model's cache prices come from the catalogue (sim-claude: 0.1x read, 1.25x write)."""
    sim.configure("sim-claude", prompt_cache="anthropic")
    svc = service(tmp_path)
    loaded = load_settings({"phases": {"plan": {"model": "sim-claude/claude-sim"}},
                            "providers": {"sim-claude": {"baseUrl": sim.base_url("sim-claude", "anthropic")}}})
    doc = Document(URI, big_document(), 1, "python")
    first = await svc.run(loaded, "plan", PhaseInput(doc, "add a docstring"), Quiet())
    second = await svc.run(loaded, "plan", PhaseInput(doc, "add type hints"), Quiet())
    assert first.cache_write_tokens > 0 and second.cache_read_tokens == first.cache_write_tokens
    assert first.cost_usd == pytest.approx(expected_cost(first))
    assert second.cost_usd == pytest.approx(expected_cost(second))


# --------------------------------------------------------------------------- response cache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_response_cache_hit_miss_on_change_and_expiry(sim: SimulatorThread, tmp_path: Path) -> None:
    svc = service(tmp_path)
    clock = Clock()
    svc.clock = clock
    loaded = settings(sim, "openai", cache={"responses": True, "ttlSeconds": 600})
    text = big_document(5)
    doc = Document(URI, text, 1, "python")

    first = await svc.run(loaded, "code", PhaseInput(doc, "Rename load to read_file"), Quiet())
    assert first.ok and not first.cached and len(chats(sim)) == 1
    again = await svc.run(loaded, "code", PhaseInput(Document(URI, text, 2, "python"), "Rename load to read_file"),
                          Quiet())
    assert again.ok and again.cached and len(chats(sim)) == 1  # nothing sent
    assert again.diff == first.diff and again.cost_usd == 0 and again.attempts == []
    assert again.to_json()["cached"] is True and "cached" not in first.to_json()
    line = Recorder(str(tmp_path / "runs.jsonl"), record_content=False, source="test").record(again.to_json())
    assert line is not None and line["cached"] is True

    # a changed file (even outside what the instruction touches) is asked again
    changed = Document(URI, text + "\n# one more line\n", 3, "python")
    miss = await svc.run(loaded, "code", PhaseInput(changed, "Rename load to read_file"), Quiet())
    assert miss.ok and not miss.cached and len(chats(sim)) == 2
    # another instruction, or other settings, is a miss too
    other = await svc.run(loaded, "code", PhaseInput(doc, "Rename load to fetch"), Quiet())
    assert not other.cached and len(chats(sim)) == 3
    # expiry: past ttlSeconds the answer is asked for again
    clock.now += 601
    expired = await svc.run(loaded, "code", PhaseInput(doc, "Rename load to read_file"), Quiet())
    assert expired.ok and not expired.cached and len(chats(sim)) == 4
    # off (the default): never answered from the cache
    plain = settings(sim, "openai")
    await svc.run(plain, "code", PhaseInput(doc, "Rename load to read_file"), Quiet())
    assert len(chats(sim)) == 5


def test_cache_clear_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PHASEWISE_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "cache" / "responses"
    root.mkdir(parents=True)
    for n in range(3):
        (root / f"{n:064x}.json").write_text("{}", encoding="utf-8")
    assert cli.main(["cache", "clear", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"cache": str(root), "removed": 3} and not list(root.iterdir())


# --------------------------------------------------------------------------- provider health


def seeded_lines() -> list[dict[str, Any]]:
    """A run record: alpha/claude-sim answered its first four requests, then failed five of six
    (two of them retried on the same key, one that went to the fallback beta/glm-sim)."""
    def ok(n: int, latency: float, ttft: float) -> dict[str, Any]:
        return {"time": f"2026-12-01T10:{n:02d}:00.000+00:00", "runId": f"r{n}", "phase": "plan",
                "provider": "alpha", "model": "claude-sim", "result": "ok", "firstTokenMs": ttft,
                "attempts": [{"provider": "alpha", "model": "claude-sim", "outcome": "ok", "latencyMs": latency}]}

    lines = [ok(n, 100.0 * (n + 1), 10.0 * (n + 1)) for n in range(4)]
    lines.append({"time": "2026-12-01T10:10:00.000+00:00", "runId": "r10", "phase": "plan", "provider": "beta",
                  "model": "glm-sim", "result": "ok", "firstTokenMs": 50.0, "fallbackUsed": True,
                  "attempts": [{"provider": "alpha", "model": "claude-sim", "outcome": "overloaded", "status": 529},
                               {"provider": "alpha", "model": "claude-sim", "outcome": "overloaded", "status": 529},
                               {"provider": "beta", "model": "glm-sim", "outcome": "ok", "latencyMs": 300.0}]})
    lines.append({"time": "2026-12-01T10:11:00.000+00:00", "runId": "r11", "phase": "plan", "provider": "alpha",
                  "model": "claude-sim", "result": "ok", "firstTokenMs": 90.0,
                  "attempts": [{"provider": "alpha", "model": "claude-sim", "outcome": "ok", "latencyMs": 900.0}]})
    lines.append({"time": "2026-12-01T10:12:00.000+00:00", "runId": "r12", "phase": "plan", "provider": "alpha",
                  "model": "claude-sim", "result": "rate-limit",
                  "error": {"kind": "rate-limit", "message": "Alpha (alpha) rate-limited the plan phase"},
                  "attempts": [{"provider": "alpha", "model": "claude-sim", "outcome": "server-error", "status": 500},
                               {"provider": "alpha", "model": "claude-sim", "outcome": "timeout"},
                               {"provider": "alpha", "model": "claude-sim", "outcome": "rate-limit", "status": 429},
                               {"provider": "beta", "model": "glm-sim", "outcome": "missing-credentials",
                                "sent": False}]})
    # an answer from the response cache is no request
    lines.append({"time": "2026-12-01T10:13:00.000+00:00", "runId": "r13", "phase": "plan", "provider": "alpha",
                  "model": "claude-sim", "result": "ok", "cached": True, "attempts": []})
    return lines


def test_health_figures_from_a_seeded_record(sim: SimulatorThread) -> None:
    loaded = load_settings({
        "phases": {"plan": {"model": "alpha/claude-sim", "fallbacks": ["beta/glm-sim"]}},
        "providers": {"alpha": {"protocol": "anthropic", "baseUrl": sim.base_url("alpha", "anthropic")},
                      "beta": {"protocol": "openai", "baseUrl": sim.base_url("beta")}}})
    report = health_report(seeded_lines(), RouteResolver(loaded, Keyring(environ={})))
    alpha, beta = report["routes"]
    assert (alpha["provider"], alpha["model"], alpha["requests"], alpha["ok"]) == ("alpha", "claude-sim", 10, 5)
    assert alpha["successRate"] == 0.5
    assert alpha["failures"] == {"overloaded": 2, "rate-limit": 1, "server-error": 1, "timeout": 1}
    assert alpha["totalMs"] == {"p50": 300.0, "p95": 900.0}  # 100, 200, 300, 400, 900
    assert alpha["firstTokenMs"] == {"p50": 30.0, "p95": 90.0}  # the fallback's first token is beta's
    assert alpha["lastFailure"] == {"kind": "rate-limit", "time": "2026-12-01T10:12:00.000+00:00",
                                    "phase": "plan", "status": 429,
                                    "message": "Alpha (alpha) rate-limited the plan phase"}
    # of the last 10 requests 5 failed: not most of them
    assert alpha["recent"] == {"requests": 10, "failed": 5} and alpha["flagged"] is False
    assert (beta["requests"], beta["ok"], beta["flagged"]) == (1, 1, False)  # the unsent attempt is no request
    more = [*seeded_lines(), {"time": "2026-12-01T10:14:00.000+00:00", "runId": "r14", "phase": "plan",
                              "provider": "alpha", "model": "claude-sim", "result": "network",
                              "attempts": [{"provider": "alpha", "model": "claude-sim", "outcome": "network"}]}]
    # one more failure: 6 of the last 10 failed → flagged, with the fallback of the phase it serves
    flagged = health_report(more, RouteResolver(loaded, Keyring(environ={})))
    assert flagged["routes"][0]["recent"] == {"requests": 10, "failed": 6} and flagged["routes"][0]["flagged"]
    assert flagged["flagged"] == [{"route": "alpha/claude-sim", "recentFailed": 6, "recentRequests": 10,
                                   "fallbacks": ["beta/glm-sim"]}]


def test_history_stats_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in seeded_lines()) + "torn {\n", encoding="utf-8")
    assert cli.main(["history", "--stats", "--json", "--ledger", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ledger"] == str(path) and [r["requests"] for r in out["routes"]] == [10, 1]
    assert cli.main(["history", "--stats", "--ledger", str(path)]) == 0
    text = capsys.readouterr().out
    assert "alpha/claude-sim" in text and "50 %" in text and "overloaded 2" in text


@pytest.mark.slow
async def test_status_reports_health_with_the_flagged_route(client: LanguageClient, sim: SimulatorThread,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    failing = {"time": "2026-12-01T10:14:00.000+00:00", "runId": "r14", "phase": "plan", "provider": "alpha",
               "model": "claude-sim", "result": "network",
               "attempts": [{"provider": "alpha", "model": "claude-sim", "outcome": "network"}]}
    path.write_text("".join(json.dumps(x) + "\n" for x in [*seeded_lines(), failing]), encoding="utf-8")
    editor = Editor(client)
    editor.configure({
        "ledgerPath": str(path),
        "phases": {"plan": {"model": "alpha/claude-sim", "fallbacks": ["beta/glm-sim"]}},
        "providers": {"alpha": {"protocol": "anthropic", "baseUrl": sim.base_url("alpha", "anthropic")},
                      "beta": {"protocol": "openai", "baseUrl": sim.base_url("beta")}}})
    editor.open(URI, "x = 1\n")
    status = await editor.command("phasewise.status", {"uri": URI})
    health = status["health"] if isinstance(status, dict) else status.health
    assert health["ledger"] == str(path)
    assert health["flagged"] == [{"route": "alpha/claude-sim", "recentFailed": 6, "recentRequests": 10,
                                  "fallbacks": ["beta/glm-sim"]}]
    assert [(r["provider"], r["requests"]) for r in health["routes"]] == [("alpha", 11), ("beta", 1)]


def test_plan_declares_tools_only_where_the_provider_takes_tools_it_need_not_call(tmp_path: Path) -> None:
    """GLM's API accepts only tool_choice "auto": there the plan phase declares no tools."""
    svc = service(tmp_path)
    doc = Document(URI, big_document(), 1, "python")
    got = {}
    for ref in ("zai/glm-4.6", "openai/gpt-5", "anthropic/claude-sonnet-4-5"):
        loaded = load_settings({"phases": {"plan": {"model": ref}}})
        route = svc.route(loaded, "plan").main
        assert route is not None
        inp = PhaseInput(doc, "add a docstring")
        _, context, tool, _ = svc.prepare("plan", inp)
        request = svc.request(loaded, "plan", inp, route, context, tool)
        got[ref] = ([t.name for t in request.declared_tools()], request.tool, request.cache_prefix,
                    request.cache_key is not None)
    assert got == {"zai/glm-4.6": ([], None, False, False),
                   "openai/gpt-5": (["apply_edits", "report_findings"], None, False, True),
                   "anthropic/claude-sonnet-4-5": (["apply_edits", "report_findings"], None, True, False)}


def test_doctor_has_a_health_section(sim: SimulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ledger_file = tmp_path / "runs.jsonl"
    failed = [{"time": f"2026-12-01T11:0{n}:00.000+00:00", "runId": f"f{n}", "phase": "review",
               "provider": "sim-gpt", "model": "gpt-sim", "result": "overloaded",
               "attempts": [{"provider": "sim-gpt", "model": "gpt-sim", "outcome": "overloaded", "status": 529}]}
              for n in range(3)]
    ledger_file.write_text("".join(json.dumps(x) + "\n" for x in failed), encoding="utf-8")
    monkeypatch.setenv("PHASEWISE_SIM_URL", sim.url)
    monkeypatch.setenv("PHASEWISE_LEDGER", str(ledger_file))
    monkeypatch.setenv("COLUMNS", "160")
    project = tmp_path / "project"
    project.mkdir()
    (project / "phasewise.json").write_text(json.dumps({"phases": {
        "plan": {"model": "sim-claude/claude-sim"}, "code": {"model": "sim-glm/glm-sim"},
        "review": {"model": "sim-gpt/gpt-sim", "fallbacks": ["sim-glm/glm-sim"]}}}), encoding="utf-8")
    assert cli.main(["doctor", str(project), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["health"]["flagged"] == [{"route": "sim-gpt/gpt-sim", "recentFailed": 3, "recentRequests": 3,
                                            "fallbacks": ["sim-glm/glm-sim"]}]
    assert cli.main(["doctor", str(project)]) == 0
    text = capsys.readouterr().out
    assert "Provider health" in text and "FLAGGED" in text and "runs fall back to sim-glm/glm-sim" in text


def test_status_reads_the_ledger_incrementally(tmp_path: Path) -> None:
    from phasewise.workflows.health import LedgerTail

    path = tmp_path / "runs.jsonl"
    lines = seeded_lines()
    path.write_text("".join(json.dumps(x) + "\n" for x in lines[:4]), encoding="utf-8")
    tail = LedgerTail(path, keep=5)
    assert [x["runId"] for x in tail.read()] == ["r0", "r1", "r2", "r3"]
    with path.open("a", encoding="utf-8") as f:  # two whole lines and half of a third, still being written
        f.write(json.dumps(lines[4]) + "\n" + json.dumps(lines[5]) + "\n" + json.dumps(lines[6])[:20])
    assert [x["runId"] for x in tail.read()] == ["r1", "r2", "r3", "r10", "r11"]  # the last 5 whole lines
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(lines[6])[20:] + "\n")
    assert [x["runId"] for x in tail.read()][-1] == "r12"
    path.write_text(json.dumps(lines[0]) + "\n", encoding="utf-8")  # replaced by a shorter file
    assert [x["runId"] for x in tail.read()] == ["r0"]


# --------------------------------------------------------------------------- an answer cut at the output limit


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
async def test_code_answer_cut_at_the_output_limit_says_so(sim: SimulatorThread, tmp_path: Path,
                                                          protocol: str) -> None:
    """A code answer that stopped at ``maxOutputTokens`` mid-block is reported as cut off, naming the
    limit and the setting that raises it, not as a model that got the edit format wrong."""
    loaded = load_settings({
        "phases": {"code": {"model": "solo/claude-sim", "maxOutputTokens": 20}},
        "providers": {"solo": {"protocol": protocol, "baseUrl": sim.base_url("solo", protocol),
                               "apiKeyEnv": "MAIN_KEY", "models": {"claude-sim": PRICES}}},
        "retry": {"maxAttempts": 1}})
    assert not loaded.issues, loaded.issues
    doc = Document(URI, big_document(), 1, "python")
    result = await service(tmp_path).run(loaded, "code", PhaseInput(doc, "Rename load to read_file"), Quiet())
    assert not result.ok and result.error is not None
    assert chats(sim)[-1].body.get("max_tokens", chats(sim)[-1].body.get("max_completion_tokens")) == 20
    message = result.error.message
    assert "stopped answering the code phase (claude-sim) at its output limit of 20 tokens" in message
    assert "`phasewise.phases.code.maxOutputTokens`" in message and "Nothing was applied" in message
    assert "shape Phasewise cannot use" not in message
    assert result.new_text is None and not result.edits


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
async def test_code_repair_answer_cut_at_the_output_limit_says_so(sim: SimulatorThread, tmp_path: Path,
                                                                 protocol: str) -> None:
    """The one repair round's answer is checked like the first: cut at the output limit, it is refused
    whole with the limit and the setting named, and none of its edits (nor the first answer's) is applied."""
    loaded = load_settings({
        "phases": {"code": {"model": "solo/claude-misquote-once", "maxOutputTokens": 4000}},
        "providers": {"solo": {"protocol": protocol, "baseUrl": sim.base_url("solo", protocol),
                               "apiKeyEnv": "MAIN_KEY", "models": {"claude-misquote-once": PRICES}}},
        "retry": {"maxAttempts": 1}})
    assert not loaded.issues, loaded.issues
    sim.add_fault(delay_ms=0)  # the first answer as the model gives it: its SEARCH block misquotes a line
    sim.add_fault(cut_at_tokens=30)  # the repair round's answer stops at the output limit
    doc = Document(URI, big_document(), 1, "python")
    result = await service(tmp_path).run(loaded, "code", PhaseInput(doc, "Rename load to read_file"), Quiet())
    first, repair = chats(sim)
    assert "<repair>" in json.dumps(repair.body) and "<repair>" not in json.dumps(first.body)
    assert [r.fault for r in (first, repair)] == ["delay", "cut-at-limit"]
    assert not result.ok and result.error is not None and result.error.kind == "bad-request"
    message = result.error.message
    assert ("stopped answering the code phase (claude-misquote-once) at its output limit of 4000 tokens: "
            "the repair round's edits end where the answer was cut off") in message, message
    assert "`phasewise.phases.code.maxOutputTokens`" in message and "Nothing was applied" in message
    assert "shape Phasewise cannot use" not in message and "even after being told why" not in message
    assert result.new_text is None and not result.edits and result.changes is None and result.diff is None
    assert [a.outcome for a in result.attempts] == ["edit-failed", "ok"]


def test_a_phase_prices_each_call_with_the_model_that_made_it() -> None:
    """A repair round, a loop's steps, a fallback's step: every call is priced, and its cache saving
    counted, with its own model's prices, and the phase's cost is their sum."""
    from phasewise.providers.base import Usage
    from phasewise.providers.catalogue import ModelInfo

    cheap = ModelInfo(input_price_per_mtok=1.0, output_price_per_mtok=2.0, cache_read_price_per_mtok=0.1)
    dear = ModelInfo(input_price_per_mtok=10.0, output_price_per_mtok=20.0)
    result = PhaseResult(ok=True, run_id="r", phase="code")
    result.add_usage(Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=500), cheap)
    result.add_usage(Usage(input_tokens=1000, output_tokens=100), dear)
    assert (result.input_tokens, result.output_tokens, result.cache_read_tokens) == (2000, 200, 500)
    assert result.cost_usd == pytest.approx((500 * 1.0 + 500 * 0.1 + 100 * 2.0 + 1000 * 10.0 + 100 * 20.0) / 1e6)
    assert result.saved_usd == pytest.approx(500 * (1.0 - 0.1) / 1e6)
    unpriced = PhaseResult(ok=True, run_id="r", phase="plan")
    unpriced.add_usage(Usage(input_tokens=10, output_tokens=1), ModelInfo())
    assert unpriced.cost_usd is None and unpriced.saved_usd is None and unpriced.input_tokens == 10

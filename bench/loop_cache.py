"""Issue 21: the billed input cost of a 10-step agent loop with prompt caching, beside the same loop
with ``promptCaching: false``, on the catalogue's list prices (Anthropic's Claude Sonnet 4.5, OpenAI's
GPT-5).

The loop is a fixed transcript, the same in every run: a system text of about 1,500 tokens and four
tool declarations, a first message of about 2,000 (the instruction and the document), then ten
steps, each the model's short note and a ``read_file`` call (two in parallel every third step)
answered with a numbered module of 40-90 lines (500-1,100 tokens). Each step is sent as the loop
sends it, through ``phase_request`` and the real adapters, to the offline simulator, whose prefix
caches report usage as each provider does (``sim.Simulator._prompt_cache``). Cost is ``pricing.cost``
of each call's usage. ``python -m bench.loop_cache`` prints the table alone.

Baselines, measured in the same run: ``promptCaching: false`` (no ``cache_control`` marks, no
``prompt_cache_key``) on a simulated provider that caches as the real one does — on Anthropic that
is no caching at all; OpenAI caches prefixes without being asked, so the loop there is also billed
as if nothing were cached (``uncached``), the figure the issue's target is set against.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

STEPS = 10
ROUTES = {  # shape: (protocol, catalogue provider, model)
    "anthropic": ("anthropic", "anthropic", "claude-sonnet-4-5"),
    "openai": ("openai", "openai", "gpt-5"),
}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    schema: dict[str, Any]


def _tools() -> tuple[Tool, ...]:
    def obj(**props: str) -> dict[str, Any]:
        return {"type": "object", "properties": {k: {"type": v, "description": f"the {k}"} for k, v in props.items()},
                "required": list(props)}

    return (Tool("read_file", "Read a file of the workspace; lines come numbered. " * 3, obj(path="string")),
            Tool("list_files", "List files under a folder of the workspace. " * 3, obj(path="string")),
            Tool("search_files", "Search the workspace's files for a regular expression. " * 3,
                 obj(pattern="string", path="string")),
            Tool("edit_file", "Replace one exact block of a file with another. " * 3,
                 obj(path="string", search="string", replace="string")))


def module(k: int, lines: int) -> str:
    """A ``read_file`` result: ``lines`` numbered lines of module ``k``."""
    return "\n".join(f"{n}\t    total_{k} += compute_{k}(items[{n}], limit={n})  # step {k}"
                     for n in range(1, lines + 1))


def transcript(steps: int = STEPS) -> list[tuple[Any, Any]]:
    """Each step's (assistant turn, results turn), the same in every run."""
    from phasewise.providers.turns import AssistantTurn, ResultsTurn, ToolCall, ToolResult

    out = []
    for k in range(steps):
        paths = [f"pkg/mod_{k}.py"] + ([f"pkg/mod_{k}_b.py"] if k % 3 == 2 else [])
        calls = tuple(ToolCall(f"toolu_{k:02d}{i}", "read_file", json.dumps({"path": p}), {"path": p})
                      for i, p in enumerate(paths))
        results = tuple(ToolResult(c.id, module(k, 40 + (k * 17 + i * 23) % 51)) for i, c in enumerate(calls))
        out.append((AssistantTurn(f"Reading {', '.join(paths)} to see how step {k} is computed.", calls),
                    ResultsTurn(results)))
    return out


async def _loop(sim: Any, shape: str, name: str, caching: bool) -> dict[str, float]:
    from phasewise.providers.base import Timeouts
    from phasewise.providers.pricing import cost
    from phasewise.router.router import Engine, Router, phase_request
    from phasewise.router.routes import Keyring
    from phasewise.settings import load_settings

    protocol, provider, model = ROUTES[shape]
    loaded = load_settings({
        "phases": {"code": {"model": f"{provider}/{model}"}},
        "providers": {provider: {"baseUrl": sim.base_url(name, protocol), "requiresKey": False}},
        "promptCaching": caching,
    })
    engine = Engine(Keyring(environ={}))
    route = Router(engine, loaded).resolver.phase("code").main
    assert route is not None and route.info.input_price_per_mtok is not None
    adapter = engine.adapters[protocol]
    endpoint = engine.endpoint(route.spec, None)
    system = ("You are the code phase of Phasewise, working in steps with the tools below. "
              "Read before you edit; keep each change small; say what you changed and why. ") * 36
    user = ("<instruction>\nRename compute to compute_total across the package and keep callers working.\n"
            "</instruction>\n" + module(99, 160))
    turns: tuple[Any, ...] = ()
    totals = {"input_tokens": 0.0, "cache_read_tokens": 0.0, "cache_write_tokens": 0.0, "billed_usd": 0.0,
              "uncached_usd": 0.0}
    try:
        for pair in transcript():
            request = phase_request(route, system=system, user=user, tool=None, tools=_tools(), caching=caching,
                                    cache_key="phasewise-bench-loop", turns=turns, may_call_tools=True)
            c = await adapter.complete(endpoint, request, lambda _d: None, Timeouts(10, 30, 30))
            u = c.usage
            totals["input_tokens"] += u.input_tokens
            totals["cache_read_tokens"] += u.cache_read_tokens
            totals["cache_write_tokens"] += u.cache_write_tokens
            totals["billed_usd"] += cost(route.info, u.input_tokens, 0, u.cache_read_tokens, u.cache_write_tokens) or 0
            totals["uncached_usd"] += cost(route.info, u.input_tokens, 0) or 0
            turns += pair
    finally:
        await engine.aclose()
    return totals


async def loop_caching() -> dict[str, Any]:
    """Per protocol: the loop with caching, with ``promptCaching: false``, and the ratios."""
    from phasewise.sim import SimulatorThread

    out: dict[str, Any] = {}
    with SimulatorThread(first_token_ms=0, chunk_interval_ms=0, chunk_words=50) as sim:
        for shape in ROUTES:
            for variant in ("on", "off"):
                sim.configure(f"loop-{shape}-{variant}", prompt_cache=shape)
            on = await _loop(sim, shape, f"loop-{shape}-on", caching=True)
            off = await _loop(sim, shape, f"loop-{shape}-off", caching=False)
            out[shape] = {
                "caching": on, "caching_off": off,
                "ratio_pct": 100 * on["billed_usd"] / off["uncached_usd"],
                "ratio_vs_off_billed_pct": 100 * on["billed_usd"] / off["billed_usd"],
                "hit_share_pct": 100 * on["cache_read_tokens"] / on["input_tokens"],
            }
    return out


def main() -> None:
    result = asyncio.run(loop_caching())
    for shape, r in result.items():
        on, off = r["caching"], r["caching_off"]
        print(f"{shape:9} {STEPS}-step loop input: ${on['billed_usd']:.4f} with caching "
              f"(read {on['cache_read_tokens']:,.0f}, written {on['cache_write_tokens']:,.0f} of "
              f"{on['input_tokens']:,.0f} tokens), ${off['billed_usd']:.4f} with promptCaching false, "
              f"${off['uncached_usd']:.4f} uncached: {r['ratio_pct']:.1f} % of uncached, "
              f"{r['ratio_vs_off_billed_pct']:.1f} % of promptCaching false")
    print(json.dumps({k: {"ratio_pct": round(v["ratio_pct"], 1),
                          "ratio_vs_off_billed_pct": round(v["ratio_vs_off_billed_pct"], 1)}
                      for k, v in result.items()}))


if __name__ == "__main__":
    main()

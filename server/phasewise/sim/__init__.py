"""The built-in offline provider SIMULATOR: fake OpenAI- and Anthropic-protocol providers.

A loopback HTTP/1.1 server that speaks both real wire formats (streaming and not, tool calls,
usage, model lists), answers each Phasewise phase deterministically from the prompt, plays a
rule-based agent when a request offers the tools of a phase that works in steps (``sim.agent``:
parallel calls, transcripts checked as the real APIs check them, misbehaving models on request),
and fails on request in every documented provider way. It is the test-suite's only fake provider (the real
SDKs run against it), ``phasewise sim`` on the command line, and the README demo. With config
``prompt_cache`` (``anthropic``, ``openai``, ``zai``, ``deepseek``) a provider name keeps a real
prefix cache of the prompts it saw and reports cached tokens in that provider's usage shape.

    with SimulatorThread(first_token_ms=0, chunk_interval_ms=0) as sim:
        base = sim.base_url("sim-claude", "anthropic")
        sim.add_fault("anthropic.overloaded_error", provider="sim-claude")
        sim.configure("sim-gpt", prompt_cache="openai")

May import ``serial`` and ``tool_names`` only: a fake provider shares no code with what it tests
(``pyproject.toml`` forbids the rest).
"""

from __future__ import annotations

from phasewise.sim.cli import main, run_cli
from phasewise.sim.faults import FaultRule, preset_names
from phasewise.sim.server import DEFAULT_MODELS, ClientClose, SimConnection, SimRequest, Simulator
from phasewise.sim.thread import SimulatorThread

__all__ = [
    "DEFAULT_MODELS",
    "ClientClose",
    "FaultRule",
    "SimConnection",
    "SimRequest",
    "Simulator",
    "SimulatorThread",
    "main",
    "preset_names",
    "run_cli",
]

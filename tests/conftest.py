"""Shared fixtures: the provider simulator on loopback and LSP clients with real editors' profiles.

The language server runs as a subprocess (``python -m phasewise serve``); the simulator runs in
a thread of the test process, so tests can script faults and read what reached the wire.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from phasewise.sim import SimulatorThread

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ["visual-studio-code", "neovim"]
LEDGER = str(Path(tempfile.gettempdir()) / f"phasewise-tests-{os.getpid()}" / "runs.jsonl")
os.environ.setdefault("PHASEWISE_LEDGER", LEDGER)
# No developer's keyring or user settings file reaches a test: the keyring backend that stores
# nothing (tests of the keyring pick their own), and a user settings file that does not exist.
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
os.environ.setdefault("PHASEWISE_USER_SETTINGS", str(Path(LEDGER).parent / "no-user-settings.json"))


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread() as thread:
        yield thread


@pytest.fixture(autouse=True)
def _fresh_sim(request: pytest.FixtureRequest) -> None:
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


def server_env(**extra: str) -> dict[str, str]:
    """The server's environment: no real provider keys leak in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_AUTH_TOKEN"))}
    # the run record of every test session goes to a temporary folder, never the home folder
    env.setdefault("PHASEWISE_LEDGER", LEDGER)
    env.update(extra)
    return env


def sim_settings(sim: SimulatorThread, **phases: str) -> dict[str, Any]:
    """A ``phasewise`` section routing phases to simulated providers declared on ``sim``."""
    providers: dict[str, Any] = {}
    routes: dict[str, Any] = {}
    for phase, ref in phases.items():
        provider, _, model = ref.partition("/")
        protocol = "anthropic" if "claude" in provider or provider.endswith("-anthropic") else "openai"
        providers[provider] = {
            "protocol": protocol,
            "baseUrl": sim.base_url(provider, protocol),
            "apiKeyEnv": f"{provider.upper().replace('-', '_')}_KEY",
        }
        routes[phase] = {"model": model}
        routes[phase]["model"] = f"{provider}/{model}"
    return {"phases": routes, "providers": providers}


def sim_keys(settings: dict[str, Any]) -> dict[str, str]:
    """A distinct fake key for every provider in ``settings`` (never a real key)."""
    return {p["apiKeyEnv"]: f"test-key-{name}" for name, p in settings["providers"].items()}


def make_client_fixture(env: dict[str, str] | None = None, clients: list[str] | None = None) -> Any:
    @pytest_lsp.fixture(
        params=clients or CLIENTS,
        config=ClientServerConfig(
            server_command=[sys.executable, "-m", "phasewise", "serve"],
            server_env=env or server_env(),
        ),
    )
    async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest) -> AsyncIterator[LanguageClient]:
        profile, _, without = str(request.param).partition("/without-")
        capabilities = pytest_lsp.client_capabilities(profile)
        if without == "progress" and capabilities.window is not None:
            capabilities.window.work_done_progress = False  # a client with no progress UI
        params = types.InitializeParams(
            capabilities=capabilities,
            root_uri=ROOT.as_uri(),
        )
        await lsp_client.initialize_session(params)
        yield lsp_client
        await lsp_client.shutdown_session()

    return client


# ------------------------------------------------- added for the editor-experience tests (issue 12)

# What Phasewise's own plugins (VS Code, Neovim, Emacs) declare in ``initialize``: the client-side
# commands they carry out. Quick fixes name them only for a client that declares them.
PLUGIN_EXPERIMENTAL = {"phasewise": {"clientCommands": ["phasewise.setApiKey", "phasewise.openSettings"]}}


def make_plugin_client_fixture(env: dict[str, str] | None = None, clients: list[str] | None = None,
                               experimental: Any = PLUGIN_EXPERIMENTAL, root: Path | None = None) -> Any:
    """``make_client_fixture`` with the editor's profile plus ``experimental`` capabilities (the
    plugin's; ``None`` for a generic client, which declares none) and an optional workspace root."""

    @pytest_lsp.fixture(
        params=clients or CLIENTS,
        config=ClientServerConfig(
            server_command=[sys.executable, "-m", "phasewise", "serve"],
            server_env=env or server_env(),
        ),
    )
    async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest) -> AsyncIterator[LanguageClient]:
        capabilities = pytest_lsp.client_capabilities(str(request.param))
        capabilities.experimental = experimental
        params = types.InitializeParams(capabilities=capabilities, root_uri=(root or ROOT).as_uri())
        await lsp_client.initialize_session(params)
        yield lsp_client
        await lsp_client.shutdown_session()

    return client

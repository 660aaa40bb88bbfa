"""TLS and proxies: certificates are always verified, a CA bundle can be added, a proxy can be set
(or taken from ``HTTPS_PROXY``/``NO_PROXY``), all through the real SDKs over loopback.

The simulator stands behind a real TLS front (a self-signed certificate made here) and behind a
tiny recording HTTP proxy. Without the bundle the phase fails as a classified ``network``
problem naming the setting, sends nothing and is not retried; with it the phase runs. A proxy
set in settings, or in ``HTTPS_PROXY``, is used (the proxy saw the request); a host in
``NO_PROXY`` goes direct.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phasewise import cli
from phasewise.phases.documents import Document
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService
from phasewise.problems import ProblemKind
from phasewise.router.router import Engine, NullObserver
from phasewise.router.routes import Keyring
from phasewise.settings import LoadedSettings, load_settings
from phasewise.sim import SimulatorThread
from tests.helpers.net import RecordingProxy, TlsFront, self_signed_cert

KEY = "test-key-tls-0000111122223333"
DOC = "def add(a, b):\n    return a + b\n"


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path)


@pytest.fixture(autouse=True)
def _no_env_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


def section(base_url: str, **rest: Any) -> dict[str, Any]:
    return {"phases": {"plan": {"model": "tls/gpt-sim"}},
            "providers": {"tls": {"protocol": "openai", "baseUrl": base_url, "apiKeyEnv": "TLS_KEY"}},
            "retry": {"maxAttempts": 3, "backoffBaseSeconds": 0, "backoffMaxSeconds": 0}, **rest}


async def plan(loaded: LoadedSettings) -> PhaseResult:
    engine = Engine(Keyring({"TLS_KEY": KEY}))
    try:
        doc = Document("file:///t/add.py", DOC, 1, "python")
        return await PhaseService(engine).run(loaded, "plan", PhaseInput(doc, "add a docstring"), NullObserver())
    finally:
        await engine.aclose()


def chats(sim: SimulatorThread) -> list[Any]:
    return [r for r in sim.requests if r.endpoint == "chat"]


async def test_an_untrusted_certificate_is_refused_and_the_ca_bundle_makes_it_trusted(
        sim: SimulatorThread, cert: tuple[Path, Path]) -> None:
    with TlsFront(*cert, target_port=int(sim.url.rsplit(":", 1)[1])) as front:
        url = f"https://localhost:{front.port}/tls/v1"

        refused = await plan(load_settings(section(url)))
        assert not refused.ok and refused.error is not None
        assert refused.error.kind is ProblemKind.NETWORK
        message = refused.error.message
        assert "TLS certificate verification failed" in message and "phasewise.network.caBundle" in message
        assert "tls" in message and "plan" in message and KEY not in message
        assert chats(sim) == []  # nothing reached the provider
        assert len(refused.attempts) == 1  # a certificate that did not verify is not retried

        trusted = await plan(load_settings(section(url, network={"caBundle": str(cert[0])})))
        assert trusted.ok, trusted.error
        assert [r.api_key for r in chats(sim)] == [KEY]


async def test_a_ca_bundle_that_is_not_a_certificate_is_a_config_problem(tmp_path: Path, sim: SimulatorThread) -> None:
    for bundle, words in ((tmp_path / "missing.pem", "cannot be read"), (tmp_path / "notes.txt", "no PEM")):
        if bundle.suffix == ".txt":
            bundle.write_text("not a certificate", encoding="utf-8")
        result = await plan(load_settings(section(sim.base_url("tls"), network={"caBundle": str(bundle)})))
        assert result.error is not None and result.error.kind is ProblemKind.CONFIG
        assert words in result.error.message and result.error.setting == "phasewise.network.caBundle"
    assert chats(sim) == []


async def test_the_proxy_setting_forwards_requests(sim: SimulatorThread) -> None:
    with RecordingProxy() as proxy:
        result = await plan(load_settings(section(sim.base_url("tls"),
                                                  network={"proxy": f"http://127.0.0.1:{proxy.port}"})))
        assert result.ok, result.error
        assert proxy.seen == [f"POST {sim.base_url('tls')}/chat/completions"]
        assert [r.api_key for r in chats(sim)] == [KEY]


async def test_no_proxy_hosts_go_direct(sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with RecordingProxy() as proxy:
        result = await plan(load_settings(section(sim.base_url("tls"),
                                                  network={"proxy": f"http://127.0.0.1:{proxy.port}"})))
        assert result.ok, result.error
        assert proxy.seen == []
    assert len(chats(sim)) == 1


async def test_https_proxy_from_the_environment_tunnels_tls(sim: SimulatorThread, cert: tuple[Path, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with TlsFront(*cert, target_port=int(sim.url.rsplit(":", 1)[1])) as front, RecordingProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        url = f"https://localhost:{front.port}/tls/v1"
        result = await plan(load_settings(section(url, network={"caBundle": str(cert[0])})))
        assert result.ok, result.error
        assert proxy.seen == [f"CONNECT localhost:{front.port}"]  # a tunnel: the proxy never saw the key
        assert [r.api_key for r in chats(sim)] == [KEY]


def test_proxy_credentials_and_network_settings_in_a_project_file_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = load_settings({"network": {"proxy": "http://user:secret-pass@proxy.example.com:3128"}})
    assert [i.path for i in loaded.issues] == ["phasewise.network.proxy"]
    assert "HTTPS_PROXY" in loaded.issues[0].message and "secret-pass" not in loaded.issues[0].message

    # the command line reads `network` from the user settings file only, never from a project's
    project = tmp_path / "project"
    project.mkdir()
    (project / "phasewise.json").write_text(json.dumps({"network": {"proxy": "http://evil.example:8080"}}))
    monkeypatch.setenv("PHASEWISE_USER_SETTINGS", str(tmp_path / "none.json"))
    assert cli.main(["doctor", str(project), "--json", "--provider", "ollama"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["settings"] == str(project / "phasewise.json")
    from phasewise.workflows.config import load_cli_settings

    found = load_cli_settings(None, project)
    assert found.loaded.settings.network.proxy is None
    assert any(i.path == "phasewise.network" and "user settings file" in i.message for i in found.loaded.issues)

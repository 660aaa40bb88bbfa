"""Issue 7, items 3 and 6: the soak, and the leak scan.

**Soak**: many phase runs through one server while the simulator fails a fifth of the provider
answers with a seeded mix of fault kinds (errors, cut and stalled streams, HTML, garbage, closed
sockets, rate limits, and errors that echo the key back). Every run must end in a result or a
classified problem, the server must never crash, and its resident memory must stay flat.

**Leak scan**: the soak and the fault matrix run with recognisable canary keys (one for every
provider key variable, several shapes, one only ever handed over by the editor's setKeys), and
the scan fails if any piece of a canary appears in anything the server wrote: its JSON-RPC
stdout exactly as the client received it (logMessage, diagnostics, results, progress), its
stderr, the run record and the reports beside it, and the command line's output.

Sizes: ``PHASEWISE_FULL=1`` for 1,000 runs, short otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from phasewise.problems import ProblemKind
from phasewise.sim import SimulatorThread
from tests.helpers import ROOT, Editor, answer
from tests.helpers.faults import ANTHROPIC_ROWS, ATTEMPTS, OPENAI_ROWS, Row, run_matrix
from tests.helpers.hostile import (
    FULL,
    TeeFiles,
    canary_env,
    find_leaks,
    rss_kib,
    sandbox_env,
    server_pid,
    size,
    tee_command,
    tee_dir,
)

KINDS = {str(k) for k in ProblemKind}
ROUTE_KEYS = ["SOAK_KEY", "SOAK_SPARE", "ROW_KEY", "MAIN_KEY", "SPARE_KEY", "FALLBACK_KEY"]
CANARIES = canary_env(ROUTE_KEYS)
EDITOR_KEY = ("EDITOR_KEY", "cnry7f3a-editor-pushed-only-66c1e0d9")  # never in the environment
ALL_CANARIES = [*CANARIES.values(), EDITOR_KEY[1]]


def tee_fixture(name: str) -> tuple[Any, TeeFiles, Path]:
    """A pytest-lsp client whose server writes stdout/stderr to files too, with canary keys."""
    base = tee_dir(name)
    files = TeeFiles(base / "stdout.jsonrpc", base / "stderr.log")
    env = sandbox_env(base, PHASEWISE_WARMUP="1", PHASEWISE_LOG_LEVEL="INFO", **CANARIES)  # every line scanned

    @pytest_lsp.fixture(config=ClientServerConfig(server_command=tee_command(files), server_env=env))
    async def client(lsp_client: LanguageClient) -> AsyncIterator[LanguageClient]:
        await lsp_client.initialize_session(types.InitializeParams(
            capabilities=pytest_lsp.client_capabilities("visual-studio-code"), root_uri=ROOT.as_uri()))
        yield lsp_client
        await lsp_client.shutdown_session()

    return client, files, base / "ledger"


soak_client, SOAK_FILES, SOAK_LEDGER = tee_fixture("soak")
matrix_client, MATRIX_FILES, MATRIX_LEDGER = tee_fixture("matrix")


def scan(files: TeeFiles, ledger: Path, *seen: Any) -> dict[str, list[str]]:
    """Canary pieces in every stream and file the server wrote, and in what the client decoded."""
    found: dict[str, list[str]] = {}
    texts = files.read()
    for path in sorted(ledger.rglob("*")) if ledger.exists() else []:
        if path.is_file():
            texts[str(path)] = path.read_text("utf-8", "replace")
    texts["client view"] = repr(seen)
    for where, text in texts.items():
        if leaked := find_leaks(text, ALL_CANARIES):
            found[where] = leaked
    return found


def set_editor_key(client: LanguageClient) -> None:
    client.protocol.notify("phasewise/setKeys", {"keys": {EDITOR_KEY[0]: EDITOR_KEY[1]}})


# ------------------------------------------------------------------------------- the soak

FAST = {
    "retry": {"maxAttempts": 2, "backoffBaseSeconds": 0.005, "backoffMaxSeconds": 0.02, "maxWaitSeconds": 2},
    "timeouts": {"connectSeconds": 2, "firstTokenSeconds": 0.6, "idleSeconds": 0.4},
}
MIX: list[str | dict[str, Any]] = [
    {"preset": "openai.rate_limit", "retry_after_ms": 20},
    {"preset": "anthropic.rate_limit_error", "retry_after": 0.02, "echo_key": True},
    "openai.server_error", "openai.overloaded", "anthropic.overloaded_error", "anthropic.api_error",
    "zai.1305", "openrouter.model_down",
    {"stream": "error_event", "error_type": "overloaded_error"},
    {"stream": "error_event", "error_type": "api_error", "after_chunks": 2, "echo_key": True},
    {"stream": "cut"}, {"stream": "cut", "after_chunks": 2}, {"stream": "cut", "abrupt": True, "after_chunks": 1},
    {"stream": "stall"}, {"stream": "html"}, {"stream": "garbage"}, {"stream": "empty"}, {"close": True},
    {"status": 502, "body": "<html><body>502 Bad Gateway</body></html>"},
    "openai.invalid_api_key_echo", "anthropic.authentication_error_echo",
    {"status": 500, "body": {"error": {"message": "upstream failed", "type": "server_error"}}, "echo_key": True},
    {"preset": "deepseek.insufficient_balance", "echo_key": True},
    {"preset": "openai.context_length"}, {"preset": "zai.1301", "echo_key": True}, "anthropic.permission_error",
]


def soak_settings(sim: SimulatorThread) -> dict[str, Any]:
    def provider(name: str, protocol: str, keys: Any) -> dict[str, Any]:
        return {"protocol": protocol, "baseUrl": sim.base_url(name, protocol), "apiKeyEnv": keys}

    return {
        "phases": {
            "plan": {"model": "so/sim-fast", "fallbacks": ["sa/sim-fast"]},
            "code": {"model": "sa/sim-coder", "fallbacks": ["ed/sim-coder"], "editFormat": "text"},
            "review": {"model": "ed/sim-reviewer"},
        },
        "providers": {"so": provider("so", "openai", ["SOAK_KEY", "SOAK_SPARE"]),
                      "sa": provider("sa", "anthropic", "MAIN_KEY"),
                      "ed": provider("ed", "openai", EDITOR_KEY[0])},
        **FAST,
    }


DOC = "def total(items):\n    return sum(i.price for i in items)\n"


@pytest.mark.slow
async def test_soak_one_server_faulty_providers(soak_client: LanguageClient, sim: SimulatorThread) -> None:
    runs = size(150, 1000)
    client = soak_client
    editor = Editor(client)
    for name in ("so", "sa", "ed"):
        sim.configure(name, first_token_ms=0, chunk_interval_ms=0, chunk_words=40)
    set_editor_key(client)
    editor.configure(soak_settings(sim))
    uri = "file:///soak/cart.py"
    editor.open(uri, DOC)
    pid = server_pid(client)
    # warm-up without faults: SDKs imported, pools and caches filled
    for phase in ("plan", "code", "review") * 3:
        assert answer(await editor.command(f"phasewise.{phase}", {"uri": uri, "instruction": "add a discount"}))["ok"]
    sim.set_fault_mix(0.2, MIX, seed=7)
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    rss: dict[str, int] = {"warm": rss_kib(pid)}
    results: list[dict[str, Any]] = []
    for number in range(runs):
        phase = ("plan", "code", "review")[number % 3]
        if len(editor.texts[uri]) > 20_000:  # keep the document a document
            editor.change(uri, DOC)
        try:
            result = answer(await editor.command(f"phasewise.{phase}",
                                                 {"uri": uri, "instruction": f"add a discount, step {number}"}))
        except JsonRpcException as exc:  # a command that fails instead of answering is a crash here
            crashes.append(f"run {number} ({phase}): {exc.code} {exc.message}")
            continue
        if result["ok"]:
            outcomes["ok"] += 1
        else:
            error = result.get("error") or {}
            assert error.get("kind") in KINDS and error.get("message"), (number, result)
            assert error.get("provider") and error["provider"] in error["message"], (number, error)
            outcomes[error["kind"]] += 1
        if number % 50 == 0:
            results.append(result)
        if number == runs // 2:
            rss["middle"] = rss_kib(pid)
    rss["end"] = rss_kib(pid)
    status = answer(await editor.command("phasewise.status", {"uri": uri}))
    assert status["phases"] and client._server is not None and client._server.returncode is None
    faults = sim.fault_mix_counts
    leaks = scan(SOAK_FILES, SOAK_LEDGER, results, client.diagnostics, client.log_messages, client.messages)
    growth = rss["end"] - rss["warm"]
    ledger_lines = sum(1 for _ in (SOAK_LEDGER / "runs.jsonl").open()) if (SOAK_LEDGER / "runs.jsonl").exists() else 0
    print(f"\nsoak ({'full' if FULL else 'short'}): {runs} runs, {sum(outcomes.values())} answered, "
          f"outcomes {dict(outcomes.most_common())}; provider requests {faults['requests']}, faulty "
          f"{faults['faulted']} ({faults['faulted'] / max(faults['requests'], 1):.0%}): "
          f"{ {k: v for k, v in faults.items() if k not in ('requests', 'faulted')} }; crashes {len(crashes)}; "
          f"leaks {sum(map(len, leaks.values()))}; RSS warm {rss['warm'] / 1024:.1f} MiB, middle "
          f"{rss['middle'] / 1024:.1f} MiB, end {rss['end'] / 1024:.1f} MiB ({growth / 1024:+.1f} MiB); "
          f"ledger lines {ledger_lines}")
    assert crashes == []
    assert sum(outcomes.values()) == runs
    assert faults["faulted"] > runs * 0.1  # the mix did fail a good share of the answers
    assert len([k for k in faults if k not in ("requests", "faulted")]) >= 8  # of many kinds
    assert leaks == {}, leaks
    # flat memory: what the runs leave behind is bounded, not proportional to the runs
    assert growth < 40 * 1024, rss


# ------------------------------------------------------------------------------- the fault matrix, with canaries

ECHO_ROWS_OPENAI = [
    Row("openai.invalid_api_key_echo", "auth", 1),
    Row("openai.server_error", "server-error", ATTEMPTS, params={"echo_key": True}, name="5xx echoing the key"),
    Row("zai.1302", "rate-limit", ATTEMPTS, params={"echo_key": True}, name="rate limit echoing the key"),
    Row({"stream": "error_event", "error_type": "api_error"}, "server-error", 1, True,
        {"after_chunks": 3, "echo_key": True}, "stream error echoing the key"),
]
ECHO_ROWS_ANTHROPIC = [
    Row("anthropic.authentication_error_echo", "auth", 1),
    Row("anthropic.overloaded_error", "overloaded", ATTEMPTS, params={"echo_key": True}, name="529 echoing the key"),
    Row({"stream": "error_event", "error_type": "overloaded_error"}, "overloaded", 1, True,
        {"after_chunks": 3, "echo_key": True}, "stream error echoing the key"),
]


@pytest.mark.slow
async def test_fault_matrix_openai_leaks_no_canary(matrix_client: LanguageClient, sim: SimulatorThread) -> None:
    set_editor_key(matrix_client)
    await run_matrix(matrix_client, sim, "openai", [*OPENAI_ROWS, *ECHO_ROWS_OPENAI])
    await check_matrix_scan(matrix_client, sim)


@pytest.mark.slow
async def test_fault_matrix_anthropic_leaks_no_canary(matrix_client: LanguageClient, sim: SimulatorThread) -> None:
    set_editor_key(matrix_client)
    await run_matrix(matrix_client, sim, "anthropic", [*ANTHROPIC_ROWS, *ECHO_ROWS_ANTHROPIC])
    await check_matrix_scan(matrix_client, sim)


async def check_matrix_scan(client: LanguageClient, sim: SimulatorThread) -> None:
    """Then the key the editor pushed, echoed back by a provider that got it; then the scan."""
    echoes = [r for r in sim.requests if r.fault and ("echo" in r.fault or r.fault.startswith("stream:"))]
    assert echoes, "the simulator echoed no key back"
    uri = "file:///leak/pushed.py"
    client.set_configuration({"phases": {"plan": {"model": "pushed/sim-fast"}},
                              "providers": {"pushed": {"protocol": "openai", "apiKeyEnv": EDITOR_KEY[0],
                                                       "baseUrl": sim.base_url("pushed", "openai")}}},
                             section="phasewise")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={}))
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="python", version=1, text=DOC)))
    sim.add_fault("openai.invalid_api_key_echo", provider="pushed")

    async def command(name: str) -> dict[str, Any]:
        return answer(await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=name, arguments=[{"uri": uri, "instruction": "x", "wait": True}])))

    echoed = await command("phasewise.plan")
    assert echoed["error"]["kind"] == "auth" and "[redacted]" in echoed["error"]["message"], echoed
    assert [r.api_key for r in sim.requests if r.provider == "pushed"] == [EDITOR_KEY[1]]
    status = await command("phasewise.status")
    key_views = [k for p in status["phases"] for k in p.get("keys", [])]
    assert any(k.get("masked") for k in key_views), key_views
    leaks = scan(MATRIX_FILES, MATRIX_LEDGER, echoed, status, client.diagnostics, client.log_messages,
                 client.messages, client.progress_reports)
    assert MATRIX_FILES.stdout.stat().st_size > 0 and (MATRIX_LEDGER / "runs.jsonl").exists()
    assert leaks == {}, leaks


@pytest.mark.slow
def test_command_line_output_leaks_no_canary(sim: SimulatorThread, tmp_path: Path) -> None:
    """The command line, with canary keys in its environment and providers echoing them back."""
    settings = {"phasewise": {
        "phases": {"plan": {"model": "cli/sim-fast"}, "code": {"model": "cla/sim-coder"},
                   "review": {"model": "cli/sim-reviewer"}},
        "providers": {"cli": {"protocol": "openai", "baseUrl": sim.base_url("cli", "openai"), "apiKeyEnv": "SOAK_KEY"},
                      "cla": {"protocol": "anthropic", "baseUrl": sim.base_url("cla", "anthropic"),
                              "apiKeyEnv": "MAIN_KEY"}},
        **FAST,
    }}
    (tmp_path / "phasewise.json").write_text(json.dumps(settings))
    source = tmp_path / "cart.py"
    source.write_text(DOC)
    env = sandbox_env(tmp_path / "sandbox", **CANARIES)
    ledger = tmp_path / "sandbox" / "ledger"
    out: list[str] = []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "phasewise", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120)
        out.extend([done.stdout, done.stderr])
        return done

    sim.add_fault("openai.invalid_api_key_echo", provider="cli")
    failed = cli("plan", str(source), "-i", "add a discount", "--json")
    assert failed.returncode != 0 and "[redacted]" in failed.stdout + failed.stderr
    sim.add_fault({"status": 500, "body": {"error": {"message": "boom"}}, "echo_key": True}, provider="cli", times=-1)
    cli("review", str(source), "--json")
    echoed = len([r for r in sim.requests if r.fault])
    sim.simulator.clear_faults()
    sim.add_fault({"stream": "error_event", "error_type": "api_error", "echo_key": True}, provider="cla",
                  after_chunks=2)
    cli("run", str(source), "-i", "add a discount", "--dry-run", "--json")
    cli("doctor", str(tmp_path))
    assert echoed >= 2, [r.fault for r in sim.requests]
    leaks = {f"output {i}": found for i, text in enumerate(out) if (found := find_leaks(text, ALL_CANARIES))}
    for path in ledger.rglob("*"):
        if path.is_file() and (found := find_leaks(path.read_text("utf-8", "replace"), ALL_CANARIES)):
            leaks[str(path)] = found
    assert leaks == {}, leaks


def test_redact_masks_known_and_key_shaped_values() -> None:
    from phasewise.problems import Problem, redact, register_secret

    plain = "cnry7f3a-in-process-plain-value-0042"
    register_secret(plain)
    text = (f"key {plain}, bearer abcdefghijklmnopqrst, sk-proj-test-not-a-real-key, "
            "eyJfake-header.fake-payload.fake-signature")
    masked = redact(text)
    assert plain not in masked and "abcdefghijklmnopqrst" not in masked and "sk-proj" not in masked
    assert "eyJ" not in masked and masked.count("[redacted]") == 4
    # a problem never serialises a key, however it got into the message
    problem = Problem(ProblemKind.AUTH, f"rejected {plain}", phase="plan", provider="p", model="m")
    assert plain not in json.dumps(problem.to_json())
    # a key cut short by truncation after redaction is impossible: redaction comes first
    from phasewise.providers.classify import classify

    err = classify(401, {"error": {"message": "x" * 480 + plain}}, {}, secrets=(plain,))
    assert plain[:12] not in err.detail


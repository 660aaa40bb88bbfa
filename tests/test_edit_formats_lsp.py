"""Edit formats through a real LSP client (VS Code's and Neovim's capability profiles) to the
simulator's wire: each format's answer is matched and applied to the open document, the result
lists the change's files, and a misquoted block is repaired once or fails with nothing applied.
(Multi-file changes reach the editor once the edge applies ``edge.workspace_edit``; see
tests/test_workspace_edit.py and tests/test_context.py for those.)"""

from __future__ import annotations

from typing import Any

import pytest
from pytest_lsp import LanguageClient

from phasewise.sim import SimulatorThread
from tests.helpers import Editor, make_client_fixture, plain, server_env

pytestmark = pytest.mark.slow  # every test starts the language server and runs phases through it

client = make_client_fixture(server_env(CODER_KEY="test-key-coder-2222", PHASEWISE_WARMUP="0"))

DOC = "def load(path):\n    with open(path) as f:\n        return f.read()\n\n\ndef main():\n    return load('x')\n"
URI = "file:///work/example/loader.py"


def settings(sim: SimulatorThread, model: str = "glm-sim", **code: Any) -> dict[str, Any]:
    return {"phases": {"code": {"model": f"coder/{model}", **code}},
            "providers": {"coder": {"protocol": "openai", "baseUrl": sim.base_url("coder", "openai"),
                                    "apiKeyEnv": "CODER_KEY"}},
            "retry": {"maxAttempts": 1}}


def chats(sim: SimulatorThread) -> list[Any]:
    return [r for r in sim.requests if r.endpoint == "chat"]


@pytest.mark.parametrize("fmt", ["search-replace", "whole", "tool", "text"])
async def test_each_edit_format_renames_in_the_open_document(client: LanguageClient, sim: SimulatorThread,
                                                             fmt: str) -> None:
    editor = Editor(client)
    editor.configure(settings(sim, editFormat=fmt))
    editor.open(URI, DOC)
    code = plain(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to read_file"}))
    assert code["ok"] and code["applied"] is True, code
    assert editor.texts[URI] == DOC.replace("load", "read_file")
    assert [f["path"] for f in code["files"]] == ["/work/example/loader.py"] and code["files"][0]["created"] is False
    assert code["edits"] and "+def read_file(path):" in code["diff"]
    request = chats(sim)[-1].body
    prompt = "\n".join(m["content"] for m in request["messages"])
    assert f"Edit format: {fmt}" in prompt
    # only the tool format makes the code phase answer by (a forced) tool call
    assert (request.get("tool_choice", {}).get("function", {}).get("name") == "apply_edits") is (fmt == "tool")


async def test_a_misquoted_block_is_repaired_then_applied(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(settings(sim, "glm-misquote-once"))
    editor.open(URI, DOC)
    code = plain(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to read_file"}))
    assert code["ok"] and code["applied"] is True, code
    assert [a["outcome"] for a in code["attempts"]] == ["edit-failed", "ok"]
    assert editor.texts[URI] == DOC.replace("load", "read_file")
    assert "<repair>" in chats(sim)[-1].body["messages"][-1]["content"]


async def test_a_block_that_stays_wrong_applies_nothing(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(settings(sim, "glm-misquote"))
    editor.open(URI, DOC)
    code = plain(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to read_file"}))
    assert not code["ok"] and code["applied"] is None
    assert code["error"]["kind"] == "bad-request" and "block 1" in code["error"]["message"]
    assert "loader.py" in code["error"]["message"] and "Nothing was applied" in code["error"]["message"]
    assert code["files"] == [] and code["edits"] == []
    assert editor.texts[URI] == DOC and len(chats(sim)) == 2


async def test_a_repair_answer_cut_at_the_output_limit_applies_nothing(client: LanguageClient,
                                                                     sim: SimulatorThread) -> None:
    """The repair round's answer stops after its first block: no block of it is applied, and the problem
    names the output limit and the setting that raises it."""
    editor = Editor(client)
    editor.configure(settings(sim, "glm-misquote-once", maxOutputTokens=4000))
    editor.open(URI, DOC)
    sim.add_fault(delay_ms=0)  # the first answer as the model gives it: its block 1 misquotes a line
    sim.add_fault(cut_at_tokens=60)  # the repair round's answer stops after its first (matching) block
    code = plain(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to read_file"}))
    assert not code["ok"] and code["applied"] is None, code
    message = code["error"]["message"]
    assert "at its output limit of 4000 tokens: the repair round's edits end where the answer was cut off" in message
    assert "`phasewise.phases.code.maxOutputTokens`" in message and "Nothing was applied" in message
    assert code["files"] == [] and code["edits"] == []
    assert editor.texts[URI] == DOC and [r.fault for r in chats(sim)] == ["delay", "cut-at-limit"]
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.source == "phasewise" for d in ds))
    assert any("maxOutputTokens" in d.message for d in diags if d.source == "phasewise")


@pytest.mark.parametrize("fmt", ["search-replace", "whole"])
async def test_a_selected_range_is_all_that_changes(client: LanguageClient, sim: SimulatorThread, fmt: str) -> None:
    editor = Editor(client)
    editor.configure(settings(sim, editFormat=fmt))
    editor.open(URI, DOC)
    selection = {"start": {"line": 5, "character": 0}, "end": {"line": 6, "character": 0}}  # main() only
    code = plain(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to read_file",
                                                         "range": selection}))
    assert code["ok"] and code["applied"] is True, code
    assert editor.texts[URI] == DOC.replace("return load('x')", "return read_file('x')")
    assert "def load(path):" in editor.texts[URI]


@pytest.mark.parametrize("confirm", [True, False])
async def test_progress_says_the_change_waits_for_the_editor(client: LanguageClient, sim: SimulatorThread,
                                                             confirm: bool) -> None:
    # while the editor shows the change, the phase waits for the user, not for the provider
    editor = Editor(client)
    editor.configure(settings(sim, confirm=confirm))
    editor.open(URI, DOC)
    code = plain(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to read_file"}))
    assert code["ok"] and code["applied"] is True, code
    [params] = editor.applied
    asked = params.edit.change_annotations is not None
    ws = client.capabilities.workspace
    assert asked is (confirm and ws is not None and ws.workspace_edit is not None
                     and ws.workspace_edit.change_annotation_support is not None)
    messages = [getattr(p, "message", None) for reports in client.progress_reports.values() for p in reports]
    expected = ("the change to 1 file is shown for review: waiting for it to be applied or discarded" if asked
                else "applying the change to 1 file")
    assert expected in messages, messages
    assert messages.index(expected) < len(messages) - 1  # before the end, which says how it went


async def test_where_a_named_tool_choice_is_ignored_code_and_review_answer_in_a_json_block(
        client: LanguageClient, sim: SimulatorThread) -> None:
    # the catalogue's llama.cpp entry (it ignores a tool_choice naming a tool) pointed at the simulator
    editor = Editor(client)
    editor.configure({"phases": {"code": {"model": "llamacpp/glm-sim", "editFormat": "tool"},
                                 "review": {"model": "llamacpp/gpt-sim"}},
                      "providers": {"llamacpp": {"baseUrl": sim.base_url("llamacpp", "openai")}},
                      "retry": {"maxAttempts": 1}})
    editor.open(URI, DOC)
    code = plain(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to read_file"}))
    assert code["ok"] and code["applied"] is True, code
    assert editor.texts[URI] == DOC.replace("load", "read_file")
    review = plain(await editor.command("phasewise.review", {"uri": URI}))
    assert review["ok"], review
    for request in (r.body for r in chats(sim)):
        assert "tool_choice" not in request and "tools" not in request
        assert "Edit format: text" in "\n".join(m["content"] for m in request["messages"])

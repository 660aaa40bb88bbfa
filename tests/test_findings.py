"""Issue 23, items 8 and 9, the server's side: findings carry their phase and stay on their lines.

Through pytest-lsp clients with VS Code's and Neovim's declared capabilities, the simulator as the
provider of the built-in review and of a review-kind phase of the user's own (``security``):
each phase's findings show under their own source (``phasewise-review``, ``phasewise-security``)
and a phase's new findings replace only its own. A finding follows its lines through edits sent
as incremental changes or as the whole text, goes when its lines are deleted, its suggestion is
applied or it is dismissed, and its quick fixes say what they change. ``LineMap``, which maps a
document's lines across a change, is held against random edits in process.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient

from phasewise.edge import line_map
from phasewise.edge.fixes import suggestion_title
from phasewise.edge.line_map import LineMap
from phasewise.sim import SimulatorThread
from tests.helpers import SAMPLE_DOC, Editor, code_actions_json, make_client_fixture, plain, server_env

KEY = {"FINDINGS_KEY": "test-key-findings-1a2b3c4d"}
client = make_client_fixture(server_env(**KEY, PHASEWISE_WARMUP="0"))
URI = "file:///work/findings/store.py"
SOURCES = ("phasewise-review", "phasewise-security")


def settings(sim: SimulatorThread) -> dict[str, Any]:
    return {
        "phases": {"review": {"model": "finds/claude-sim"},
                   "security": {"kind": "review", "model": "finds/claude-sim",
                                "instructions": "Look for security problems only."}},
        "providers": {"finds": {"protocol": "anthropic", "baseUrl": sim.base_url("finds", "anthropic"),
                                "apiKeyEnv": "FINDINGS_KEY"}},
    }


def of(ds: list[types.Diagnostic], source: str) -> list[types.Diagnostic]:
    return [d for d in ds if d.source == source]


def ids(ds: list[types.Diagnostic]) -> set[str]:
    return {d.data["id"] for d in ds}


async def reviewed(editor: Editor, sim: SimulatorThread, *phases: str) -> list[types.Diagnostic]:
    """The document opened and reviewed by ``phases``; the findings shown once all have published."""
    editor.configure(settings(sim))
    editor.open(URI, SAMPLE_DOC)
    counts = {}
    for phase in phases:
        result = plain(await editor.command("phasewise.phase", {"uri": URI, "phase": phase}))
        assert result["ok"] and result["findings"], result
        counts[f"phasewise-{phase}"] = len(result["findings"])
    return await editor.diagnostics_where(URI, lambda ds: all(len(of(ds, s)) == n for s, n in counts.items()))


def type_text(editor: Editor, sync: str, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
    """Replace ``start..end`` (line, character) with ``text`` as the client's sync mode sends it."""
    lines = editor.texts[URI].split("\n")
    offset = sum(len(line) + 1 for line in lines[: start[0]]) + start[1]
    stop = sum(len(line) + 1 for line in lines[: end[0]]) + end[1]
    after = editor.texts[URI][:offset] + text + editor.texts[URI][stop:]
    if sync == "full":
        editor.change(URI, after)
        return
    editor.versions[URI] += 1
    editor.texts[URI] = after
    editor.client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=editor.versions[URI]),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(*start), types.Position(*end)), text=text)],
    ))


async def fixes_of(client: LanguageClient, diag: types.Diagnostic) -> list[dict[str, Any]]:
    """The quick fixes of ``diag`` as the JSON the server sent (the Python client would decode a
    CodeAction that carries a command as a Command)."""
    return await code_actions_json(client, types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(URI), range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag], only=[types.CodeActionKind.QuickFix])))


def by_id(ds: list[types.Diagnostic], fid: str) -> types.Diagnostic | None:
    return next((d for d in ds if isinstance(d.data, dict) and d.data.get("id") == fid), None)


# ------------------------------------------------------------------ 8: findings carry their phase


@pytest.mark.slow
async def test_findings_of_review_and_of_an_own_review_phase_coexist_each_under_its_source(
        client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    shown = await reviewed(editor, sim, "review", "security")
    review, security = of(shown, "phasewise-review"), of(shown, "phasewise-security")
    assert review and security and len(review) == len(security)  # the simulator finds the same
    assert {d.data["phase"] for d in review} == {"review"} and {d.data["phase"] for d in security} == {"security"}
    assert all(d.code is None for d in review + security)  # the column reads the source alone
    assert len(ids(review) | ids(security)) == len(review) + len(security)  # every id its own

    # review again: review's findings are replaced (new ids), security's stay as they were
    again = plain(await editor.command("phasewise.review", {"uri": URI}))
    assert again["ok"]
    now = await editor.diagnostics_where(URI, lambda ds: ids(of(ds, "phasewise-review")).isdisjoint(ids(review))
                                         and of(ds, "phasewise-review"))
    assert len(of(now, "phasewise-review")) == len(review)
    assert [(d.data["id"], d.range) for d in of(now, "phasewise-security")] == [(d.data["id"], d.range)
                                                                                for d in security]

    # the own phase's findings offer the same fixes as review's: its suggestion and a dismiss
    mine = next(d for d in of(now, "phasewise-security") if "except" in d.message.lower())
    titles = [a["title"] for a in await fixes_of(client, mine)]
    assert titles == ["Replace line 7 with: except Exception:",
                      "Dismiss this finding (security: Bare except: also catches KeyboardInterrupt and…)"]


# ------------------------------------------------------------------ 9: findings stay on their lines


@pytest.mark.slow
@pytest.mark.parametrize("sync", ["incremental", "full"])
async def test_a_finding_follows_its_lines_through_edits_and_goes_with_them(
        client: LanguageClient, sim: SimulatorThread, sync: str) -> None:
    editor = Editor(client)
    shown = await reviewed(editor, sim, "review")
    bare = next(d for d in shown if "except" in d.message.lower())
    printed = next(d for d in shown if "print" in d.message.lower())
    line = bare.range.start.line
    assert SAMPLE_DOC.split("\n")[line] == "    except:"

    # "# ok" typed on its line: the finding stays, over the whole edited line
    type_text(editor, sync, (line, 11), (line, 11), "  # ok")
    now = await editor.diagnostics_where(URI, lambda ds: (d := by_id(ds, bare.data["id"])) is not None
                                         and d.range.end.character == len("    except:  # ok"))
    assert by_id(now, bare.data["id"]).range.start == types.Position(line, 0)
    assert len(now) == len(shown)
    # and taken away again (an undo): still there, as it was
    type_text(editor, sync, (line, 11), (line, 17), "")
    now = await editor.diagnostics_where(URI, lambda ds: (d := by_id(ds, bare.data["id"])) is not None
                                         and d.range == bare.range)

    # two lines typed above: every finding moves down with its lines
    type_text(editor, sync, (0, 0), (0, 0), "# header\n# another\n")
    now = await editor.diagnostics_where(URI, lambda ds: all(
        (d := by_id(ds, f.data["id"])) is not None and d.range.start.line == f.range.start.line + 2 for f in shown))
    assert all(by_id(now, f.data["id"]).data["startLine"] == f.range.start.line + 2 for f in shown)

    # the print line deleted: its finding goes, the others stay
    gone = printed.range.start.line + 2
    type_text(editor, sync, (gone, 0), (gone + 1, 0), "")
    now = await editor.diagnostics_where(URI, lambda ds: by_id(ds, printed.data["id"]) is None)
    assert ids(now) == ids(shown) - {printed.data["id"]}
    assert by_id(now, bare.data["id"]).range.start.line == line + 2


@pytest.mark.slow
async def test_an_applied_suggestion_drops_its_finding_and_dismiss_drops_another(
        client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    shown = await reviewed(editor, sim, "review")
    bare = next(d for d in shown if "except" in d.message.lower())
    fixes = await fixes_of(client, bare)
    apply, dismiss = fixes
    assert apply["title"] == "Replace line 7 with: except Exception:"
    assert apply["kind"] == "quickfix" and apply["isPreferred"] is True
    # the edit, then the command that drops the finding (a client applies the edit first)
    assert apply["command"]["command"] == "phasewise.dismissFinding"
    assert apply["command"]["arguments"] == [{"uri": URI, "id": bare.data["id"]}]
    assert dismiss["title"].startswith("Dismiss this finding (review: Bare except")
    edit = default_converter().structure(apply["edit"], types.WorkspaceEdit)
    editor._apply(types.ApplyWorkspaceEditParams(edit=edit))
    assert editor.texts[URI].split("\n")[bare.range.start.line] == "    except Exception:"
    # gone once the lines read as the suggestion, before the command (a client may never send it)
    now = await editor.diagnostics_where(URI, lambda ds: by_id(ds, bare.data["id"]) is None)
    assert ids(now) == ids(shown) - {bare.data["id"]}
    assert plain(await editor.command("phasewise.dismissFinding", apply["command"]["arguments"][0])) == {
        "dismissed": False}

    # another finding dismissed through its quick fix's command
    other = next(d for d in now if d.message.startswith("Compare with None"))
    command = (await fixes_of(client, other))[-1]["command"]
    assert command["command"] == "phasewise.dismissFinding"
    assert plain(await editor.command(command["command"], command["arguments"][0])) == {"dismissed": True}
    left = await editor.diagnostics_where(URI, lambda ds: by_id(ds, other.data["id"]) is None)
    assert ids(left) == ids(shown) - {bare.data["id"], other.data["id"]}
    assert await fixes_of(client, other) == []  # a finding no longer shown offers nothing


@pytest.mark.slow
@pytest.mark.parametrize(("arg", "expected"), [
    ({}, "`uri` is required (the document's URI)"),
    ({"uri": URI}, "`id` is required (the finding's `data.id`)"),
    ({"uri": URI, "id": 5}, "`id` must be text: the finding's `data.id`"),
    ({"uri": URI, "id": ""}, "`id` is required (the finding's `data.id`)"),
    (None, "expected one argument object {uri, id}"),
])
async def test_dismiss_with_bad_arguments_is_invalid_params_naming_the_field(
        client: LanguageClient, arg: dict[str, Any] | None, expected: str) -> None:
    editor = Editor(client)
    with pytest.raises(JsonRpcException) as err:
        await editor.command("phasewise.dismissFinding", arg)
    assert err.value.code == -32602
    assert err.value.message.endswith(f"phasewise.dismissFinding: {expected}"), err.value.message
    # and the server carries on
    assert plain(await editor.command("phasewise.dismissFinding", {"uri": URI, "id": "review.1"})) == {
        "dismissed": False}


# ------------------------------------------------------------------ in process


def test_quick_fix_titles_say_what_changes() -> None:
    assert suggestion_title(2, 2, "    return sum(i.price for i in items if i)") == \
        "Replace line 3 with: return sum(i.price for i in items if i)"
    assert suggestion_title(2, 4, "if x:\n    y()") == "Replace lines 3–5 with 2 lines: if x: …"
    assert suggestion_title(0, 0, "") == "Replace line 1 with a blank line"
    long = suggestion_title(9, 9, "x = " + "a + " * 40 + "b")
    assert long.startswith("Replace line 10 with: x = a + a") and long.endswith("…") and len(long) < 90


@pytest.mark.parametrize("difflib_cells", [line_map._DIFFLIB_CELLS, 0])  # 0: anchored on unique lines
def test_line_map_follows_lines_through_random_edits(monkeypatch: pytest.MonkeyPatch, difflib_cells: int) -> None:
    monkeypatch.setattr(line_map, "_DIFFLIB_CELLS", difflib_cells)
    rnd = random.Random(23)
    words = ["a", "b", "", "x = 1", "def f():", "    return 2"]
    for _ in range(3000):
        old = [rnd.choice(words) + str(rnd.randint(0, 3)) for _ in range(rnd.randint(0, 16))]
        new = list(old)
        for _ in range(rnd.randint(1, 3)):
            op, at = rnd.random(), rnd.randint(0, len(new))
            if op < 0.3 and at < len(new):
                new[at] += rnd.choice(["  # ok", "x"])
            elif op < 0.55:
                new[at:at] = [rnd.choice(words) for _ in range(rnd.randint(1, 3))]
            elif op < 0.8 or at == len(new):
                del new[at: at + rnd.randint(1, 2)]
            else:  # a line moved elsewhere
                new.insert(rnd.randint(0, len(new) - 1), new.pop(at))
        before, after = "\n".join(old), "\n".join(new)
        lmap = LineMap.between(before, after)
        if lmap is None:
            assert before == after
            continue
        old_lines, new_lines = before.split("\n"), after.split("\n")
        for start in range(len(old_lines)):
            for end in range(start, min(len(old_lines), start + 3)):
                at = lmap.span(start, end)
                if at is None:
                    continue
                assert 0 <= at[0] <= at[1] < len(new_lines)
                text = lmap.new_lines(at[0], at[1], start, old_lines[start: end + 1])
                assert text == new_lines[at[0]: at[1] + 1]
                if not lmap.touched(start, end):
                    assert text == old_lines[start: end + 1]  # only moved


def test_line_map_of_single_edits() -> None:
    text = "\n".join(f"line {i}" for i in range(10))
    edited = text.replace("line 4", "line 4  # ok")
    lmap = LineMap.between(text, edited)
    assert lmap is not None and lmap.span(4, 4) == (4, 4) and lmap.touched(4, 4) and not lmap.touched(5, 9)
    assert lmap.span(9, 9) == (9, 9)
    deleted = text.replace("line 4\n", "")
    lmap = LineMap.between(text, deleted)
    assert lmap is not None and lmap.span(4, 4) is None and lmap.span(3, 5) == (3, 4) and lmap.span(8, 8) == (7, 7)
    split = text.replace("line 4", "li\nne 4")  # a line broken in two: its finding covers both halves
    lmap = LineMap.between(text, split)
    assert lmap is not None and lmap.span(4, 4) == (4, 5) and lmap.span(5, 5) == (6, 6)
    assert LineMap.between(text, text) is None


def test_line_map_of_a_whole_text_changed_in_many_places() -> None:
    """A formatter's whole-text answer on a large file (past difflib's share: anchored on unique lines)."""
    lines = [f"value_{i} = compute({i})" for i in range(3000)]
    new = [line + "  # fmt" if i % 100 == 1 else line for i, line in enumerate(lines)]
    del new[1550]  # a line deleted
    new[10:10] = ["", "# inserted"]  # lines inserted near the top
    lmap = LineMap.between("\n".join(lines), "\n".join(new))
    assert lmap is not None
    assert lmap.span(0, 0) == (0, 0) and lmap.span(20, 20) == (22, 22)  # moved down by two
    assert lmap.span(101, 101) == (103, 103) and lmap.touched(101, 101)  # edited: kept, moved
    assert lmap.span(1550, 1550) is None and lmap.span(2999, 2999) == (3000, 3000)

"""The edge's ChangeSet → WorkspaceEdit helper and its staleness check, with lsprotocol types and the
capability profiles of real editors."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types

from phasewise.edge.workspace_edit import minimal_text_edits, stale_problem, workspace_edit
from phasewise.phases.edits import ChangeSet, FileChange
from tests.helpers import apply_text_edits, offset_at

LIB = "def find_item(items, sku):\n    return None\n"


def caps(*, document_changes: bool = True, create: bool = True, annotations: bool = True,
         metadata: bool = False) -> types.ClientCapabilities:
    ops = [types.ResourceOperationKind.Create, types.ResourceOperationKind.Rename] if create else []
    return types.ClientCapabilities(workspace=types.WorkspaceClientCapabilities(
        apply_edit=True,
        workspace_edit=types.WorkspaceEditClientCapabilities(
            document_changes=document_changes, resource_operations=ops,
            change_annotation_support=(types.ChangeAnnotationsSupportOptions(groups_on_label=True)
                                       if annotations else None),
            metadata_support=metadata or None,
        ),
    ))


def change(tmp_path: Path) -> ChangeSet:
    lib, caller, new = tmp_path / "lib.py", tmp_path / "caller.py", tmp_path / "tests" / "test_lib.py"
    lib.write_text(LIB, encoding="utf-8")
    caller.write_text("from lib import find_item\n", encoding="utf-8")
    return ChangeSet((
        FileChange("lib.py", lib.as_uri(), LIB, LIB.replace("find_item", "find_by_sku"), version=4),
        FileChange("caller.py", caller.as_uri(), "from lib import find_item\n", "from lib import find_by_sku\n"),
        FileChange("tests/test_lib.py", new.as_uri(), "", "def test_x():\n    pass\n", created=True),
    ))


def test_document_changes_carry_versions_creates_and_confirmation(tmp_path: Path) -> None:
    cs = change(tmp_path)
    edit = workspace_edit(cs, caps(), confirm=True)
    assert isinstance(edit, types.WorkspaceEdit) and edit.document_changes is not None
    kinds = [type(c).__name__ for c in edit.document_changes]
    assert kinds == ["TextDocumentEdit", "TextDocumentEdit", "CreateFile", "TextDocumentEdit"]
    lib, caller, create, new = edit.document_changes
    assert isinstance(lib, types.TextDocumentEdit) and lib.text_document.version == 4
    assert isinstance(caller, types.TextDocumentEdit) and caller.text_document.version is None
    assert isinstance(create, types.CreateFile) and create.uri == cs.files[2].uri
    assert create.options is not None and create.options.overwrite is False
    assert isinstance(new, types.TextDocumentEdit) and new.text_document.version is None
    first = lib.edits[0]
    assert isinstance(first, types.AnnotatedTextEdit) and first.annotation_id == "phasewise-code"
    # the minimal span: "find_" and "(items..." are common to both
    assert first.range == types.Range(start=types.Position(0, 9), end=types.Position(0, 13))
    assert first.new_text == "by_sku"
    assert edit.change_annotations is not None
    note = edit.change_annotations["phasewise-code"]
    assert note.needs_confirmation is True and "lib.py" in (note.description or "")


def test_no_annotations_without_support_or_confirm(tmp_path: Path) -> None:
    cs = change(tmp_path)
    for c, confirm in ((caps(annotations=False), True), (caps(), False)):
        edit = workspace_edit(cs, c, confirm=confirm)
        assert isinstance(edit, types.WorkspaceEdit) and edit.change_annotations is None
        assert edit.document_changes is not None
        assert all(not isinstance(e, types.AnnotatedTextEdit) for d in edit.document_changes
                   if isinstance(d, types.TextDocumentEdit) for e in d.edits)


def test_new_file_without_resource_operations_is_a_clear_problem(tmp_path: Path) -> None:
    problem = workspace_edit(change(tmp_path), caps(create=False))
    assert not isinstance(problem, types.WorkspaceEdit)
    assert problem.kind == "capability" and "tests/test_lib.py" in problem.message
    assert "nothing was applied" in problem.message


def test_without_document_changes_the_changes_map(tmp_path: Path) -> None:
    cs = ChangeSet(change(tmp_path).files[:2])
    edit = workspace_edit(cs, caps(document_changes=False))
    assert isinstance(edit, types.WorkspaceEdit) and edit.document_changes is None
    assert edit.changes is not None and set(edit.changes) == {f.uri for f in cs.files}


def test_stale_open_document_or_disk_file_refuses_everything(tmp_path: Path) -> None:
    cs = change(tmp_path)
    lib = cs.files[0]
    fresh = {lib.uri: (LIB, 4)}
    assert stale_problem(cs, fresh) is None
    moved = stale_problem(cs, {lib.uri: (LIB, 5)})
    assert moved is not None and moved.kind == "document-changed" and "lib.py" in moved.message
    assert "3 files" in moved.message
    retyped = stale_problem(cs, {lib.uri: (LIB + "# typed\n", 4)})
    assert retyped is not None and "lib.py changed in the editor" in retyped.message
    (tmp_path / "caller.py").write_text("# someone else\n", encoding="utf-8")
    disk = stale_problem(cs, fresh)
    assert disk is not None and "caller.py changed on disk" in disk.message
    (tmp_path / "caller.py").write_text("from lib import find_item\n", encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_lib.py").write_text("", encoding="utf-8")
    exists = stale_problem(cs, fresh)
    assert exists is not None and "tests/test_lib.py was created by someone else" in exists.message


def test_minimal_edit_positions_in_utf16_and_utf8() -> None:
    before, after = "x = '😀'\ny = 1\n", "x = '😀'\ny = 2\n"
    [e] = minimal_text_edits(before, after)
    assert e.range.start == types.Position(1, 4) and e.new_text == "2"
    [same_line] = minimal_text_edits("a = '😀b'\n", "a = '😀c'\n")
    assert same_line.range.start == types.Position(0, 7)  # the emoji is two UTF-16 units
    [utf8] = minimal_text_edits("a = '😀b'\n", "a = '😀c'\n", types.PositionEncodingKind.Utf8)
    assert utf8.range.start == types.Position(0, 9)


# ------------------------------------------------------------ one minimal edit per changed hunk

CALLER = ("from lib import find_item\n"
          "\n"
          "def total(items):\n"
          "    return sum(i.price for i in items)\n"
          "x = find_item(items, 'a')\n")


def test_two_distant_changes_are_two_edits_and_leave_the_lines_between_alone() -> None:
    after = CALLER.replace("find_item", "find_by_sku")
    edits = minimal_text_edits(CALLER, after)
    assert [(e.range, e.new_text) for e in edits] == [
        (types.Range(types.Position(0, 21), types.Position(0, 25)), "by_sku"),
        (types.Range(types.Position(4, 9), types.Position(4, 13)), "by_sku"),
    ]
    assert apply_text_edits(CALLER, edits) == after
    # a cursor, mark or breakpoint on lines 1-3 is inside no edit, so the editor leaves it be
    for line in (1, 2, 3):
        for character in (0, 4, len(CALLER.split("\n")[line])):
            at = offset_at(CALLER, types.Position(line, character))
            assert not any(offset_at(CALLER, e.range.start) <= at <= offset_at(CALLER, e.range.end) for e in edits)


def test_every_edit_of_a_file_is_in_its_one_document_edit_annotated(tmp_path: Path) -> None:
    caller = tmp_path / "caller.py"
    after = CALLER.replace("find_item", "find_by_sku")
    cs = ChangeSet((FileChange("caller.py", caller.as_uri(), CALLER, after, version=2),))
    edit = workspace_edit(cs, caps(), confirm=True)
    assert isinstance(edit, types.WorkspaceEdit) and edit.document_changes is not None
    [doc] = edit.document_changes
    assert isinstance(doc, types.TextDocumentEdit) and doc.text_document.version == 2
    assert [e.range.start.line for e in doc.edits] == [0, 4]
    assert all(isinstance(e, types.AnnotatedTextEdit) and e.annotation_id == "phasewise-code" for e in doc.edits)
    assert apply_text_edits(CALLER, doc.edits) == after
    plain = workspace_edit(cs, caps(), confirm=False)
    assert isinstance(plain, types.WorkspaceEdit) and plain.document_changes is not None
    [bare] = plain.document_changes
    assert isinstance(bare, types.TextDocumentEdit)
    assert [type(e) for e in bare.edits] == [types.TextEdit, types.TextEdit]
    # the changes map (a client without documentChanges) gets the same list
    mapped = workspace_edit(cs, caps(document_changes=False))
    assert isinstance(mapped, types.WorkspaceEdit) and mapped.changes is not None
    assert mapped.changes[caller.as_uri()] == bare.edits


def test_crlf_pairs_are_never_split() -> None:
    before = "a = 1\r\nb = 2\r\nc = 3\r\nd = 4\r\n"
    after = "a = 10\r\nb = 2\r\nc = 3\r\nd = 40\r\n"
    edits = minimal_text_edits(before, after)
    assert [(e.range.start, e.range.end, e.new_text) for e in edits] == [
        (types.Position(0, 5), types.Position(0, 5), "0"), (types.Position(3, 5), types.Position(3, 5), "0")]
    assert apply_text_edits(before, edits) == after
    # a line ending that changes from CRLF to LF: the edit takes the whole pair, not the "\r" alone
    # (a position between "\r" and "\n" is no position at all to an editor)
    [e] = minimal_text_edits("x\r\ny\r\n", "x\r\nz\n")
    assert (e.range.start, e.range.end, e.new_text) == (types.Position(1, 0), types.Position(2, 0), "z\n")
    [e] = minimal_text_edits("x\r\ny\r\n", "x\r\ny\n")
    assert (e.range.start, e.range.end, e.new_text) == (types.Position(1, 1), types.Position(2, 0), "\n")
    [e] = minimal_text_edits("a\r\nb\r\n", "a\rb\r\n")  # the common start ends inside the pair
    assert (e.range.start, e.range.end, e.new_text) == (types.Position(0, 1), types.Position(1, 0), "\r")
    [e] = minimal_text_edits("x\r\n", "x\r\ny\r\n")  # a line added after a CRLF one
    assert (e.range.start, e.range.end, e.new_text) == (types.Position(1, 0), types.Position(1, 0), "y\r\n")


def test_non_bmp_characters_in_utf16_and_utf8_units() -> None:
    before = "s = '😀'\nkeep = 1\nt = '𝄞x'\n"
    after = "s = '😀!'\nkeep = 1\nt = '𝄞y'\n"
    utf16 = minimal_text_edits(before, after)
    assert [(e.range.start, e.range.end, e.new_text) for e in utf16] == [
        (types.Position(0, 7), types.Position(0, 7), "!"),   # 😀 is 2 UTF-16 units
        (types.Position(2, 7), types.Position(2, 8), "y"),   # so is 𝄞
    ]
    assert apply_text_edits(before, utf16, "utf-16") == after
    utf8 = minimal_text_edits(before, after, types.PositionEncodingKind.Utf8)
    assert [(e.range.start, e.range.end) for e in utf8] == [
        (types.Position(0, 9), types.Position(0, 9)), (types.Position(2, 9), types.Position(2, 10))]  # 4 bytes
    assert apply_text_edits(before, utf8, "utf-8") == after
    utf32 = minimal_text_edits(before, after, types.PositionEncodingKind.Utf32)
    assert [e.range.start for e in utf32] == [types.Position(0, 6), types.Position(2, 6)]
    assert apply_text_edits(before, utf32, "utf-32") == after


def test_insert_at_the_end_of_the_file() -> None:
    before = "a = 1\nb = 2\n"
    [e] = minimal_text_edits(before, before + "c = 3\n")
    assert (e.range.start, e.range.end, e.new_text) == (types.Position(2, 0), types.Position(2, 0), "c = 3\n")
    [e] = minimal_text_edits("a = 1", "a = 1\nb = 2")  # no final newline
    assert (e.range.start, e.range.end, e.new_text) == (types.Position(0, 5), types.Position(0, 5), "\nb = 2")


def test_delete_of_whole_lines() -> None:
    before = "one\ntwo\nthree\nfour\nfive\nsix\n"
    after = "one\nfour\nfive\n"
    edits = minimal_text_edits(before, after)
    assert [(e.range.start, e.range.end, e.new_text) for e in edits] == [
        (types.Position(1, 0), types.Position(3, 0), ""), (types.Position(5, 0), types.Position(6, 0), "")]
    assert apply_text_edits(before, edits) == after
    assert minimal_text_edits(before, before) == []


def test_a_new_file_is_one_insertion_after_its_create(tmp_path: Path) -> None:
    edit = workspace_edit(change(tmp_path), caps(), confirm=False)
    assert isinstance(edit, types.WorkspaceEdit) and edit.document_changes is not None
    create, new = edit.document_changes[2:]
    assert isinstance(create, types.CreateFile) and isinstance(new, types.TextDocumentEdit)
    [e] = new.edits
    assert e.range == types.Range(types.Position(0, 0), types.Position(0, 0))
    assert e.new_text == "def test_x():\n    pass\n"


# Lines drawn from a few shapes, so texts share lines (repeated ones too) and differ in places;
# CRLF and lone CR endings, non-BMP and accented characters among them.
_LINE = st.sampled_from(["", "x = 1", "    return None", "def f():", "é😀", "𝄞 y", "pass"])
_END = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r"])
_TEXT = st.lists(st.tuples(_LINE, _END), max_size=14).map(lambda parts: "".join(a + b for a, b in parts))


@st.composite
def _before_after(draw: st.DrawFn) -> tuple[str, str]:
    before = draw(_TEXT)
    if draw(st.booleans()):
        return before, draw(_TEXT)  # unrelated texts
    lines = before.split("\n")  # or a few lines of it changed, added or removed
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines)))
        how = draw(st.sampled_from(["replace", "insert", "delete", "typo"]))
        if how == "insert" or at == len(lines):
            lines.insert(at, draw(_LINE) + draw(st.sampled_from(["", "\r"])))
        elif how == "delete":
            del lines[at]
        elif how == "typo":
            lines[at] = lines[at][: len(lines[at]) // 2] + draw(st.sampled_from(["z", "", "\r", "😀"]))
        else:
            lines[at] = draw(_LINE)
    return before, "\n".join(lines)


@pytest.mark.slow
@settings(deadline=None, database=None, derandomize=True, max_examples=600)
@given(pair=_before_after(), encoding=st.sampled_from(["utf-16", "utf-8", "utf-32"]))
def test_applying_the_edits_always_gives_the_after_text(pair: tuple[str, str], encoding: str) -> None:
    before, after = pair
    edits = minimal_text_edits(before, after, types.PositionEncodingKind(encoding))
    assert apply_text_edits(before, edits, encoding) == after  # also asserts they do not overlap
    spans = [(offset_at(before, e.range.start, encoding), offset_at(before, e.range.end, encoding))
             for e in edits]
    assert spans == sorted(spans)  # in document order
    assert all(end < start for (_, end), (start, _) in itertools.pairwise(spans))  # apart
    for (start, end), e in zip(spans, edits, strict=True):
        assert before[start:end] != e.new_text  # each one changes something
        for at in (start, end):  # never between the two characters of a CRLF pair
            assert not (0 < at < len(before) and before[at - 1] == "\r" and before[at] == "\n")



async def test_apply_change_set_sends_one_edit_or_a_problem(tmp_path: Path) -> None:
    from phasewise.edge.workspace_edit import apply_change_set, open_documents

    cs = change(tmp_path)
    sent: list[types.ApplyWorkspaceEditParams] = []

    async def accept(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        sent.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    async def decline(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        sent.append(params)
        return types.ApplyWorkspaceEditResult(applied=False, failure_reason="cancelled in the preview")

    class Doc:
        def __init__(self, source: str, version: int) -> None:
            self.source, self.version = source, version

    fresh = open_documents({cs.files[0].uri: Doc(LIB, 4)})
    assert await apply_change_set(accept, cs, fresh, caps()) is None
    assert len(sent) == 1 and sent[0].edit.change_annotations is not None
    # marked a refactoring only for a client that declares metadataSupport (VS Code then saves a
    # multi-file change's files); Eglot 1.9 refuses an applyEdit with a key it does not know
    assert sent[0].metadata is None
    assert await apply_change_set(accept, cs, fresh, caps(metadata=True)) is None
    assert sent[-1].metadata is not None and sent[-1].metadata.is_refactoring is True
    del sent[-1]
    refused = await apply_change_set(decline, cs, fresh, caps())
    assert refused is not None and "cancelled in the preview" in refused.message and len(sent) == 2
    stale = await apply_change_set(accept, cs, open_documents({cs.files[0].uri: Doc(LIB, 9)}), caps())
    assert stale is not None and stale.kind == "document-changed" and len(sent) == 2  # nothing sent
    no_create = await apply_change_set(accept, cs, fresh, caps(create=False))
    assert no_create is not None and no_create.kind == "capability" and len(sent) == 2


def test_workspace_of_takes_file_folders_and_open_buffers(tmp_path: Path) -> None:
    from phasewise.edge.workspace_edit import workspace_of

    class Doc:
        source, version = "x = 2\n", 3

    (tmp_path / "a.py").write_text("x = 1\n", encoding="utf-8")
    ws = workspace_of([tmp_path.as_uri(), "untitled:Untitled-1"], {(tmp_path / "a.py").as_uri(): Doc()})
    assert ws.folders == [tmp_path.resolve()]
    got = ws.read("a.py")
    assert got is not None and (got.text, got.version) == ("x = 2\n", 3)  # the open buffer wins over disk

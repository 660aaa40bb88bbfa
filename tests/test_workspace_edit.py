"""The edge's ChangeSet → WorkspaceEdit helper and its staleness check, with lsprotocol types and the
capability profiles of real editors."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from phasewise.edge.workspace_edit import minimal_text_edit, stale_problem, workspace_edit
from phasewise.phases.edits import ChangeSet, FileChange

LIB = "def find_item(items, sku):\n    return None\n"


def caps(*, document_changes: bool = True, create: bool = True, annotations: bool = True) -> types.ClientCapabilities:
    ops = [types.ResourceOperationKind.Create, types.ResourceOperationKind.Rename] if create else []
    return types.ClientCapabilities(workspace=types.WorkspaceClientCapabilities(
        apply_edit=True,
        workspace_edit=types.WorkspaceEditClientCapabilities(
            document_changes=document_changes, resource_operations=ops,
            change_annotation_support=(types.ChangeAnnotationsSupportOptions(groups_on_label=True)
                                       if annotations else None),
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
    e = minimal_text_edit(before, after)
    assert e.range.start == types.Position(1, 4) and e.new_text == "2"
    same_line = minimal_text_edit("a = '😀b'\n", "a = '😀c'\n")
    assert same_line.range.start == types.Position(0, 7)  # the emoji is two UTF-16 units
    utf8 = minimal_text_edit("a = '😀b'\n", "a = '😀c'\n", types.PositionEncodingKind.Utf8)
    assert utf8.range.start == types.Position(0, 9)


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

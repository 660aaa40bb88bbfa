"""Edit formats: parsing SEARCH/REPLACE, whole-file and multi-file tool answers; matching with drift;
the change set is all or nothing."""

from __future__ import annotations

import time

import pytest

from phasewise.phases.documents import AnswerError, LineRange, apply_edits
from phasewise.phases.edits import EditFailure, FileText, line_edits
from phasewise.phases.formats import FORMATS, SEARCH_REPLACE, WHOLE
from phasewise.phases.matching import match_block

INV = ("def find(items, sku):\n    for item in items:\n        if item.sku == sku:\n            return item\n"
       "    return None\n")
CALLER = "from inventory import find\n\n\ndef lookup(items):\n    return find(items, 'A1')\n"


def resolver(files: dict[str, str | None]):
    def resolve(path: str) -> FileText | None:
        if path.startswith(("/", "..")):
            return None
        return FileText(path, f"file:///ws/{path}", files.get(path))
    return resolve


def sr(*blocks: tuple[str, str, str], fenced: bool = True) -> str:
    out = ["Here is the change.", ""]
    for path, search, replace in blocks:
        body = [path]
        if fenced:
            body.append("```python")
        body += ["<<<<<<< SEARCH", search, "=======", replace, ">>>>>>> REPLACE"]
        if fenced:
            body.append("```")
        out += [*body, ""]
    return "\n".join(out)


def test_search_replace_across_two_files_and_a_new_one() -> None:
    files = {"inventory.py": INV, "app/caller.py": CALLER}
    answer = sr(("inventory.py", "def find(items, sku):", "def find_by_sku(items, sku):"),
                ("app/caller.py", "from inventory import find\n", "from inventory import find_by_sku\n"),
                ("app/caller.py", "    return find(items, 'A1')", "    return find_by_sku(items, 'A1')"),
                ("tests/test_inv.py", "", "def test_it():\n    assert True"))
    cs = FORMATS["search-replace"].change(text=answer, tool_input=None, resolve=resolver(files),
                                          document=FileText("inventory.py", "file:///ws/inventory.py", INV))
    assert [f.path for f in cs.files] == ["inventory.py", "app/caller.py", "tests/test_inv.py"]
    assert cs.get("inventory.py").after.startswith("def find_by_sku(items, sku):\n")  # type: ignore[union-attr]
    caller = cs.get("app/caller.py")
    assert caller is not None and "find(" not in caller.after and caller.after.count("find_by_sku") == 2
    new = cs.get("tests/test_inv.py")
    assert new is not None and new.created and new.after == "def test_it():\n    assert True\n"
    assert "+++ b/tests/test_inv.py" in new.diff and "--- /dev/null" in new.diff
    assert cs.files[0].to_json()["uri"] == "file:///ws/inventory.py"


def test_unfenced_blocks_and_path_reused_for_following_block() -> None:
    text = ("inventory.py\n<<<<<<< SEARCH\n    return None\n=======\n    return False\n>>>>>>> REPLACE\n"
            "<<<<<<< SEARCH\ndef find(items, sku):\n=======\ndef find(items, sku=None):\n>>>>>>> REPLACE\n")
    blocks = SEARCH_REPLACE.parse(text)
    assert [(b.path, b.index) for b in blocks] == [("inventory.py", 1), ("inventory.py", 2)]


def test_indentation_drift_is_carried_to_the_replacement() -> None:
    # the model dropped the common indentation of the block
    out = match_block(INV, "if item.sku == sku:\n    return item", "if item.sku == sku:\n    return item.copy()")
    assert isinstance(out, list)
    assert "            return item.copy()" in "\n".join(out)


def test_trailing_whitespace_leading_blank_and_gutter_tolerated() -> None:
    assert isinstance(match_block(INV, "    return None   ", "    return 0"), list)
    assert isinstance(match_block(INV, "\n    for item in items:\n        if item.sku == sku:", "x\ny"), list)
    gutter = "   2|     for item in items:\n   3|         if item.sku == sku:"
    out = match_block(INV, gutter, "    for item in items or []:\n        if item.sku == sku:")
    assert isinstance(out, list) and "    for item in items or []:" in out


def test_ambiguous_and_missing_blocks_name_file_and_block_and_nothing_applies() -> None:
    text = INV + "\n" + INV
    files = {"a.py": text, "b.py": CALLER}
    answer = sr(("b.py", "from inventory import find", "from inventory import find_by_sku"),
                ("a.py", "    return None", "    return 0"),
                ("b.py", "def missing():", "def here():"))
    with pytest.raises(EditFailure) as info:
        FORMATS["search-replace"].change(text=answer, tool_input=None, resolve=resolver(files),
                                         document=FileText("a.py", "file:///ws/a.py", text))
    failures = info.value.failures
    assert [(f.path, f.block) for f in failures] == [("a.py", 2), ("b.py", 3)]
    assert "matches 2 places" in failures[0].reason and "matches no lines" in failures[1].reason
    prompt = info.value.repair_prompt()
    assert "a.py: block 2" in prompt and "b.py: block 3" in prompt
    assert "SEARCH section starts `def missing():`" in prompt  # the model is shown which block; problems are not


def test_outside_workspace_and_missing_path_refused() -> None:
    with pytest.raises(EditFailure, match="outside the workspace"):
        FORMATS["search-replace"].change(text=sr(("/etc/passwd", "", "x")), tool_input=None,
                                         resolve=resolver({}), document=FileText("a.py", "file:///ws/a.py", ""))
    with pytest.raises(AnswerError, match="no file path"):
        SEARCH_REPLACE.parse("<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n")
    with pytest.raises(AnswerError, match="no >>>>>>> REPLACE"):
        SEARCH_REPLACE.parse("a.py\n<<<<<<< SEARCH\na\n=======\nb\n")


def test_whole_format_and_crlf_kept() -> None:
    crlf = "a = 1\r\nb = 2\r\n"
    answer = "Updated.\n\nx.py\n```python\na = 1\nb = 3\n```\n\nnew/y.py\n```\nprint(1)\n```\n"
    assert [p for p, _ in WHOLE.parse(answer)] == ["x.py", "new/y.py"]
    cs = FORMATS["whole"].change(text=answer, tool_input=None, resolve=resolver({"x.py": crlf}),
                                 document=FileText("x.py", "file:///ws/x.py", crlf))
    x = cs.get("x.py")
    assert x is not None and x.after == "a = 1\r\nb = 3\r\n" and x.before == crlf
    y = cs.get("new/y.py")
    assert y is not None and y.created


def test_tool_format_with_paths() -> None:
    files = {"inventory.py": INV, "caller.py": CALLER}
    tool_input = {"summary": "s", "edits": [
        {"start_line": 1, "end_line": 1, "new_text": "def find_by_sku(items, sku):"},
        {"path": "caller.py", "start_line": 5, "end_line": 5, "new_text": "    return find_by_sku(items, 'A1')"},
    ]}
    cs = FORMATS["tool"].change(text="", tool_input=tool_input, resolve=resolver(files),
                                document=FileText("inventory.py", "file:///ws/inventory.py", INV))
    assert {f.path for f in cs.files} == {"inventory.py", "caller.py"}
    bad = {"edits": [{"path": "caller.py", "start_line": 50, "end_line": 50, "new_text": "x"}]}
    with pytest.raises(EditFailure, match=r"caller\.py"):
        FORMATS["tool"].change(text="", tool_input=bad, resolve=resolver(files),
                               document=FileText("inventory.py", "file:///ws/inventory.py", INV))


def test_window_restricts_matching_of_the_document() -> None:
    text = INV + "\n" + INV
    # both copies hold `return None`; the window (the second copy) makes the match unique
    out = match_block(text, "    return None", "    return 0", LineRange(6, 11))
    assert isinstance(out, list) and out.count("    return 0") == 1 and out.index("    return 0") > 5


def test_line_edits_reproduce_the_new_text() -> None:
    before, after = INV, INV.replace("find", "find_by_sku").replace("    return None\n", "")
    assert apply_edits(before, line_edits(before, after)) == after


def test_five_thousand_line_file_blocks_match_exactly() -> None:
    lines = [f"def f{i}(x):\n    return x + {i}\n" for i in range(2500)]
    text = "".join(lines)
    assert text.count("\n") == 5000
    blocks = [("big.py", f"def f{i}(x):\n    return x + {i}", f"def f{i}(x):\n    return x * {i}")
              for i in range(0, 2500, 250)]
    started = time.perf_counter()
    cs = FORMATS["search-replace"].change(text=sr(*blocks), tool_input=None, resolve=resolver({"big.py": text}),
                                          document=FileText("big.py", "file:///ws/big.py", text))
    elapsed = time.perf_counter() - started
    after = cs.files[0].after
    assert after.count(" * ") == 10 and after.count("\n") == 5000
    assert "return x * 250\n" in after and "return x + 251\n" in after
    print(f"matched 10 blocks on a 5,000-line file in {elapsed * 1000:.1f} ms")


def test_whole_keeps_the_files_own_ending() -> None:
    for answer in ("a.py\n```\nx = 2\n```\n", "a.py\n```\nx = 2\n\n\n```\n"):
        cs = FORMATS["whole"].change(text=answer, tool_input=None, resolve=resolver({"a.py": "x = 1\n"}),
                                     document=FileText("a.py", "file:///ws/a.py", "x = 1\n"))
        assert cs.files[0].after == "x = 2\n"
    bare = FORMATS["whole"].change(text="a.py\n```\nx = 2\n```\n", tool_input=None,
                                   resolve=resolver({"a.py": "x = 1"}),
                                   document=FileText("a.py", "file:///ws/a.py", "x = 1"))
    assert bare.files[0].after == "x = 2"


def test_prose_only_is_no_change_but_code_in_another_shape_is_refused() -> None:
    doc = FileText("a.py", "file:///ws/a.py", "x = 1\n")
    for fmt in ("search-replace", "whole"):
        empty = FORMATS[fmt].change(text="Nothing needs to change: x is already 1.", tool_input=None,
                                    resolve=resolver({"a.py": "x = 1\n"}), document=doc)
        assert not empty and empty.files == ()
    with pytest.raises(AnswerError, match="no SEARCH/REPLACE block"):
        FORMATS["search-replace"].change(text="```diff\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y\n```",
                                         tool_input=None, resolve=resolver({"a.py": "x = 1\n"}), document=doc)


def test_whole_answer_for_a_shown_range_replaces_that_range_only() -> None:
    text = "a = 1\nb = 2\nc = 3\nd = 4\n"
    cs = FORMATS["whole"].change(text="x.py\n```\nb = 20\nc = 30\n```\n", tool_input=None,
                                 resolve=resolver({"x.py": text}), document=FileText("x.py", "file:///ws/x.py", text),
                                 windows={"x.py": LineRange(1, 2)})
    assert cs.files[0].after == "a = 1\nb = 20\nc = 30\nd = 4\n"


def test_elided_lines_with_dots_are_matched_piece_by_piece() -> None:
    search = "def find(items, sku):\n...\n    return None"
    replace = "def find_by_sku(items, sku):\n...\n    return False"
    out = match_block(INV, search, replace)
    assert isinstance(out, str)  # the plain matcher cannot do it
    files = {"inv.py": INV}
    cs = FORMATS["search-replace"].change(text=sr(("inv.py", search, replace)), tool_input=None,
                                          resolve=resolver(files),
                                          document=FileText("inv.py", "file:///ws/inv.py", INV))
    assert cs.files[0].after == INV.replace("def find(", "def find_by_sku(").replace("return None", "return False")
    with pytest.raises(EditFailure, match=r"skip lines with `\.\.\.` a different number"):
        FORMATS["search-replace"].change(text=sr(("inv.py", search, "def f():")), tool_input=None,
                                         resolve=resolver(files), document=FileText("inv.py", "file:///ws/inv.py", INV))


def test_one_format_object_per_settings_name_and_the_default_first() -> None:
    from phasewise.providers.catalogue import BUILTIN
    from phasewise.settings import DEFAULT_EDIT_FORMAT, EDIT_FORMATS

    assert tuple(f.name for f in FORMATS) == EDIT_FORMATS
    assert FORMATS.answer(None, "code") is FORMATS[DEFAULT_EDIT_FORMAT]
    # the catalogue's per-model defaults name formats that exist
    named = {m.edit_format for spec in BUILTIN.values() for m in spec.models.values() if m.edit_format}
    assert named and named <= set(EDIT_FORMATS)


@pytest.mark.parametrize(("name", "code_by_tool", "review_by_tool"), [
    ("search-replace", False, True), ("whole", False, True), ("tool", True, True), ("text", False, False)])
def test_a_review_answers_by_tool_call_unless_its_format_is_structured_text(name: str, code_by_tool: bool,
                                                                           review_by_tool: bool) -> None:
    # code writes in its own format; search-replace and whole write code only, so findings come by tool call
    assert FORMATS.answer(name, "code") is FORMATS[name]
    assert FORMATS.answer(name, "code").by_tool is code_by_tool
    assert FORMATS.answer(name, "review").by_tool is review_by_tool


@pytest.mark.parametrize("name", ["search-replace", "whole", "tool", "text"])
def test_where_a_named_tool_choice_is_ignored_nothing_answers_by_tool_call(name: str) -> None:
    # llama.cpp reads a tool_choice naming a tool as "auto" or "any": the call could not be required,
    # so the answer that would come by that call comes in a fenced JSON block; code keeps its own format
    from phasewise.providers.catalogue import builtin

    for kind in ("code", "review"):
        fmt = FORMATS.answer(name, kind, named_tool_choice=False)
        assert not fmt.by_tool
        assert fmt is (FORMATS["text"] if FORMATS.answer(name, kind).by_tool else FORMATS.answer(name, kind))
    for provider in ("llamacpp", "llamacpp-anthropic"):
        spec = builtin(provider)
        assert spec is not None and spec.tool_choice_named is False and spec.requires_key is False
    assert builtin("llamacpp-anthropic").tool_choice_none is False  # type: ignore[union-attr]

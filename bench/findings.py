"""``python -m bench.findings [--lines N] [--findings N] [--n N]``: findings following their lines
(issue 23, item 9), printed (never asserted).

Per keystroke on an open document of 20,000 lines with 60 findings, the time the diagnostics book
takes to move its findings (``DiagnosticsBook.document_changed``: ``LineMap`` between the text
before and after, the findings moved, a publish when any changed) beside the time pygls takes to
apply the same incremental change to its document (what every keystroke costs already) and a
plain split of the whole text into lines (what any line-by-line look costs). Cases: a character
typed on a line without a finding (nothing moves), on a finding's line (it is republished), a line
inserted at the top (every finding moves), and the whole text replaced at once by a formatter that
changed 200 scattered lines (a full-sync client, the worst case for the middle's ``difflib``).
In process, no client: publishing is counted, not sent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from lsprotocol import types  # noqa: E402
from pygls.workspace import Workspace  # noqa: E402

from phasewise.edge.diagnostics import DiagnosticsBook  # noqa: E402
from phasewise.phases.documents import Finding  # noqa: E402

URI = "file:///bench/big.py"


class _Server:
    """What the book needs of the server: its workspace, and somewhere to publish."""

    def __init__(self) -> None:
        self.workspace = Workspace(None)
        self.published = 0

    def text_document_publish_diagnostics(self, params: Any) -> None:
        self.published += 1


def _doc(lines: int) -> str:
    return "\n".join(f"    value_{i} = compute(items[{i}], factor={i % 7})  # line {i}" for i in range(lines))


def _change(ls: _Server, version: int, start: tuple[int, int], end: tuple[int, int], text: str) -> float:
    """pygls applies one incremental change; the seconds it took."""
    change = types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(*start), types.Position(*end)), text=text)
    t = time.perf_counter()
    ls.workspace.update_text_document(types.VersionedTextDocumentIdentifier(uri=URI, version=version), change)
    return time.perf_counter() - t


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(samples) * 1000:7.3f} ms  p99 {p99 * 1000:7.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--findings", type=int, default=60)
    parser.add_argument("--n", type=int, default=300, help="keystrokes per case")
    args = parser.parse_args()

    ls = _Server()
    text = _doc(args.lines)
    ls.workspace.put_text_document(types.TextDocumentItem(uri=URI, language_id="python", version=1, text=text))
    book = DiagnosticsBook(ls)  # type: ignore[arg-type]
    step = args.lines // args.findings
    found = [Finding(i * step + 5, i * step + 5, "warning", f"finding {i}", "x = 1") for i in range(args.findings)]
    book.set_findings(URI, text.split("\n"), found, "bench", "review")
    version = 1
    free_line = args.findings // 2 * step + step // 2  # a line in the middle without a finding
    finding_line = args.findings // 2 * step + 5

    def case(name: str, at: tuple[int, int], typed: str) -> None:
        nonlocal version
        book_s, pygls_s = [], []
        published = ls.published
        for k in range(args.n):
            version += 1
            line, col = at
            # type a character, then take it away (so the document stays the same size)
            edit = (typed, (line, col), (line, col)) if k % 2 == 0 else ("", (line, col), (line, col + len(typed)))
            pygls_s.append(_change(ls, version, edit[1], edit[2], edit[0]))
            t = time.perf_counter()
            book.document_changed(URI)
            book_s.append(time.perf_counter() - t)
        print(f"{name:<40} book {_ms(book_s)}   pygls's own apply {_ms(pygls_s)}   "
              f"published {ls.published - published}/{args.n}")

    print(f"{args.lines} lines ({len(text) / 1e6:.2f} MB), {args.findings} findings, {args.n} keystrokes a case")
    case("a character on a line without a finding", (free_line, 10), "x")
    case("a character on a finding's line", (finding_line, 10), "x")
    case("a line inserted at the top", (0, 0), "# new\n")
    splits = []
    for _ in range(args.n):
        t = time.perf_counter()
        ls.workspace.get_text_document(URI).source.split("\n")
        splits.append(time.perf_counter() - t)
    print(f"{'baseline: the whole text split into lines':<40} {_ms(splits)}")

    # a formatter's answer as one full-text change: 200 scattered lines changed
    source = ls.workspace.get_text_document(URI).source
    lines = source.split("\n")
    formatted = "\n".join(line + "  # fmt" if i % (args.lines // 200) == 1 else line for i, line in enumerate(lines))
    full = []
    for k in range(10):
        version += 1
        ls.workspace.update_text_document(types.VersionedTextDocumentIdentifier(uri=URI, version=version),
                                          types.TextDocumentContentChangeWholeDocument(
                                              text=formatted if k % 2 == 0 else source))
        t = time.perf_counter()
        book.document_changed(URI)
        full.append(time.perf_counter() - t)
    print(f"{'full text, 200 scattered lines changed':<40} book {_ms(full)}")
    shown = book.finding(URI, "review.1")
    print(f"findings still shown: {sum(1 for i in range(1, args.findings + 1) if book.finding(URI, f'review.{i}'))}"
          f"/{args.findings} (review.1 on line {shown.start + 1 if shown else '-'})")


if __name__ == "__main__":
    main()

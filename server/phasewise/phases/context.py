"""The project as context: which related files a phase sends with its document, within a token budget.

The selection policy (the files themselves are ``phases.workspace``'s, what is known of them
``phases.index``'s). ``gather`` picks, in this order, until ``phases.<p>.contextTokens`` is spent:
files the instruction names (a path or ``@path``), files the plan names (code phase), files the
document imports, files that use the top-level symbols of the range (or of the whole document), then
a compact repository map (paths with their top-level symbols, ranked by how related they are to the
document and the instruction, how close, and how many files use their symbols; cut to what is left
of the budget).

Only files inside the workspace folders are read, each path through the workspace's ``PathGate``
(``phasewise.gate``: links resolved, inside a folder, not in ``.git``); a document outside every
folder is worked on alone. The file list honours ``.gitignore`` (``git ls-files`` in a git work
tree; a walk that skips the usual build folders otherwise). Binary, huge and generated files are
skipped; git-ignored files are sent only when the instruction names them, and credential files
(``gate.credential``: ``.env*``, keys, ``.netrc``, ``.ssh/``…) only when the *user's own*
instruction does (never a ``phasewise:`` comment's, a plan's or a model's). Everything here is
blocking file and process I/O: call ``gather`` off the event loop (``asyncio.to_thread``). Per-file
facts (symbols, identifiers) are cached by the session's index, by path, size and mtime, so a second
gathering on an unchanged tree reads nothing again.

Symbols come from Python's ``ast`` for Python files and a small definition regex for other
languages. tree-sitter would be more exact for other languages, but ``tree-sitter-language-pack``
(1.25 on PyPI, checked) ships no grammars in its wheel: it downloads them at run time
(``DownloadManager``), which a server that must work offline and send nothing unasked cannot do;
the map only needs top-level names, which the regex finds.
May not import: edge, router, providers.
"""

from __future__ import annotations

import ast
import heapq
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from phasewise.phases.index import IDENT, Facts, Ranks, generated, symbols_of
from phasewise.phases.workspace import Workspace, sensitive, uri_to_path
from phasewise.serial import Jsonable, json_rule
from phasewise.tokens import estimate_tokens

_PATHISH = re.compile(r"(?<![\w/.])@?([\w./-]*[\w-]\.[A-Za-z0-9]{1,8}|[\w.-]+/[\w./-]+|\.[\w][\w.-]*)")
_JS_IMPORT = re.compile(r"""(?:from\s+|require\(\s*|import\s+)['"](\.{1,2}/[^'"]+)['"]""")


CHANGED = "changed by the code phase"
NAMED = "named in the instruction"


@dataclass(frozen=True, slots=True)
class ContextFile(Jsonable):
    """A file a phase sends; ``to_json`` is what the result lists of it (``{path, reason, tokens}``)."""

    path: str
    uri: str = field(metadata=json_rule(skip=True))
    text: str = field(metadata=json_rule(skip=True))
    reason: str
    tokens: int
    version: int | None = field(default=None, metadata=json_rule(skip=True))


@dataclass(frozen=True, slots=True)
class Context:
    """What a phase sends besides its document."""

    files: tuple[ContextFile, ...] = ()
    repo_map: str = ""
    document: ContextFile | None = None

    @property
    def map_tokens(self) -> int:
        return estimate_tokens(self.repo_map) if self.repo_map else 0

    def sent(self) -> list[ContextFile]:
        """Everything the phase sent, as the result lists it: the document, the related files, the map."""
        out = [self.document] if self.document else []
        out += self.files
        if self.repo_map:
            out.append(ContextFile("(repository map)", "", "", "repository map", self.map_tokens))
        return out

    @property
    def tokens(self) -> int:
        return sum(f.tokens for f in self.files) + self.map_tokens


# --------------------------------------------------------------------------- selection


def named_paths(ws: Workspace, text: str, listing: Sequence[str]) -> list[str]:
    """Workspace-relative paths a text names (``@path``, a relative path, or a unique file name)."""
    if not text:
        return []
    by_name: dict[str, list[str]] = {}
    for rel in listing:
        by_name.setdefault(rel.rsplit("/", 1)[-1], []).append(rel)
    known = set(listing)
    out: list[str] = []
    for m in _PATHISH.finditer(text):
        token = m.group(1).removeprefix("./").rstrip(".")
        if not token:
            continue
        if token in known:
            out.append(token)
        elif "/" not in token and len(by_name.get(token, [])) == 1:
            out.append(by_name[token][0])
        else:
            p = ws.absolute(token)
            found = ws.locate(p) if p is not None and p.exists() else None
            if found is not None:
                out.append(found[1])  # e.g. a git-ignored file the instruction names: it may be sent
    return list(dict.fromkeys(out))


def imports_of(ws: Workspace, rel: str, text: str, listing: Sequence[str]) -> list[str]:
    known = set(listing)
    here = rel.rsplit("/", 1)[0] if "/" in rel else ""
    out: list[str] = []
    if rel.endswith((".py", ".pyi")):
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            tree = None
        modules: list[tuple[str, int]] = []
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.Import):
                modules += [(a.name, 0) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                modules.append((base, node.level))
                modules += [(f"{base}.{a.name}" if base else a.name, node.level) for a in node.names]
        for name, level in modules:
            parts = name.split(".") if name else []
            roots = [""] if level == 0 else []
            if level:
                up = here.split("/") if here else []
                up = up[: len(up) - (level - 1)] if level > 1 else up
                roots = ["/".join(up)]
            else:
                roots += [here, "src", "server"]
            for root in roots:
                stem = "/".join(x for x in [root, *parts] if x)
                for cand in (f"{stem}.py", f"{stem}/__init__.py"):
                    if cand in known and cand != rel:
                        out.append(cand)
    else:
        for m in _JS_IMPORT.finditer(text):
            target = os.path.normpath(os.path.join(here, m.group(1))).replace(os.sep, "/")
            for cand in (target, *(f"{target}{e}" for e in (".ts", ".tsx", ".js", ".jsx", "/index.ts", "/index.js"))):
                if cand in known:
                    out.append(cand)
                    break
    return list(dict.fromkeys(out))


def _allowed(rel: str, named: set[str]) -> bool:
    return rel in named or not sensitive(rel)


def gather(ws: Workspace, *, document_uri: str, document_text: str, range_text: str | None = None,
           instruction: str = "", plan: str | None = None, budget_tokens: int = 8000,
           changed: Sequence[str] = (), users_words: bool = False) -> Context:
    """The related files and repository map one phase sends (blocking: run it in a thread).
    ``users_words``: the instruction is the user's own (typed), so the credential files it names
    may be sent; a document outside every folder goes alone."""
    doc_rel = ws.rel(document_uri)
    doc_entry = ContextFile(doc_rel or uri_to_path(document_uri).name, document_uri, document_text, "document",
                            estimate_tokens(range_text if range_text is not None else document_text))
    if budget_tokens <= 0 or not ws.folders or doc_rel is None:
        return Context(document=doc_entry)
    listing = ws.listing()
    listed = set(listing)
    chosen: list[tuple[str, str]] = []  # (rel, reason)
    seen = {doc_rel} if doc_rel else set()

    def add(rels: Iterable[str], reason: str) -> None:
        for r in rels:
            if r not in seen:
                seen.add(r)
                chosen.append((r, reason))

    named_i = [r for r in named_paths(ws, instruction, listing) if users_words or not sensitive(r)]
    named = set(named_i) | set(changed)
    add(changed, CHANGED)  # review after code: the other files of the change come first
    add(named_i, NAMED)
    if plan:
        add([r for r in named_paths(ws, plan, listing) if r in listed], "named in the plan")
    if doc_rel:
        add(imports_of(ws, doc_rel, document_text, listing), "imported by the document")
    focus = range_text if range_text is not None else document_text
    syms = set(symbols_of(doc_rel or "", focus)) if doc_rel else set()
    all_facts = ws.all_facts(listing)
    if syms:
        users: list[tuple[int, str, str]] = []
        for rel, facts in all_facts.items():
            if rel in seen:
                continue
            hit = syms & facts.idents
            if hit:
                users.append((-len(hit), rel, ", ".join(f"`{s}`" for s in sorted(hit)[:3])))
        users.sort()
        for _, rel, which in users[:20]:
            add([rel], f"uses {which}")
    files: list[ContextFile] = []
    spent = 0
    files_budget = budget_tokens * 3 // 4
    for rel, reason in chosen:
        if not _allowed(rel, named):
            continue
        ft = ws.read(rel)
        if ft is None or ft.text is None or (rel not in named and generated(rel, ft.text[:400])):
            continue
        tokens = estimate_tokens(ft.text)
        if spent + tokens > files_budget:
            continue
        spent += tokens
        files.append(ContextFile(rel, ft.uri, ft.text, reason, tokens, ft.version))
    repo_map = _repo_map(all_facts, ws.references(), doc_rel, syms | set(IDENT.findall(instruction)),
                         budget_tokens - spent, {f.path for f in files} | ({doc_rel} if doc_rel else set()))
    return Context(tuple(files), repo_map, doc_entry)


def _repo_map(all_facts: Mapping[str, Facts], refs: Ranks, doc_rel: str | None, focus: set[str],
              budget: int, sent: set[str]) -> str:
    if budget <= 20:
        return ""
    here = doc_rel.split("/")[:-1] if doc_rel else []
    dir_score: dict[str, float] = {}  # closeness to the document's folder, per folder
    ranked: list[tuple[float, str, tuple[str, ...]]] = []
    for rel, facts in all_facts.items():
        if not facts.symbols:
            continue
        folder = rel[: rel.rfind("/") + 1]
        near = dir_score.get(folder)
        if near is None:
            parts = folder.split("/")[:-1]
            common = 0
            for a, b in zip(here, parts, strict=False):
                if a != b:
                    break
                common += 1
            near = dir_score[folder] = common - 0.1 * len(parts)
        used, symbols = refs.get(rel) or (0.0, facts.symbols)
        score = 3.0 * len(focus & facts.idents) + near + (5.0 if rel in sent else 0.0) + used
        ranked.append((-score, rel, symbols))
    ranked = heapq.nsmallest(max(50, budget // 4), ranked)  # more lines than the budget can hold
    lines: list[str] = []
    used = 0
    for _, rel, syms in ranked:
        line = f"{rel}: {', '.join(syms[:12])}"
        cost = estimate_tokens(line) + 1
        if used + cost > budget:
            if used + 10 > budget:
                break
            continue
        used += cost
        lines.append(line)
    return "\n".join(lines)

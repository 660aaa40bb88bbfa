"""The project as context: which related files a phase sends with its document, within a token budget.

``Workspace`` is the workspace folders plus the editor's open buffers (they win over disk).
``gather`` picks, in this order, until ``phases.<p>.contextTokens`` is spent: files the instruction
names (a path or ``@path``), files the plan names (code phase), files the document imports, files
that use the top-level symbols of the range (or of the whole document), then a compact repository
map (paths with their top-level symbols, ranked by how related they are to the document and the
instruction, how close, and how many files use their symbols; cut to what is left of the budget).

Only files inside the workspace folders are read, each path through the workspace's ``PathGate``
(``phasewise.gate``: links resolved, inside a folder, not in ``.git``); a document outside every
folder is worked on alone. The file list honours ``.gitignore`` (``git ls-files`` in a git work
tree; a walk that skips the usual build folders otherwise). Binary, huge and generated files are
skipped; git-ignored files are sent only when the instruction names them, and credential files
(``gate.credential``: ``.env*``, keys, ``.netrc``, ``.ssh/``…) only when the *user's own*
instruction does (never a ``phasewise:`` comment's, a plan's or a model's). Everything here is
blocking file and process I/O: call ``gather`` off the event loop (``asyncio.to_thread``). Per-file
facts (symbols, identifiers) are cached by path, size and mtime, so a second gathering on an
unchanged tree reads nothing again.

Symbols come from Python's ``ast`` for Python files and a small definition regex for other
languages. tree-sitter would be more exact for other languages, but ``tree-sitter-language-pack``
(1.25 on PyPI, checked) ships no grammars in its wheel: it downloads them at run time
(``DownloadManager``), which a server that must work offline and send nothing unasked cannot do;
the map only needs top-level names, which the regex finds.
May not import: edge, router, providers.
"""

from __future__ import annotations

import ast
import fnmatch
import heapq
import math
import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from phasewise.gate import PathGate, PathRefused, credential
from phasewise.phases.edits import FileText
from phasewise.phases.listing import LISTING_TTL, LISTINGS, cached_listing
from phasewise.serial import Jsonable, json_rule
from phasewise.tokens import estimate_tokens

MAX_FILE_BYTES = 200_000
GENERATED = ("*.min.js", "*.min.css", "*.lock", "package-lock.json", "*.map", "*_pb2.py", "*.pyc")
SOURCE_EXT = frozenset({".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".c", ".h", ".cpp",
                        ".hpp", ".rb", ".lua", ".el", ".sh", ".kt", ".swift", ".cs", ".php", ".scala"})
_PATHISH = re.compile(r"(?<![\w/.])@?([\w./-]*[\w-]\.[A-Za-z0-9]{1,8}|[\w.-]+/[\w./-]+|\.[\w][\w.-]*)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEF = re.compile(
    r"^(?:export\s+)?(?:default\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?"
    r"(?:def|class|function\*?|func|fn|interface|struct|enum|trait|type|const|let)\s+([A-Za-z_$][\w$]*)", re.M)
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


@dataclass(slots=True)
class _Facts:
    symbols: tuple[str, ...]
    idents: frozenset[str]


_FACTS: dict[tuple[str, int, int], _Facts] = {}
_FACTS_LOCK = threading.Lock()


def uri_to_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)


def _one_pattern(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


_GENERATED_RX = _one_pattern(GENERATED)


def sensitive(rel: str) -> bool:
    """Credential files: never sent unless the user's own instruction names them."""
    return credential(rel)


def generated(rel: str, head: str = "") -> bool:
    return _GENERATED_RX.match(rel[rel.rfind("/") + 1 :]) is not None or "@generated" in head or "DO NOT EDIT" in head


def symbols_of(path: str, text: str) -> tuple[str, ...]:
    """Top-level definitions of a file (``ast`` for Python, a definition regex otherwise)."""
    if path.endswith((".py", ".pyi")):
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            pass
        else:
            names: list[str] = []
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.append(node.name)
                elif isinstance(node, ast.Assign):
                    names += [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
            return tuple(names)
    return tuple(dict.fromkeys(m.group(1) for m in _DEF.finditer(text)))


@dataclass(slots=True)
class Workspace:
    """Workspace folders plus open buffers (uri → (text, version)); open buffers win over disk."""

    folders: Sequence[Path]
    open_docs: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)
    _listing: dict[Path, list[str]] = field(default_factory=dict)
    _open_by_path: dict[Path, tuple[str, str, int | None]] = field(default_factory=dict)

    _open_by_rel: dict[str, tuple[str, str, int | None]] = field(default_factory=dict)
    _base: dict[str, _Facts] = field(default_factory=dict)  # the cached facts the last all_facts used
    gate: PathGate = field(init=False)  # what may be read and written: every path goes through it

    def __post_init__(self) -> None:
        self.gate = PathGate.of(self.folders)
        self.folders = list(self.gate.roots)
        self._open_by_path = {uri_to_path(u).resolve(): (u, t, v) for u, (t, v) in self.open_docs.items()}
        for path, opened in self._open_by_path.items():
            found = self.locate(path)
            if found is not None:
                self._open_by_rel.setdefault(found[1], opened)

    # ------------------------------------------------------------------ paths

    def locate(self, path: Path) -> tuple[Path, str] | None:
        """(folder, workspace-relative path) of ``path``, links resolved, or None when outside every folder."""
        return self.gate.locate(path)

    def rel(self, uri: str) -> str | None:
        found = self.locate(uri_to_path(uri))
        return found[1] if found else None

    def absolute(self, name: str) -> Path | None:
        """The file a model or instruction names: workspace-relative (any folder) or absolute inside one."""
        name = name.strip().lstrip("@")
        if not name or "\0" in name or name.startswith("~"):
            return None
        p = Path(name)
        candidates = [p] if p.is_absolute() else [f / p for f in self.folders]
        for c in candidates:
            got = self.gate.inside(c)
            if got is not None and (got.exists() or got in self._open_by_path):
                return got
        if not p.is_absolute() and self.folders:
            return self.gate.inside(self.folders[0] / p)  # a new file, in the first folder
        return None

    # ------------------------------------------------------------------ listing

    def listing(self) -> list[str]:
        """Workspace-relative paths of the files git does not ignore (every folder); a folder's list is
        reused for ``LISTING_TTL`` seconds unless git's index changed."""
        out: list[str] = []
        for folder in self.folders:
            if folder not in self._listing:
                self._listing[folder] = cached_listing(folder)
            out += self._listing[folder]
        if self._open_by_rel:
            out += [r for r in self._open_by_rel if r not in set(out)]
        return out

    def file_path(self, rel: str) -> Path | None:
        for folder in self.folders:
            p = folder / rel
            if p.exists() or p.resolve() in self._open_by_path:
                return p
        return None

    def read(self, rel: str) -> FileText | None:
        """A file's text (the open buffer's when open), or None when missing, binary, huge, or (through a
        symbolic link) outside the workspace folders."""
        p = self.file_path(rel)
        if p is None or (rel not in self._open_by_rel and self.locate(p) is None):
            return None
        return self.read_path(p, rel)

    def read_path(self, p: Path, rel: str) -> FileText | None:
        opened = self._open_by_rel.get(rel) or (self._open_by_path.get(p.resolve()) if self._open_by_path else None)
        if opened is not None:
            uri, text, version = opened
            return FileText(rel, uri, text, version)
        found = self.gate.locate(p)
        if found is None:
            return None
        real = found[0] / found[1]
        raw = self.gate.read_bytes(real, MAX_FILE_BYTES)
        if raw is None or b"\0" in raw[:8192]:
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return FileText(rel, real.as_uri(), text, None)

    def resolve(self, name: str, allowed: frozenset[str] = frozenset()) -> FileText | None:
        """The ``edits.Resolve`` of a change: the named file (``text=None`` when new), None when it
        cannot be read as text. ``PathRefused`` when the gate refuses it (outside the folders, through
        a link, inside ``.git``, starting with ``~``) or it is a credential file not in ``allowed``
        (the ones the user's own instruction named)."""
        name = name.strip().lstrip("@")
        p = self.absolute(name)
        if p is None:
            self.gate.check(name)  # raises, saying why
            raise PathRefused(name, "is not a file in the workspace")
        found = self.locate(p)
        if found is None:
            raise PathRefused(name, "is outside the workspace")
        rel = found[1]
        if sensitive(rel) and rel not in allowed:
            raise PathRefused(name, "is a credential file, which is changed only when your own instruction names it")
        if p.exists() or p in self._open_by_path:
            return self.read_path(p, rel)
        return FileText(rel, p.as_uri(), None, None)

    def facts(self, rel: str) -> _Facts | None:
        """Top-level symbols and identifiers of a file, cached by path, size and mtime."""
        opened = self._open_by_rel.get(rel)
        if opened is not None:
            text = opened[1]
            return _Facts(symbols_of(rel, text), frozenset(_IDENT.findall(text)))
        for folder in self.folders:
            full = f"{folder}/{rel}"
            try:
                st = os.lstat(full)  # a symbolic link is not followed (it may lead out of the workspace)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                return _Facts((), frozenset())
            key = (full, st.st_size, st.st_mtime_ns)
            got = _FACTS.get(key)
            if got is not None:
                return got
            facts = _Facts((), frozenset())
            if st.st_size <= MAX_FILE_BYTES:
                ft = self.read_path(Path(full), rel)
                if ft is not None and ft.text is not None and not generated(rel, ft.text[:400]):
                    facts = _Facts(symbols_of(rel, ft.text), frozenset(_IDENT.findall(ft.text)))
            with _FACTS_LOCK:
                _FACTS[key] = facts
            return facts
        return None


    def all_facts(self, listing: Sequence[str]) -> dict[str, _Facts]:
        """Facts of every listed source file. Files on disk are re-checked (one ``stat`` each) at most
        every ``LISTING_TTL`` seconds, like the file list; open buffers are always current."""
        import time

        key = (tuple(self.folders), len(listing))
        got = _SNAPSHOTS.get(key)
        now = time.monotonic()
        # the lists it was made of (one lookup each: files_changed may clear LISTINGS from the loop meanwhile)
        stamp = tuple(id(listed[2]) if (listed := LISTINGS.get(f)) is not None else 0 for f in self.folders)
        if got is not None and now - got[0] < LISTING_TTL and got[1] == stamp:
            base = got[2]
        else:
            base = {}
            for rel in listing:
                dot = rel.rfind(".")
                if dot > rel.rfind("/") and rel[dot:] in SOURCE_EXT and not sensitive(rel) \
                        and rel not in self._open_by_rel:
                    facts = self.facts(rel)
                    if facts is not None:
                        base[rel] = facts
            _SNAPSHOTS[key] = (now, stamp, base)
        self._base = base
        if not self._open_by_rel:
            return base
        out = dict(base)
        for rel in self._open_by_rel:
            dot = rel.rfind(".")
            if dot > rel.rfind("/") and rel[dot:] in SOURCE_EXT and not sensitive(rel):
                facts = self.facts(rel)
                if facts is not None:
                    out[rel] = facts
        return out


_SNAPSHOTS: dict[tuple[tuple[Path, ...], int], tuple[float, tuple[int, ...], dict[str, _Facts]]] = {}
_REFS: dict[int, tuple[dict[str, _Facts], dict[str, tuple[float, tuple[str, ...]]]]] = {}


def references(all_facts: dict[str, _Facts]) -> dict[str, tuple[float, tuple[str, ...]]]:
    """Per file: log(1 + how many other files mention its top-level symbols), and its symbols most
    referenced first (aider's map ranks by references too); computed once per facts snapshot."""
    got = _REFS.get(id(all_facts))
    if got is not None and got[0] is all_facts:
        return got[1]
    defined = {sym for f in all_facts.values() for sym in f.symbols}
    counts: dict[str, int] = dict.fromkeys(defined, 0)
    for f in all_facts.values():
        for ident in (f.idents & defined) if len(f.idents) < len(defined) else (defined & f.idents):
            counts[ident] += 1
    ranks: dict[str, tuple[float, tuple[str, ...]]] = {}
    for rel, f in all_facts.items():
        if f.symbols:
            used_by = sum(counts[x] for x in f.symbols) - len(f.symbols)  # other files
            ranks[rel] = (math.log1p(max(used_by, 0)), tuple(sorted(f.symbols, key=lambda x: -counts[x])))
    if len(_REFS) > 8:
        _REFS.clear()
    _REFS[id(all_facts)] = (all_facts, ranks)
    return ranks


def files_changed() -> None:
    """Files on disk changed (the editor saved or closed one, a change was applied): the next
    gathering lists the folders and checks each file again instead of reusing the last snapshot
    for ``LISTING_TTL`` seconds. Facts stay cached by path, size and mtime."""
    LISTINGS.clear()
    _SNAPSHOTS.clear()


def clear_caches() -> None:
    """Forget every cached file list and file fact (tests, benchmarks)."""
    with _FACTS_LOCK:
        _FACTS.clear()
    LISTINGS.clear()
    _SNAPSHOTS.clear()
    _REFS.clear()


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
    repo_map = _repo_map(all_facts, references(ws._base), doc_rel, syms | set(_IDENT.findall(instruction)),
                         budget_tokens - spent, {f.path for f in files} | ({doc_rel} if doc_rel else set()))
    return Context(tuple(files), repo_map, doc_entry)


_Ranks = Mapping[str, tuple[float, tuple[str, ...]]]


def _repo_map(all_facts: Mapping[str, _Facts], refs: _Ranks, doc_rel: str | None, focus: set[str],
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

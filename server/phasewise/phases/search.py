"""Finding the lines of a workspace's files that match a regular expression, for the agent's
``search_files`` tool (``phases.tools``).

``git_grep`` asks git (``git grep -P``: Perl-compatible, close to the Python syntax a model writes;
``-I`` skips binary files; ``--untracked`` adds the files not yet added, ``.gitignore`` honoured, as
the workspace's listing). It runs with git's fsmonitor hook off, git's own ``GIT_*`` environment
removed and the repository's grep settings overridden, so a repository cannot make a search run a
hook, search outside the folder or print another format. It answers None where git cannot search
(not a work tree, a git without PCRE, a pattern PCRE refuses): ``scan`` then reads the files in
Python. Both stop at a match limit, ``git_grep`` at a deadline too (the process is killed).
``glob_matcher`` is the ``glob`` argument of ``list_files`` and ``search_files`` (``**`` and
``{a,b}`` understood; a glob without ``/`` matches file names at any depth).
May import: nothing of Phasewise.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_MATCH_CHARS = 250  # a matching line's text is cut here (minified files have lines of megabytes)


@dataclass(frozen=True, slots=True, order=True)
class Hit:
    """One matching line: workspace-relative path, 1-based line number, the line's text (cut)."""

    path: str
    line: int
    text: str


@dataclass(slots=True)
class Found:
    """Matching lines; ``more``: the search stopped at its limit, more lines match; ``timed_out``:
    stopped at its deadline."""

    hits: list[Hit] = field(default_factory=list)
    more: bool = False
    timed_out: bool = False


def _cut(text: str) -> str:
    text = text.rstrip()
    return text if len(text) <= MAX_MATCH_CHARS else text[:MAX_MATCH_CHARS] + "…"


# --------------------------------------------------------------------------- globs


def _glob_regex(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    depth = 0  # inside {…}
    while i < n:
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = glob.find("]", i + 2 if glob.startswith(("[!", "[^"), i) else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + ")" * depth


def glob_matcher(glob: str) -> Callable[[str, str], bool]:
    """Whether a file matches ``glob``, given its workspace-relative path and its path relative to
    the folder searched: a glob without ``/`` matches the file's name (``*.py``: every Python file),
    one with ``/`` either path (``src/**/*.ts``)."""
    rx = re.compile(_glob_regex(glob.strip().removeprefix("./")) + r"\Z", re.DOTALL)
    if "/" not in glob.strip().rstrip("/"):
        return lambda rel, _below: rx.match(rel[rel.rfind("/") + 1 :]) is not None
    return lambda rel, below: rx.match(below) is not None or rx.match(rel) is not None


def pathspecs(base: str, glob: str | None, base_is_file: bool = False) -> list[str]:
    """git pathspecs narrowing a search to ``base`` (a folder or file, workspace-relative) and
    ``glob``; a superset of what ``glob_matcher`` keeps, which has the last word."""
    if base_is_file:
        return [f":(literal){base}"]
    simple = glob is not None and "/" not in glob.strip() and not set(glob) & set("{}\\")
    if glob is not None and simple:
        escaped = re.sub(r"([*?\[\]\\])", r"\\\1", base)
        return [f":(glob){escaped + '/' if base else ''}**/{glob.strip()}"]
    return [f":(literal){base}"] if base else []


# --------------------------------------------------------------------------- git grep


def _git_env() -> dict[str, str]:
    """The environment without git's own variables (``GIT_DIR``, ``GIT_LITERAL_PATHSPECS``…: they
    would search another repository or read the pathspecs otherwise)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # a search takes no lock and writes no index
    return env


# git grep's worker threads: on two cores or fewer one thread, which opens and reads the files (the
# whole cost: four system calls per file) faster there than git's one worker per core beside its main
# thread (bench/RESULTS.md: 20,000 files, 85 against 121 ms); git's own choice on more cores
_THREADS = 1 if (os.cpu_count() or 1) <= 2 else 0
_GIT_CONFIG = (
    "core.fsmonitor=false",  # a repository's config must not make a search run a hook
    "grep.fallbackToNoIndex=false",  # outside a work tree: no search that ignores .gitignore
    "grep.fullName=false", "grep.column=false", "grep.lineNumber=false", f"grep.threads={_THREADS}",
    "submodule.recurse=false", "color.grep=never",
)


def git_grep(folder: Path, pattern: str, *, specs: list[str], keep: Callable[[str], bool], limit: int,
             timeout: float) -> Found | None:
    """The lines of ``folder``'s files (tracked and untracked, not ignored, not binary) matching the
    Perl-compatible ``pattern``, those whose path ``keep`` keeps, at most ``limit`` (``more`` when
    there are others), within ``timeout`` seconds. None when git cannot search this folder."""
    cmd = ["git"]
    for setting in _GIT_CONFIG:
        cmd += ["-c", setting]
    cmd += ["-C", str(folder), "grep", "--untracked", "-I", "-n", "-z", "--no-color", "-P", "-e", pattern, "--",
            *specs]
    found = Found()
    if timeout <= 0:
        found.timed_out = True
        return found
    killed = threading.Event()
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                    env=_git_env())
        except OSError:
            return None

        def stop() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, stop)
        timer.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                parts = raw.rstrip(b"\n").split(b"\0", 2)
                if len(parts) != 3 or not parts[1].isdigit():
                    continue
                rel = parts[0].decode("utf-8", "replace")
                if not keep(rel):
                    continue
                if len(found.hits) >= limit:
                    found.more = True
                    proc.kill()
                    break
                found.hits.append(Hit(rel, int(parts[1]), _cut(parts[2].decode("utf-8", "replace"))))
        finally:
            timer.cancel()
            if proc.stdout is not None:
                proc.stdout.close()
            code = proc.wait()
    if killed.is_set() and not found.more:
        found.timed_out = True
        return found
    if found.more or code in (0, 1):  # 1: nothing matched
        return found
    return None  # not a work tree, no PCRE in this git, a pattern PCRE refuses: the caller scans


# --------------------------------------------------------------------------- Python scan


def _whole_text(pattern: str) -> re.Pattern[str] | None:
    """A pattern that finds, in a whole text, every file where some line matches (None when the
    pattern anchors to a text's ends, which a line's and a file's differ on)."""
    if "\\A" in pattern or "\\Z" in pattern or "\\z" in pattern:
        return None
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error:
        return None


def scan(texts: Iterable[tuple[str, str | None]], pattern: str, *, limit: int, deadline: float) -> Found:
    """The lines of ``(path, text)`` pairs (None: skipped) matching the Python ``pattern``, line by
    line, at most ``limit`` (``more`` when there are others), until ``deadline`` (``time.monotonic``)."""
    rx = re.compile(pattern)
    whole = _whole_text(pattern)
    found = Found()
    for rel, text in texts:
        if time.monotonic() > deadline:
            found.timed_out = True
            return found
        if text is None or (whole is not None and whole.search(text) is None):
            continue
        for number, line in enumerate(text.split("\n"), 1):
            if rx.search(line) is None:
                continue
            if len(found.hits) >= limit:
                found.more = True
                return found
            found.hits.append(Hit(rel, number, _cut(line)))
    return found


__all__ = ["MAX_MATCH_CHARS", "Found", "Hit", "git_grep", "glob_matcher", "pathspecs", "scan"]

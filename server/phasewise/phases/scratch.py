"""A scratch copy of a workspace folder: where a code phase's commands run on the change staged so
far while the user's files do not change (issue 22, *Where it runs*).

``ScratchCopy.create(folder)`` copies the folder as the user has it, outside it, under the user's
cache directory (``$XDG_CACHE_HOME/phasewise/scratch/<name>-<random>``; ``PHASEWISE_CACHE_DIR``
moves it, never into the folder):

- **in a git work tree**: the files git lists (``git ls-files``: HEAD's tracked files as the
  working tree has them, modified or added, and untracked files that are not ignored), copied from
  the working tree; files deleted there are absent. Git is only read (``GIT_OPTIONAL_LOCKS=0``: not
  even the index's opportunistic refresh is written), nothing is registered in the repository.
  Copying from the working tree takes about what ``checkout-index`` of HEAD alone does, without
  the working tree's diff still to lay over it (``bench/scratch_copy.py``). No ``.git`` is
  copied, and commands are kept from finding one above the copy (``GIT_CEILING_DIRECTORIES``);
- **outside git** (or in a folder git ignores whole): every file (``.git`` folders skipped);
- **environment folders are linked**, not copied: a git-ignored (or untracked) folder named as in
  ``ENV_FOLDERS`` at any depth, or a top-level one holding a ``pyvenv.cfg``. A command that installs
  into one changes the user's environment, as it would in the workspace; build outputs (``target``,
  ``build``, ``dist``) are neither copied nor linked: a build in the copy starts afresh and writes
  nothing of the user's;
- **bounded**: more than ``max_files`` files or ``max_bytes`` bytes (50,000 and 1 GB) to copy is
  refused (``ScratchRefused``) before the copy is finished, and what was copied is removed.

Then ``overlays`` (the editor's unsaved buffers: ``{absolute path in the folder: text}``) are written
over the copy, and ``write(files)`` writes the staged change (``{folder-relative path: text, or None
to delete}``), as often as it grows: only what changed since the last ``write`` is rewritten, and a
file an earlier ``write`` changed that the change no longer holds is put back as it was. Every write
goes through the copy's own ``PathGate`` (``gate``): it never follows a link out of the copy, so a
linked environment folder is never written through. ``path_of`` maps a workspace path to its place
in the copy; ``environment`` gives a command's variables there (an editable install in a linked
environment points at the user's folder: ``PYTHONPATH`` puts the copy's sources first).

``close()`` removes the copy (links are removed, never followed); a copy a crashed server left
behind is removed by the next ``create`` once older than a day. The work is blocking: the async
door (``open``, ``sync``, ``aclose``, ``async with``) runs it in a thread. ``ScratchPlace`` makes
one lazily for ``PhaseCommands`` and syncs the staged change before each command.
May not import: edge, workflows, router, providers, sim.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import errno
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from phasewise.gate import PathGate, PathRefused
from phasewise.phases.response_cache import cache_dir
from phasewise.problems import PhasewiseError

# Environment folders, linked rather than copied where git ignores them (or does not track them).
ENV_FOLDERS: Final = (".venv", "venv", ".tox", ".nox", "node_modules")
MAX_FILES: Final = 50_000
MAX_BYTES: Final = 1 << 30
LEFTOVER_SECONDS: Final = 24 * 3600  # a copy this old is a crashed server's leftover
_GIT_TIMEOUT = 60.0
_GIT_PLACE = {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR"}
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class ScratchRefused(PhasewiseError):
    """A scratch copy that cannot be made (too many files, too large, no place for it); nothing is
    left of it. ``.folder`` is the workspace folder."""

    def __init__(self, folder: Path, reason: str) -> None:
        self.folder, self.reason = folder, reason
        super().__init__(f"no scratch copy of {folder}: {reason}")


def scratch_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where scratch copies are made: the user's Phasewise cache directory's ``scratch``."""
    return cache_dir(environ) / "scratch"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a command runs: ``folder`` (its ``cwd`` is taken relative to it), the variables set for
    it there (``env``) and what the model is told of it (``note``)."""

    folder: Path
    env: Mapping[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass(slots=True)
class _Plan:
    """What a copy is made of: files to copy, folders to link (folder-relative), whether git listed them."""

    files: list[str]
    links: list[str]
    git: bool


class ScratchCopy:
    """A copy of ``folder`` at ``root``; see the module docstring. Make one with ``create`` (or
    ``await ScratchCopy.open``)."""

    def __init__(self, folder: Path, root: Path, plan: _Plan) -> None:
        self.folder = folder  # the user's workspace folder (resolved)
        self.root = root  # the copy
        self.gate = PathGate.of([root])  # what may be written in the copy: never through a link out of it
        self._source = PathGate.of([folder])
        self.linked = tuple(plan.links)  # folder-relative environment folders linked, not copied
        self.copied = len(plan.files)  # files copied from the folder
        self.git = plan.git  # listed by git (else a plain copy)
        self.skipped: list[str] = []  # overlays not written (outside the folder, or through a link)
        self._base: dict[str, bytes | None] = {}  # a staged file as it was before the first write
        self._written: dict[str, str | None] = {}  # what the last write wrote
        self._python_path = _editable_paths(folder, root, self.linked)
        self.closed = False

    # ------------------------------------------------------------------ making

    @classmethod
    def create(cls, folder: str | os.PathLike[str], *, overlays: Mapping[str | os.PathLike[str], str] | None = None,
               base: Path | None = None, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES,
               clock: Callable[[], float] = time.time) -> ScratchCopy:
        """The copy of ``folder`` with ``overlays`` written over it, under ``base`` (default:
        ``scratch_dir()``). Blocking; ``ScratchRefused`` when it cannot be made."""
        source = Path(os.path.realpath(folder))
        if not source.is_dir():
            raise ScratchRefused(source, "it is not a folder")
        parent = Path(os.path.realpath(base or scratch_dir()))
        if parent == source or source in parent.parents:
            raise ScratchRefused(source, f"the scratch folder {parent} lies inside it (set XDG_CACHE_HOME or "
                                         "PHASEWISE_CACHE_DIR to a folder outside the workspace)")
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        clean_leftovers(parent, clock)
        plan = _git_plan(source) or _walk_plan(source, max_files)
        if len(plan.files) > max_files:
            raise ScratchRefused(source, f"it holds more than the {max_files:,} files a scratch copy is made of; "
                                         "commands run only in a smaller workspace folder")
        name = re.sub(r"[^\w.-]", "_", source.name)[:40] or "workspace"
        root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
        try:
            _copy(source, root, plan, max_bytes)
            copy = cls(source, root, plan)
            copy._overlay(overlays or {})
        except BaseException:
            _remove(root)
            raise
        return copy

    @classmethod
    async def open(cls, folder: str | os.PathLike[str], *,
                   overlays: Mapping[str | os.PathLike[str], str] | None = None, base: Path | None = None,
                   max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> ScratchCopy:
        """``create``, off the event loop."""
        return await asyncio.to_thread(cls.create, folder, overlays=overlays, base=base, max_files=max_files,
                                       max_bytes=max_bytes)

    def _overlay(self, overlays: Mapping[str | os.PathLike[str], str]) -> None:
        for path, text in overlays.items():
            found = self._source.locate(path)
            try:
                if found is None:
                    raise PathRefused(os.fspath(path), "is outside the folder")
                target = self.gate.check(self.root / found[1])
                self.gate.write_files([(target, text)], durable=False)
            except (PathRefused, OSError):
                self.skipped.append(os.fspath(path))

    # ------------------------------------------------------------------ paths

    def path_of(self, path: str | os.PathLike[str]) -> Path:
        """The copy's path for a workspace path (absolute, or relative to the folder); ``PathRefused``
        when it lies outside the folder, in ``.git``, or leads out of the copy through a link."""
        p = Path(path)
        found = self._source.locate(p if p.is_absolute() else self.folder / p)
        if found is None:
            raise PathRefused(os.fspath(path), f"is outside {self.folder}")
        return self.gate.check(self.root / found[1])

    def environment(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Variables a command in the copy needs: git stops looking for a repository at the copy, and
        Python finds the copy's sources before an editable install's in a linked environment (which
        points at the user's folder): ``PYTHONPATH`` gets their places in the copy first."""
        env = {"GIT_CEILING_DIRECTORIES": str(self.root.parent)}
        if self._python_path:
            had = (os.environ if environ is None else environ).get("PYTHONPATH")
            env["PYTHONPATH"] = os.pathsep.join([*map(str, self._python_path), *([had] if had else [])])
        return env

    # ------------------------------------------------------------------ the staged change

    def write(self, files: Mapping[str, str | None]) -> list[str]:
        """Bring the copy to the change ``files`` (folder-relative path → text, None: deleted): what
        differs from the last ``write`` is rewritten, what it held and ``files`` no longer does is
        put back. The paths rewritten; ``PathRefused`` (nothing more written) for a path outside the
        copy or through a link."""
        if self.closed:
            raise ScratchRefused(self.folder, "it was closed")
        wanted: dict[str, bytes | None] = {}
        for rel in files.keys() | self._written.keys():
            if rel in files:
                text = files[rel]
                if rel in self._written and self._written[rel] == text:
                    continue
                wanted[rel] = None if text is None else text.encode("utf-8")
            else:
                wanted[rel] = self._base.get(rel)  # no longer in the change: as it was
        done: list[str] = []
        for rel in sorted(wanted):
            target = self.gate.check(self.root / rel)
            if rel not in self._base:
                self._base[rel] = self.gate.read_bytes(target)
            data = wanted[rel]
            if data is None:
                self.gate.remove_file(target)
            else:
                self.gate.write_files([(target, data)], durable=False)
            if rel in files:
                self._written[rel] = files[rel]
            else:
                self._written.pop(rel, None)
            done.append(rel)
        return done

    async def sync(self, files: Mapping[str, str | None]) -> list[str]:
        """``write``, off the event loop."""
        return await asyncio.to_thread(self.write, files)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Remove the copy (links removed, never followed); again is harmless."""
        if not self.closed:
            self.closed = True
            _remove(self.root)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, err: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class ScratchPlace:
    """A ``PhaseCommands.place`` for a code phase: its scratch copy, made on the first command (with
    the editor's unsaved buffers, ``overlays``), then brought to the staged change (``staged()``)
    before every command. ``close`` removes it (waiting for one still being made)."""

    def __init__(self, folder: Path, *, overlays: Mapping[str | os.PathLike[str], str] | None = None,
                 staged: Callable[[], Mapping[str, str | None]], base: Path | None = None) -> None:
        self.folder = folder
        self.overlays = dict(overlays or {})
        self.staged = staged
        self.base = base
        self.copy: ScratchCopy | None = None
        self._making: asyncio.Task[ScratchCopy] | None = None

    async def __call__(self) -> Place:
        if self.copy is None:
            if self._making is None:
                self._making = asyncio.ensure_future(ScratchCopy.open(self.folder, overlays=self.overlays,
                                                                      base=self.base))
            self.copy = await asyncio.shield(self._making)  # a cancel leaves it to ``close``
        changed = self.staged()
        await self.copy.sync(changed)
        count = len(changed)
        staged = f"the {count} file{'s' if count != 1 else ''} changed so far" if count else "no change staged yet"
        return Place(self.copy.root, self.copy.environment(),
                     f"a scratch copy of the workspace with {staged}; the user's files are unchanged")

    async def close(self) -> None:
        making, self._making = self._making, None
        copy = self.copy
        if copy is None and making is not None:
            with contextlib.suppress(Exception):
                copy = await making
        self.copy = None
        if copy is not None:
            await copy.aclose()


# ---------------------------------------------------------------------- listing


def _git(folder: Path, *args: str) -> subprocess.Popen[bytes]:
    # read only (no opportunistic index refresh written), on the folder's own repository
    env = {k: v for k, v in os.environ.items() if k not in _GIT_PLACE} | {"GIT_OPTIONAL_LOCKS": "0"}
    return subprocess.Popen(["git", "-c", "core.quotepath=off", *args], cwd=folder, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _git_plan(folder: Path) -> _Plan | None:
    """The files git lists under ``folder`` and the environment folders to link; None outside a git
    work tree (or without git)."""
    try:
        procs = [_git(folder, "ls-files", "-z", "--cached"),
                 _git(folder, "ls-files", "-z", "--others", "--exclude-standard"),
                 _git(folder, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")]
    except OSError:
        return None
    outs: list[list[str]] = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=_GIT_TIMEOUT)
            if proc.returncode != 0:
                return None
            outs.append([p for p in os.fsdecode(out).split("\0") if p])
    except subprocess.TimeoutExpired:
        return None
    finally:
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
    tracked, untracked, ignored = outs
    if not tracked and not untracked:  # a folder git ignores whole (or an empty one): copied plainly
        return None
    # an environment folder git does not track: an ignored one, or one the untracked files lie in
    candidates = {p.rstrip("/") for p in ignored if p.endswith("/")}
    candidates |= {"/".join(parts[: i + 1]) for p in untracked if len(parts := p.split("/")) > 1
                   for i in range(len(parts) - 1) if parts[i] in ENV_FOLDERS}
    candidates |= {p.split("/", 1)[0] for p in untracked if "/" in p}
    held = {"/".join(parts[: i + 1]) for p in tracked if len(parts := p.split("/")) > 1 for i in range(len(parts) - 1)}
    links = sorted(c for c in candidates if c not in held and _environment(folder, c))
    links = [c for c in links if not any(c.startswith(o + "/") for o in links)]
    if links:
        inside = tuple(f"{c}/" for c in links)
        untracked = [p for p in untracked if not p.startswith(inside)]
    return _Plan(list(dict.fromkeys([*tracked, *untracked])), links, True)


def _environment(folder: Path, rel: str) -> bool:
    """Whether the folder ``rel`` is an environment folder (see ``ENV_FOLDERS``): named so, or
    top-level with a ``pyvenv.cfg``; never a link."""
    named = rel.rsplit("/", 1)[-1] in ENV_FOLDERS
    if not named and "/" in rel:
        return False
    path = folder / rel
    if path.is_symlink() or not path.is_dir():
        return False
    return named or (path / "pyvenv.cfg").is_file()


def _walk_plan(folder: Path, max_files: int) -> _Plan:
    """Every file under ``folder`` (``.git`` skipped, links kept as links, environment folders to
    link), stopping once past ``max_files``."""
    files: list[str] = []
    links: list[str] = []

    def walk(rel: str) -> Iterator[str]:
        with os.scandir(folder / rel if rel else folder) as entries:
            for entry in entries:
                sub = f"{rel}/{entry.name}" if rel else entry.name
                if entry.name == ".git":
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if _environment(folder, sub):
                        links.append(sub)
                    else:
                        yield from walk(sub)
                else:
                    yield sub

    for rel in walk(""):
        files.append(rel)
        if len(files) > max_files:
            break
    return _Plan(files, sorted(links), False)


_EDITABLE_MAPPING = re.compile(r"^MAPPING\s*(?::[^=]*)?=\s*(\{.*?\})\s*$", re.M | re.S)


def _editable_paths(folder: Path, root: Path, linked: tuple[str, ...]) -> list[Path]:
    """Where a linked Python environment's editable installs of ``folder``'s code lie in the copy:
    a ``.pth`` file's lines (folders) and a setuptools finder's ``MAPPING`` (packages: their parent
    folder), when inside ``folder``."""
    found: list[Path] = []

    def add(raw: str) -> None:
        path = Path(raw.strip())
        if path.is_absolute() and (path == folder or folder in path.parents):
            mapped = root / path.relative_to(folder)
            if mapped not in found:
                found.append(mapped)

    for rel in linked:
        env = folder / rel
        if not (env / "pyvenv.cfg").is_file():
            continue
        for site in [*env.glob("lib/python*/site-packages"), *env.glob("Lib/site-packages")]:
            for pth in sorted(site.glob("*.pth")):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    for line in pth.read_text(encoding="utf-8").splitlines():
                        if line.strip() and not line.startswith(("#", "import ", "import\t")):
                            add(line)
            for finder in sorted(site.glob("__editable___*_finder.py")):
                with contextlib.suppress(OSError, UnicodeDecodeError, ValueError, SyntaxError):
                    m = _EDITABLE_MAPPING.search(finder.read_text(encoding="utf-8"))
                    mapping = ast.literal_eval(m.group(1)) if m else {}
                    for where in mapping.values() if isinstance(mapping, dict) else ():
                        add(str(Path(str(where)).parent))
    return found


# ---------------------------------------------------------------------- copying


def _copy(source: Path, root: Path, plan: _Plan, max_bytes: int) -> int:
    """Copy ``plan``'s files from ``source`` to ``root`` (modes kept, links as links, files gone
    since the listing skipped, a submodule's files copied plainly) and link its environment
    folders; the bytes copied. ``ScratchRefused`` past ``max_bytes``. Paths are plain strings
    opened from the two folders' descriptors: per file, this loop is most of a copy's time."""
    made = {""}
    total = 0
    src = os.open(source, _DIR_FLAGS)
    dst = os.open(root, _DIR_FLAGS)
    top = os.fspath(root)
    try:
        for rel in plan.files:
            parent = rel.rpartition("/")[0]
            if parent not in made:
                os.makedirs(f"{top}/{parent}", exist_ok=True)
                made.add(parent)
            try:  # no stat first: opened without following a link, nor waiting on a FIFO
                fd = os.open(rel, _READ_FLAGS, dir_fd=src)
            except (FileNotFoundError, NotADirectoryError):
                continue  # deleted in the working tree
            except OSError as err:
                if err.errno != errno.ELOOP:
                    raise
                os.symlink(os.readlink(rel, dir_fd=src), rel, dir_fd=dst)
                continue
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
                    if total > max_bytes:
                        raise ScratchRefused(source, f"its files add up to more than the {_size(max_bytes)} a "
                                                     "scratch copy is made of; commands run only in a smaller "
                                                     "workspace folder")
                    _copy_file(fd, st, rel, dst)
                elif stat.S_ISDIR(st.st_mode):  # a submodule (git lists its folder): its files, plainly
                    os.mkdir(rel, dir_fd=dst)
                    total += _copy(source / rel, root / rel, _walk_plan(source / rel, MAX_FILES), max_bytes - total)
            finally:
                os.close(fd)
    finally:
        os.close(src)
        os.close(dst)
    for rel in plan.links:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(source / rel, root / rel, target_is_directory=True)
    return total


def _copy_file(fd_in: int, st: os.stat_result, rel: str, dst_dir: int) -> None:
    fd_out = os.open(rel, _NEW_FLAGS, stat.S_IMODE(st.st_mode), dir_fd=dst_dir)
    try:
        left, offset = st.st_size, 0
        while left > 0:
            sent = os.sendfile(fd_out, fd_in, offset, left) if hasattr(os, "sendfile") else 0
            if sent <= 0:  # no sendfile here, or the file shrank: the rest by reading
                os.lseek(fd_in, offset, os.SEEK_SET)
                while chunk := os.read(fd_in, 1 << 20):
                    os.write(fd_out, chunk)
                break
            offset += sent
            left -= sent
    finally:
        os.close(fd_out)


def _size(n: int) -> str:
    return f"{n / (1 << 30):g} GB" if n >= 1 << 30 else f"{n / (1 << 20):g} MB"


# ---------------------------------------------------------------------- removing


def _remove(root: Path) -> None:
    """Remove a copy: its links are unlinked, never followed (``shutil.rmtree``'s descriptor walk)."""
    if root.is_symlink():
        root.unlink()
        return
    shutil.rmtree(root, ignore_errors=True)


def clean_leftovers(parent: Path, clock: Callable[[], float] = time.time) -> list[Path]:
    """Remove the copies under ``parent`` older than ``LEFTOVER_SECONDS`` (a crashed server's); the
    ones removed."""
    gone: list[Path] = []
    now = clock()
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime \
                        > LEFTOVER_SECONDS:
                    _remove(Path(entry.path))
                    gone.append(Path(entry.path))
    return gone


__all__ = ["ENV_FOLDERS", "LEFTOVER_SECONDS", "MAX_BYTES", "MAX_FILES", "Place", "ScratchCopy", "ScratchPlace",
           "ScratchRefused", "clean_leftovers", "scratch_dir"]

"""The one gate for paths: what the workspace may read and write, and writes that never follow a
link out of it.

A repository is not trusted (README, *Keys and trust*): its settings, its files, its ``phasewise:``
comments and the models' answers about it may name any path. Every read and write made on the
workspace's behalf (a change's files, plan files, ``@path`` instructions, context, the command
line's writes) goes through ``PathGate``:

- ``check`` decides: a path starting with ``~`` is refused (it names a home folder), symbolic links
  are resolved and ``..`` collapsed, and the result must lie inside one of the workspace folders,
  outside ``.git``; ``PathRefused`` says which path and why.
- ``read_bytes`` opens what ``check`` allowed without following a link at the last step.
- ``write_files`` writes every file or none, walking down from the workspace folder one directory
  at a time with ``O_NOFOLLOW``: a link that appears after the check, or a folder swapped for one,
  is refused at the moment of writing instead of followed. New files get the user's usual mode
  (``0o666`` less the umask), changed files keep theirs.

Credential files are a separate question (``credential``): the gate says what they are; callers
send or change one only when the user's own instruction names it. Phasewise's own files (the run
record, reports, caches) live where the *user* chose, in the environment or user-level settings:
``user_path`` expands such a value and refuses what cannot be expanded.
May import: problems only.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from phasewise.problems import InputError

# Credential files: never sent or changed unless the user's own instruction names them.
CREDENTIAL_NAMES = (
    ".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "id_xmss*",
    ".netrc", "_netrc", ".npmrc", ".pypirc", ".git-credentials", ".pgpass", ".htpasswd",
)
CREDENTIAL_FOLDERS = (".ssh", ".gnupg")  # anything under these
CREDENTIAL_PATHS = (".aws/credentials", ".docker/config.json", ".kube/config")  # the last two parts
_CREDENTIAL_RX = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in CREDENTIAL_NAMES))

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Folders held open while writing (POSIX); elsewhere (Windows) paths, checked again just before.
_AT_FD = {os.open, os.mkdir, os.rename, os.unlink} <= os.supports_dir_fd and bool(_NOFOLLOW)
Folder = int | Path  # an open folder descriptor, or the folder's path where descriptors cannot be used


class PathRefused(InputError):
    """A path the workspace may not read or write: ``.path`` as it was given, ``.reason`` why, and
    ``.setting`` when a setting named it."""

    def __init__(self, path: str, reason: str, setting: str | None = None) -> None:
        self.path, self.reason, self.setting = path, reason, setting
        where = f"`{setting}`: " if setting else ""
        super().__init__(f"{where}{path} {reason}")


def credential(rel: str) -> bool:
    """Whether a workspace-relative path is a credential file (keys, tokens, ``.env*``)."""
    parts = rel.replace("\\", "/").lower().split("/")
    if any(p in CREDENTIAL_FOLDERS for p in parts[:-1]):
        return True
    return _CREDENTIAL_RX.match(parts[-1]) is not None or "/".join(parts[-2:]) in CREDENTIAL_PATHS


def user_path(raw: str, *, setting: str) -> Path:
    """A path Phasewise keeps its own files at, as the user wrote it (setting or environment):
    ``~`` and ``$VARIABLES`` expanded. Refused (``PathRefused``) when it cannot be expanded or is
    not absolute once expanded: the server's current folder is no place the user chose."""
    text = raw.strip()
    if not text or "\0" in text:
        raise PathRefused(repr(raw), "is not a path", setting)
    expanded = os.path.expandvars(text)
    if unset := re.search(r"\$(\w+|\{[^}]*\})", expanded):
        raise PathRefused(text, f"names {unset.group(0)}, which is not set in the environment", setting)
    if expanded.startswith("~"):
        home = os.path.expanduser(expanded)
        if home.startswith("~"):
            user = expanded.split("/", 1)[0]
            raise PathRefused(text, f"cannot be expanded: no home folder is known for {user}", setting)
        expanded = home
    if not os.path.isabs(expanded):
        raise PathRefused(text, "is not an absolute path (start it with / or ~/)", setting)
    return Path(expanded)


@dataclass(frozen=True, slots=True)
class PathGate:
    """The workspace folders (resolved) and what may be read and written inside them."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, folders: Iterable[str | os.PathLike[str]]) -> PathGate:
        roots: list[Path] = []
        for f in folders:
            root = Path(os.path.realpath(f))
            if root not in roots:
                roots.append(root)
        return cls(tuple(roots))

    def locate(self, path: str | os.PathLike[str]) -> tuple[Path, str] | None:
        """(folder, workspace-relative path) of ``path`` with its links resolved, or None outside
        every folder (the deepest folder wins)."""
        try:
            resolved = os.path.realpath(path)
        except (OSError, ValueError):
            return None
        best: Path | None = None
        for root in self.roots:
            base = str(root)
            if (resolved == base or resolved.startswith(base.rstrip("/") + "/")) and (
                    best is None or len(base) > len(str(best))):
                best = root
        if best is None:
            return None
        return best, Path(resolved).relative_to(best).as_posix()

    def check(self, name: str | os.PathLike[str], *, base: Path | None = None,
              setting: str | None = None) -> Path:
        """The resolved path the workspace may read or write for ``name`` (relative names are taken
        from ``base``, else the first folder); ``PathRefused`` says why not."""
        text = os.fspath(name)
        if not text.strip() or "\0" in text:
            raise PathRefused(repr(text), "is not a path", setting)
        if text.startswith("~"):
            raise PathRefused(text, "names a home folder (a path starting with ~), outside the workspace", setting)
        p = Path(text)
        if not p.is_absolute():
            if base is None and not self.roots:
                raise PathRefused(text, "has no workspace folder to be read in", setting)
            p = (base or self.roots[0]) / p
        found = self.locate(p)
        if found is None:
            plain = os.path.normpath(p)
            linked = any(plain == str(r) or plain.startswith(str(r).rstrip("/") + "/") for r in self.roots)
            why = "leads out of the workspace through a symbolic link" if linked else "is outside the workspace"
            folders = ", ".join(str(r) for r in self.roots) or "none"
            raise PathRefused(text, f"{why} (folders: {folders})", setting)
        root, rel = found
        if ".git" in rel.split("/"):
            raise PathRefused(text, "is inside .git", setting)
        return root / rel if rel != "." else root

    def inside(self, name: str | os.PathLike[str], *, base: Path | None = None) -> Path | None:
        """``check``'s path, or None where it refuses."""
        try:
            return self.check(name, base=base)
        except PathRefused:
            return None

    # ------------------------------------------------------------------ reading

    def read_bytes(self, path: Path, limit: int | None = None) -> bytes | None:
        """The bytes of a file ``check`` allowed (None when missing, larger than ``limit``, or a
        link at the last step); its last step is opened without following a link."""
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            if limit is not None and os.fstat(fd).st_size > limit:
                return None
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError:
            return None
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ writing

    def _folder(self, folder: Path) -> Folder:
        """``folder`` (a checked, resolved path) opened for writing: reached from its workspace folder
        one step at a time without following links, missing folders made on the way. Where folder
        descriptors cannot be used, its path, checked again and made."""
        root = next((r for r in sorted(self.roots, key=lambda r: -len(r.parts))
                     if folder == r or r in folder.parents), None)
        if root is None:
            raise PathRefused(str(folder), "is outside the workspace")
        if not _AT_FD:
            folder.mkdir(parents=True, exist_ok=True)
            if self.locate(folder) is None:
                raise PathRefused(str(folder), "leads out of the workspace through a symbolic link")
            return folder
        fd = os.open(root, _DIR_FLAGS)
        try:
            for part in folder.relative_to(root).parts:
                try:
                    nfd = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    os.mkdir(part, 0o777, dir_fd=fd)
                    nfd = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise PathRefused(str(folder), f"is no longer a folder inside the workspace ({part} "
                                                       "became a symbolic link or a file)") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def write_files(self, files: Sequence[tuple[Path, str | bytes]], *, durable: bool = True) -> None:
        """Write every file or none. Each path must be one ``check`` returned; text is written as
        UTF-8. Temporary files are written first beside their targets (flushed to disk unless not
        ``durable``: a scratch copy's), then renamed into place; a failure part way puts back the
        files already replaced and removes the ones created. Raises ``PathRefused`` (a link
        appeared) or ``OSError``."""
        staged: list[tuple[Folder, str, str, bytes | None]] = []  # (folder, name, temporary, old bytes)
        try:
            for target, text in files:
                folder = self._folder(target.parent)
                try:
                    old, mode = _read_at(folder, target.name)
                    data = text.encode("utf-8") if isinstance(text, str) else text
                    tmp = _stage_at(folder, target.name, data, mode, durable)
                except BaseException:
                    _close(folder)
                    raise
                staged.append((folder, target.name, tmp, old))
        except BaseException:
            _discard(staged)
            raise
        done: list[tuple[Folder, str, bytes | None]] = []
        try:
            for folder, name, tmp, old in staged:
                _replace_at(folder, tmp, name)
                done.append((folder, name, old))
        except BaseException:
            for folder, name, old in reversed(done):
                with contextlib.suppress(OSError):
                    if old is None:
                        _unlink_at(folder, name)
                    else:
                        _replace_at(folder, _stage_at(folder, name, old, None), name)
            _discard(staged)
            raise
        _discard(staged)

    def write_text(self, target: Path, text: str) -> None:
        self.write_files([(target, text)])

    def remove_file(self, target: Path) -> bool:
        """Remove the file (or link) ``target`` (a path ``check`` returned), reached as ``write_files``
        reaches its folder; False when there was none. Raises ``PathRefused`` or ``OSError``."""
        if not os.path.lexists(target):
            return False
        folder = self._folder(target.parent)
        try:
            _unlink_at(folder, target.name)
        except FileNotFoundError:
            return False
        finally:
            _close(folder)
        return True


def _open_at(folder: Folder, name: str, flags: int, mode: int = 0o777) -> int:
    if isinstance(folder, int):
        return os.open(name, flags, mode, dir_fd=folder)
    return os.open(folder / name, flags, mode)


def _replace_at(folder: Folder, src: str, dst: str) -> None:
    if isinstance(folder, int):
        os.replace(src, dst, src_dir_fd=folder, dst_dir_fd=folder)
    else:
        os.replace(folder / src, folder / dst)


def _unlink_at(folder: Folder, name: str) -> None:
    if isinstance(folder, int):
        os.unlink(name, dir_fd=folder)
    else:
        os.unlink(folder / name)


def _close(folder: Folder) -> None:
    if isinstance(folder, int):
        with contextlib.suppress(OSError):
            os.close(folder)


def _read_at(folder: Folder, name: str) -> tuple[bytes | None, int | None]:
    """The bytes and mode of ``name`` in ``folder`` (None, None: no such file); a link there is
    refused, not followed."""
    try:
        fd = _open_at(folder, name, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PathRefused(name, "became a symbolic link: not written through it") from None
        raise
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), os.fstat(fd).st_mode & 0o7777
    finally:
        os.close(fd)


def _stage_at(folder: Folder, name: str, data: bytes, mode: int | None, durable: bool = True) -> str:
    """A temporary file beside ``name`` holding ``data``, flushed to disk when ``durable``: ``mode``
    when the file existed, else the user's usual mode (the umask applies to 0o666)."""
    tmp = f".{name[:80]}.{secrets.token_hex(4)}.phasewise"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = _open_at(folder, tmp, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if mode is not None and os.chmod in os.supports_fd:
            os.chmod(fd, mode)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            _unlink_at(folder, tmp)
        raise
    os.close(fd)
    return tmp


def _discard(staged: list[tuple[Folder, str, str, bytes | None]]) -> None:
    """Remove temporary files still there and close the folders' descriptors."""
    for folder, _, tmp, _ in staged:
        with contextlib.suppress(OSError):
            _unlink_at(folder, tmp)
        _close(folder)


__all__ = ["CREDENTIAL_FOLDERS", "CREDENTIAL_NAMES", "CREDENTIAL_PATHS", "PathGate", "PathRefused", "credential",
           "user_path"]

"""The OS keyring (the ``keyring`` library) as a source of keys, by environment variable name.

``phasewise auth set PROVIDER`` stores a key under service ``phasewise`` and the key's variable
name (``OPENAI_API_KEY``); the server reads it when that variable is not set. Everything here
is lazy (``keyring`` is imported on first use), bounded (a lookup that does not answer within
``LOOKUP_TIMEOUT`` seconds, e.g. a locked keyring waiting for a prompt, counts as "not
available") and never raises on lookups: any exception from a backend means "not available".
Where no backend exists (headless Linux without a Secret Service: ``keyring``'s
``fail.Keyring``), ``info()`` says so plainly and keys come from environment variables only.
``PHASEWISE_KEYRING=0`` turns the OS keyring off; ``PHASEWISE_KEYRING_TIMEOUT`` (seconds) sets
the deadline, for a keyring slow to start (the first call loads its backend).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from phasewise.problems import PhasewiseError
from phasewise.serial import Jsonable

SERVICE = "phasewise"
NAMES_ENTRY = "phasewise-key-names"  # the (non-secret) list of variable names stored, for list/clear
LOOKUP_TIMEOUT = 2.0


def lookup_timeout() -> float:
    """``PHASEWISE_KEYRING_TIMEOUT`` when it is a positive number of seconds, else ``LOOKUP_TIMEOUT``."""
    try:
        seconds = float(os.environ.get("PHASEWISE_KEYRING_TIMEOUT", ""))
    except ValueError:
        return LOOKUP_TIMEOUT
    return seconds if 0 < seconds < float("inf") else LOOKUP_TIMEOUT
MISS_TTL = 30.0  # a key found missing is looked up again after this long (``auth set`` meanwhile)


class KeyStoreError(PhasewiseError):
    """The OS keyring cannot do what was asked (the message says why, never a key)."""


@dataclass(frozen=True, slots=True)
class KeyStoreInfo(Jsonable):
    available: bool
    backend: str
    note: str


NO_BACKEND_NOTE = ("no OS keyring backend is available here (on headless Linux there is no Secret Service or "
                   "KWallet): keys come from environment variables (and the editor's secret storage) only")


def preload() -> None:
    """Do now, on the calling (warm-up) thread, the slow part of a first lookup: finding out
    whether a backend exists (``keyring`` picks its backend once per process, 0.2 s on a
    headless machine). Never raises."""
    try:
        if not _surely_no_backend():
            import keyring

            keyring.get_keyring()
    except Exception:  # a lookup will say why, as "not available"
        pass


@functools.cache
def _surely_no_backend() -> bool:
    """Linux without a D-Bus session bus has no Secret Service and no KWallet, the only backends
    ``keyring`` ships there: say so without importing it (its Secret Service backend brings
    ``cryptography`` and ``jeepney``, 24 MiB resident, to find out). Anything that could change
    the answer (a backend chosen by ``PYTHON_KEYRING_BACKEND`` or keyring's config file, a
    third-party backend installed) means "ask keyring"."""
    if not sys.platform.startswith("linux") or os.environ.get("PYTHON_KEYRING_BACKEND"):
        return False
    if os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.exists(os.path.join(runtime, "bus")):
        return False
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    if os.path.exists(os.path.join(config, "python_keyring", "keyringrc.cfg")):
        return False
    try:
        from importlib.metadata import entry_points

        return all(ep.dist is not None and ep.dist.name == "keyring" for ep in entry_points(group="keyring.backends"))
    except Exception:
        return False


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


class OsKeyring:
    """Keys in the OS keyring, looked up lazily, cached, off the caller's thread, with a deadline."""

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = lookup_timeout() if timeout is None else timeout
        self._info: KeyStoreInfo | None = None
        self._found: dict[str, str] = {}
        self._missing: dict[str, float] = {}  # env → when it was found missing
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # the backend ---------------------------------------------------------------------------
    def _backend(self) -> Any:
        """The ``keyring`` backend, or raises ``KeyStoreError`` saying why there is none."""
        if os.environ.get("PHASEWISE_KEYRING", "1").strip().lower() in {"0", "off", "false", "no"}:
            raise KeyStoreError("the OS keyring is turned off (PHASEWISE_KEYRING=0): keys come from environment "
                                "variables only")
        if _surely_no_backend():
            raise KeyStoreError(NO_BACKEND_NOTE)
        try:
            import keyring
            from keyring.backends import fail
        except Exception as exc:  # not installed, or broken
            raise KeyStoreError(f"the `keyring` library cannot be loaded ({type(exc).__name__}): keys come from "
                                f"environment variables only") from None
        try:
            backend = keyring.get_keyring()
        except Exception as exc:
            raise KeyStoreError(f"the OS keyring failed to start ({type(exc).__name__}): keys come from "
                                f"environment variables only") from None
        chained = getattr(backend, "backends", None)
        if isinstance(backend, fail.Keyring) or (type(backend).__name__ == "ChainerBackend" and not chained):
            raise KeyStoreError(NO_BACKEND_NOTE)
        return backend

    def _run(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the keyring's worker thread, within the deadline."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="phasewise-keyring")
            pool = self._pool
        future = pool.submit(fn, *args)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            self._info = KeyStoreInfo(False, self._info.backend if self._info else "?",
                                      f"the OS keyring did not answer within {self.timeout:g} s (locked, or waiting "
                                      f"for a prompt?): treated as not available")
            raise KeyStoreError(self._info.note) from None

    def known_info(self) -> KeyStoreInfo | None:
        """What ``info()`` found, if it has been asked already (never blocks)."""
        return self._info

    def info(self) -> KeyStoreInfo:
        """Whether a usable backend exists, which, and a plain note. Never raises."""
        if self._info is not None:
            return self._info

        def probe() -> KeyStoreInfo:
            try:
                backend = self._backend()
            except KeyStoreError as err:
                return KeyStoreInfo(False, "none", str(err))
            return KeyStoreInfo(True, _backend_name(backend), f"keys set with `phasewise auth set` are read from "
                                                              f"{_backend_name(backend)}")

        try:
            self._info = self._run(probe)
        except KeyStoreError:
            pass
        except Exception as exc:
            self._info = KeyStoreInfo(False, "none", f"the OS keyring failed ({type(exc).__name__})")
        assert self._info is not None
        return self._info

    # lookups (never raise) ------------------------------------------------------------------
    def get(self, env: str) -> str | None:
        """The key stored for ``env``, or None (none stored, no backend, any failure)."""
        if (value := self._found.get(env)) is not None:
            return value
        missed = self._missing.get(env)
        if missed is not None and time.monotonic() - missed < MISS_TTL:
            return None
        if not self.info().available:
            return None

        def lookup() -> str | None:
            found: str | None = self._backend().get_password(SERVICE, env)
            return found

        try:
            value = self._run(lookup)
        except Exception:
            value = None
        if isinstance(value, str) and value:
            self._found[env] = value
            self._missing.pop(env, None)
            return value
        self._missing[env] = time.monotonic()
        return None

    def forget(self) -> None:
        """Drop what was cached (the next lookup asks the keyring again)."""
        self._found.clear()
        self._missing.clear()
        self._info = None

    # changes (for ``phasewise auth``; raise KeyStoreError) --------------------------------
    def _require(self) -> Any:
        info = self.info()
        if not info.available:
            raise KeyStoreError(info.note)
        return self._backend()

    def names(self) -> list[str]:
        """Variable names stored with ``phasewise auth set`` (not secret)."""
        backend = self._require()
        try:
            raw = self._run(backend.get_password, SERVICE, NAMES_ENTRY)
            names = json.loads(raw) if raw else []
        except KeyStoreError:
            raise
        except Exception:
            return []
        return [n for n in names if isinstance(n, str)]

    def _save_names(self, backend: Any, names: list[str]) -> None:
        if names:
            self._run(backend.set_password, SERVICE, NAMES_ENTRY, json.dumps(sorted(set(names))))
        else:
            try:
                self._run(backend.delete_password, SERVICE, NAMES_ENTRY)
            except KeyStoreError:
                raise
            except Exception:
                pass

    def set(self, env: str, value: str) -> None:
        backend = self._require()
        try:
            self._run(backend.set_password, SERVICE, env, value)
            kept = self._run(backend.get_password, SERVICE, env)
        except KeyStoreError:
            raise
        except Exception as exc:
            raise KeyStoreError(f"the OS keyring ({_backend_name(backend)}) refused the key "
                                f"({type(exc).__name__})") from None
        if kept != value:
            raise KeyStoreError(f"the OS keyring backend {_backend_name(backend)} did not keep the key (a backend "
                                f"that stores nothing?)")
        self._save_names(backend, [*self.names(), env])
        self._found[env] = value
        self._missing.pop(env, None)

    def delete(self, env: str) -> bool:
        """Remove the key stored for ``env``; False if there was none."""
        backend = self._require()
        existed = False
        try:
            existed = self._run(backend.get_password, SERVICE, env) is not None
            if existed:
                self._run(backend.delete_password, SERVICE, env)
        except KeyStoreError:
            raise
        except Exception as exc:
            if existed:
                raise KeyStoreError(f"the OS keyring refused to delete the key ({type(exc).__name__})") from None
        self._save_names(backend, [n for n in self.names() if n != env])
        self._found.pop(env, None)
        return existed

"""Phasewise's own cache of answers (``cache.responses``, opt in): an identical request on the
same route is answered from disk instead of the provider.

The key is a SHA-256 of everything the answer depends on: the route (provider, base URL, model,
edit format), the request as sent (system, documents, user text, tools, the tool required,
token budget, temperature), the phase, the range and the whole document text. So a phase whose
inputs changed (an edited file, another instruction, other settings) never meets an old answer.
Entries are one JSON file each under the user's cache directory (``PHASEWISE_CACHE_DIR``, else
``$XDG_CACHE_HOME/phasewise``, else ``~/.cache/phasewise``), in ``responses/``; an entry older
than ``cache.ttlSeconds`` is ignored and removed. Only answers are stored: never a key.
A cache that cannot be read or written is skipped, never allowed to fail a phase.
May not import: edge.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phasewise.providers.base import ChatRequest, Completion, Usage

CACHE_ENV = "PHASEWISE_CACHE_DIR"
SCHEMA = 1


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user's Phasewise cache directory."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "phasewise"


def responses_dir(environ: Mapping[str, str] | None = None) -> Path:
    return cache_dir(environ) / "responses"


def request_key(*, label: str, base_url: str, edit_format: str, phase: str, request: ChatRequest,
                extra: Mapping[str, Any]) -> str:
    """The cache key of one request on one route (hex SHA-256)."""
    tools = [{"name": t.name, "description": t.description, "schema": t.schema} for t in request.declared_tools()]
    material = {
        "v": SCHEMA, "route": label, "baseUrl": base_url, "editFormat": edit_format, "phase": phase,
        "model": request.model, "system": request.system, "context": request.context, "user": request.user,
        "tools": tools, "tool": request.tool.name if request.tool is not None else None,
        "maxTokens": request.max_tokens, "temperature": request.temperature, **extra,
    }
    raw = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ResponseCache:
    """Answers on disk, one file per key, valid for ``ttl`` seconds of ``clock``."""

    def __init__(self, root: Path, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.ttl = ttl
        self.clock = clock

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("v") != SCHEMA:
            return None
        stored = data.get("storedAt")
        if not isinstance(stored, int | float) or self.clock() - stored > self.ttl or self.clock() < stored:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        tool_input = data.get("toolInput")
        return Completion(
            text=str(data.get("text") or ""),
            tool_input=tool_input if isinstance(tool_input, dict) else None,
            tool_input_raw=data.get("toolInputRaw") if isinstance(data.get("toolInputRaw"), str) else None,
            usage=Usage(),
            stop_reason=data.get("stopReason") if isinstance(data.get("stopReason"), str) else None,
        )

    def put(self, key: str, completion: Completion) -> None:
        data = {"v": SCHEMA, "storedAt": self.clock(), "text": completion.text,
                "toolInput": completion.tool_input, "toolInputRaw": completion.tool_input_raw,
                "stopReason": completion.stop_reason}
        path = self._path(key)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False)
            os.replace(tmp, path)
        except OSError:
            return

    def clear(self) -> int:
        """Remove every cached answer; how many there were."""
        removed = 0
        try:
            entries = list(self.root.glob("*.json"))
        except OSError:
            return 0
        for path in entries:
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
        return removed


def clear_responses(environ: Mapping[str, str] | None = None) -> tuple[Path, int]:
    """``phasewise cache clear``: where the cache is and how many answers were removed."""
    root = responses_dir(environ)
    return root, ResponseCache(root, 0).clear()

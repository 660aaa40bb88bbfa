"""A real ``keyring`` backend for tests: works headless, keeps its entries in a temp JSON file.

Selected with ``PYTHON_KEYRING_BACKEND=tests.keyring_backend.FileKeyring`` and the file named by
``PHASEWISE_TEST_KEYRING``, so the ``keyring`` library's own API path (backend loading,
``get_password``/``set_password``/``delete_password``) runs in the CLI and the server exactly as
with an OS keyring. Test use only: it stores keys in plain text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @staticmethod
    def _path() -> Path:
        return Path(os.environ["PHASEWISE_TEST_KEYRING"])

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self._path().read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, str]) -> None:
        self._path().write_text(json.dumps(data), encoding="utf-8")

    def get_password(self, service: str, username: str) -> str | None:
        return self._read().get(f"{service}\x00{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._read()
        data[f"{service}\x00{username}"] = password
        self._write(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._read()
        if data.pop(f"{service}\x00{username}", None) is None:
            raise PasswordDeleteError("not found")
        self._write(data)

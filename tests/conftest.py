"""The shared fixtures: the provider simulator on loopback, fresh for every test that uses it
(everything else the tests share is in ``tests.helpers``).

The language server runs as a subprocess (``python -m phasewise serve``); the simulator runs in
a thread of the test process, so tests can script faults and read what reached the wire.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from phasewise.sim import SimulatorThread
from tests.helpers import LEDGER

os.environ.setdefault("PHASEWISE_LEDGER", LEDGER)
# No developer's keyring or user settings file reaches a test: the keyring backend that stores
# nothing (tests of the keyring pick their own), and a user settings file that does not exist.
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
os.environ.setdefault("PHASEWISE_USER_SETTINGS", str(Path(LEDGER).parent / "no-user-settings.json"))


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread() as thread:
        yield thread


@pytest.fixture(autouse=True)
def _fresh_sim(request: pytest.FixtureRequest) -> None:
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()

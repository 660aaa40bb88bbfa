"""Issue 10: the shape of the code, checked (no import cycles, modules of a readable size, one
error root), and typed command arguments answered precisely through a real LSP client."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import grimp
import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from phasewise import __version__, problems
from tests.helpers import Editor, make_client_fixture, server_env

PACKAGE = Path(problems.__file__).resolve().parent
client = make_client_fixture(server_env(PHASEWISE_WARMUP="0"), clients=["visual-studio-code"])


def test_no_import_cycle_anywhere_in_the_package() -> None:
    """Imports inside functions count; ``TYPE_CHECKING`` ones don't."""
    graph = grimp.build_graph("phasewise", exclude_type_checking_imports=True)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} -> {imported} -> … -> {module}")
    assert cycles == []


def test_no_product_module_over_600_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if "sim" not in p.relative_to(PACKAGE).parts and (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def _product_modules() -> list[ModuleType]:
    """Every module of the package, imported (importing one is side-effect free). Not the
    ``__main__`` modules, which run their command when imported and define nothing; not the
    simulator, a fake provider that may not import ``problems`` (``pyproject.toml``): its errors
    are its own and end as its HTTP answers."""
    import phasewise

    modules = []
    for info in pkgutil.walk_packages(phasewise.__path__, "phasewise."):
        if info.name.rsplit(".", 1)[-1] == "__main__" or info.name.startswith("phasewise.sim"):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


def _drawn_tree() -> dict[str, str | None]:
    """Each class the ``problems`` docstring draws, and the class drawn as its parent."""
    parents: dict[str, str | None] = {}
    path: list[str] = []  # the names on the way down to the line read
    for line in (problems.__doc__ or "").splitlines():
        drawn = re.match(r"^ {4}((?:[│ ] {3})*)([├└]── )?([A-Z]\w+)\s", line)
        if drawn is None or (drawn.group(1) and not drawn.group(2)):  # not a class: a description going on
            continue
        depth = len(drawn.group(1)) // 4 + bool(drawn.group(2))
        path[depth:] = [drawn.group(3)]
        parents[drawn.group(3)] = path[depth - 1] if depth else None
    return parents


def test_every_error_phasewise_raises_has_one_root() -> None:
    """Every exception class the package defines is a ``PhasewiseError`` and sits in the tree
    ``problems``' docstring draws, under the class it derives from."""
    errors = {cls.__name__: cls for m in _product_modules() for cls in vars(m).values()
              if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == m.__name__}
    assert {"PhasewiseError", "UsageError", "PathRefused", "NotALedger", "CommandError"} <= errors.keys()
    assert {n for n, c in errors.items() if not issubclass(c, problems.PhasewiseError)} == set()
    tree = _drawn_tree()
    assert sorted(errors) == sorted(tree), "the tree in problems.py's docstring names every error, and only those"
    for name, cls in errors.items():
        base = next((b.__name__ for b in cls.__bases__ if issubclass(b, problems.PhasewiseError)), None)
        assert tree[name] == base, f"{name} derives from {base}, the tree draws it under {tree[name]}"


def test_every_package_says_what_it_is_for_and_what_it_may_import() -> None:
    import phasewise

    packages = [phasewise, *(importlib.import_module(i.name) for i in pkgutil.walk_packages(
        phasewise.__path__, "phasewise.") if i.ispkg)]
    vague = [p.__name__ for p in packages if len((p.__doc__ or "").split()) < 12 or "import" not in (p.__doc__ or "")]
    assert vague == []


@pytest.mark.slow
@pytest.mark.parametrize(("command", "arg", "expected"), [
    ("phasewise.plan", {"uri": "file:///x.py", "instruction": 5}, "`instruction` must be text"),
    ("phasewise.plan", {"uri": "file:///x.py", "instruction": "x", "range": {"start": 1}},
     "`range` must be an LSP range"),
    ("phasewise.code", {"uri": "file:///x.py", "instruction": "x", "plan": ["a"]}, "`plan` must be text"),
    ("phasewise.review", {"uri": "file:///x.py", "model": 7}, "`model` must be a model reference"),
    ("phasewise.compare", {"uri": "file:///x.py", "instruction": "x", "phase": "plan", "models": [1]},
     "`models` must be a list of model references"),
    ("phasewise.verify", {"providers": "anthropic"}, "`providers` must be a list of provider ids"),
    ("phasewise.models", {"uri": "file:///x.py"}, "expected {provider, uri?}"),
    ("phasewise.plan", {"uri": "file:///x.py", "instruction": "x",
                        "range": {"start": {"line": 4, "character": 0}, "end": {"line": 1, "character": 0}}},
     "`range` ends before it starts"),
])
async def test_a_wrong_argument_gets_invalid_params_naming_the_field(
        client: LanguageClient, command: str, arg: dict[str, object], expected: str) -> None:
    editor = Editor(client)
    with pytest.raises(JsonRpcException) as err:
        await editor.command(command, arg)
    assert err.value.code == -32602
    assert f"{command}: " in err.value.message and expected in err.value.message, err.value.message


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "phasewise", "serve"],
                                              server_env=server_env(PHASEWISE_WARMUP="0")))
async def uninitialized(lsp_client: LanguageClient) -> AsyncIterator[None]:
    yield  # pytest-lsp hands the test the client; the test initializes it to read the result
    await lsp_client.shutdown_session()


@pytest.mark.slow
async def test_initialize_names_the_server_and_its_version(uninitialized: LanguageClient) -> None:
    """Issue 24, item 2: the VS Code extension compares this version with its own."""
    result = await uninitialized.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    assert result.server_info == types.ServerInfo(name="phasewise", version=__version__)


def test_no_test_imports_another_test_module() -> None:
    """What tests share lives in ``tests.helpers``; a test module is never imported by another."""
    import ast

    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests."):
                leaf = node.module.rsplit(".", 1)[-1]
                if leaf.startswith("test_") or leaf == "conftest":
                    offenders.append(f"{path.relative_to(tests)}: from {node.module}")
    assert offenders == []

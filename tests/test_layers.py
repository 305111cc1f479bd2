"""The package's imports form layers: a module imports its own package and the layers below,
never a layer above nor a sibling package of its own layer, and no import cycle exists.

Read from the source (ast), so an import inside a function or under TYPE_CHECKING counts too.
The same order is drawn in the README's Layout section.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "zapbase"

# Bottom first. Each entry is a top-level module or package of `zapbase`.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "settings", "text"),  # shared errors, settings, Portuguese text folding
    ("db", "storage", "whatsapp", "webhooks"),  # connections, migrations; object store; Graph API client;
    # Standard Webhooks signing, address guard, receiver
    ("ai", "hotmart"),  # AI gateway: providers, chain, ledger, billing of embeddings and speech;
    # Hotmart's webhook (postback v2) into the commerce module
    ("knowledge", "tts", "lgpd", "coaching"),  # knowledge search, speech: both billed through ai;
    # LGPD storage purge; coaching: the insight prompt and the judgement of the answer
    ("bot", "flows"),  # the AI bot: a claimed message in, a Reply out; flows: graphs, interpreter, engine
    ("chat_search",),  # chat search: the SQL checker, the views, a question answered through the gateway
    ("worker", "simulator", "standins", "contract"),  # worker loops and HTTP; stand-ins; frontend contract
    ("local_stack",),  # a worker and the simulator in one process
    ("demo",),
    ("worker_cli", "knowledge_cli", "jobs_cli", "templates_cli", "report_cli"),
    ("cli",),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The zapbase modules `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            submodules = {f"{source}.{alias.name}" for alias in node.names} & known
            # `from package import module` runs the package's __init__ as any submodule import
            # does: the edge goes to the module; names defined in the package itself go to it.
            found.update(submodules or {source})
            if len(submodules) < len(node.names):
                found.add(source)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer_of() -> dict[str, int]:
    return {top: n for n, layer in enumerate(LAYERS) for top in layer}


def test_every_module_has_a_layer() -> None:
    layer_of = _layer_of()
    unplaced = sorted({_top(m) for m in _modules()} - set(layer_of) - {""})
    assert unplaced == [], f"add these to LAYERS in tests/test_layers.py and the README: {unplaced}"


def test_imports_point_down_the_layers() -> None:
    layer_of = _layer_of()
    wrong = []
    for module, imported in sorted(_graph().items()):
        here = _top(module)
        for target in sorted(imported):
            there = _top(target)
            if here == "" or there == "" or there == here:
                continue  # the package root, or within one package
            if here in layer_of and there in layer_of and layer_of[there] >= layer_of[here]:
                wrong.append(f"{module} -> {target}")
    assert wrong == [], "imports against the layer order:\n" + "\n".join(wrong)


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from zapbase.bot import pipeline\n", {"zapbase.bot.pipeline"}),
        ("from zapbase.bot import AIResponder, pipeline\n", {"zapbase.bot", "zapbase.bot.pipeline"}),
        ("from . import rules\n", {"zapbase.bot.rules"}),
        ("import zapbase.worker.runner\n", {"zapbase.worker.runner"}),
        ("def f():\n    from ..worker.runner import Runner\n", {"zapbase.worker.runner"}),
    ],
)
def test_the_graph_sees_every_form_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    module = tmp_path / "wiring.py"
    module.write_text(source)
    known = {"zapbase.bot", "zapbase.bot.pipeline", "zapbase.bot.rules", "zapbase.worker.runner"}
    assert _imports("zapbase.bot.wiring", module, known) == expected

"""One way through the code: preset -> plan -> trials -> run folder -> analysis, as rules on
who imports whom. Imports inside functions count as much as those at the top: a circle hidden
in a function is still a circle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "sweeps", "analysis")

# Lower layers first; a module may import its own layer and the ones below, never above.
LAYERS = [
    ("trainer",),  # pure PyTorch: one training run
    ("sweeps.errors",),  # the errors a user can fix
    ("sweeps.search", "sweeps.nsga2", "sweeps.stopping", "sweeps.prices", "sweeps.budget"),  # search, stopping, money
    ("sweeps.presets",),  # the preset format
    ("sweeps.runfolder",),  # the run folder: storage, names, the frozen plan, results, reading a run
    ("sweeps.planner", "sweeps.estimate", "sweeps.warmstart", "sweeps.sim", "sweeps.console",
     "sweeps.slurm"),  # on the run folder
    ("sweeps.engine",),  # Ray: the driver, the trial actor, schedulers, callbacks
    ("sweeps.cli",),  # the `sweep` command
    ("analysis",),  # reads run folders: tables, plots, Grad-CAM, report, export
]
# What analysis may use of sweeps: the run folder, the search space, the console, the prices.
ANALYSIS_USES = ("sweeps.runfolder", "sweeps.search", "sweeps.console", "sweeps.errors", "sweeps.presets",
                 "sweeps.prices", "sweeps.budget", "sweeps.stopping")
RAY_ONLY_IN = "sweeps.engine"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(root: Path, packages=PACKAGES) -> dict[str, set[tuple[str, bool]]]:
    """module -> {(imported module, at module level)} for every module of `packages` under `root`,
    relative imports resolved."""
    graph: dict[str, set[tuple[str, bool]]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = _module_name(path, root)
            is_package = path.name == "__init__.py"
            tree = ast.parse(path.read_text())
            top = set(map(id, tree.body))
            found: set[tuple[str, bool]] = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found |= {(alias.name, id(node) in top) for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = name.split(".") if is_package else name.split(".")[:-1]
                        base = base[: len(base) - node.level + 1]
                        module = ".".join(base + ([node.module] if node.module else []))
                    else:
                        module = node.module or ""
                    found.add((module, id(node) in top))
                    # `from package import module` imports the module
                    found |= {(f"{module}.{alias.name}", id(node) in top) for alias in node.names}
            graph[name] = found
    return graph


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    for rank, prefixes in enumerate(LAYERS):
        if any(_within(module, p) for p in prefixes):
            return rank
    return None


def internal(graph: dict[str, set[tuple[str, bool]]]) -> dict[str, set[str]]:
    """The project's own edges only: module -> modules of the project it imports."""
    return {m: {t for t, _ in targets if t in graph} for m, targets in graph.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every circle of imports, each once (as the strongly connected components Tarjan finds)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def upward(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(edges.items()):
        rank = layer_of(module)
        for target in sorted(targets):
            other = layer_of(target)
            if rank is not None and other is not None and other > rank and not _within(module, target):
                bad.append(f"{module} -> {target}")
    return bad


GRAPH = read_imports(ROOT)
EDGES = internal(GRAPH)


def test_every_module_has_a_layer():
    assert [m for m in GRAPH if layer_of(m) is None and m not in PACKAGES] == []


def test_no_module_imports_a_layer_above_its_own():
    assert upward(EDGES) == []


def test_there_is_no_circle_of_imports():
    # a package's __init__ importing its own modules is no circle
    edges = {m: {t for t in ts if not _within(t, m)} for m, ts in EDGES.items()}
    assert circles(edges) == []


def test_only_the_engine_imports_ray_and_the_run_folder_imports_no_heavy_library_at_import_time():
    ray_users = sorted(m for m, ts in GRAPH.items() if any(_within(t, "ray") for t, _ in ts))
    assert ray_users and all(_within(m, RAY_ONLY_IN) for m in ray_users), ray_users
    heavy = ("ray", "torch", "torchvision", "optuna")
    eager = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if _within(m, "sweeps.runfolder")
                   for t, at_top in ts if at_top and any(_within(t, h) for h in heavy))
    assert eager == []
    assert not [m for m, ts in GRAPH.items() if _within(m, "trainer") and any(
        _within(t, "ray") or _within(t, "optuna") or _within(t, "sweeps") or _within(t, "analysis") for t, _ in ts)]


def test_analysis_reads_run_folders_and_never_drives_a_sweep():
    used = sorted({t for m, ts in EDGES.items() if _within(m, "analysis") for t in ts if _within(t, "sweeps")})
    assert used and all(any(_within(t, p) for p in ANALYSIS_USES) for t in used), used


def test_the_product_never_imports_the_development_tools():
    assert not [m for m, ts in GRAPH.items() if any(_within(t, "tools") for t, _ in ts)]


@pytest.mark.parametrize("case", ["circle", "upward"])
def test_the_rules_catch_a_new_circle_or_an_upward_import(tmp_path, case):
    """The reader and the rules themselves, on a small package written here: they are not
    vacuous."""
    (tmp_path / "sweeps" / "runfolder").mkdir(parents=True)
    (tmp_path / "sweeps" / "__init__.py").write_text("")
    (tmp_path / "sweeps" / "runfolder" / "__init__.py").write_text("")
    (tmp_path / "sweeps" / "runfolder" / "a.py").write_text("from . import b\n")
    if case == "circle":
        (tmp_path / "sweeps" / "runfolder" / "b.py").write_text("def f():\n    from sweeps.runfolder import a\n")
    else:
        (tmp_path / "sweeps" / "runfolder" / "b.py").write_text("from sweeps.engine import driver\n")
        (tmp_path / "sweeps" / "engine").mkdir()
        (tmp_path / "sweeps" / "engine" / "__init__.py").write_text("")
        (tmp_path / "sweeps" / "engine" / "driver.py").write_text("import ray\n")
    edges = internal(read_imports(tmp_path, packages=("sweeps",)))
    if case == "circle":
        assert circles({m: {t for t in ts if not _within(t, m)} for m, ts in edges.items()}) == \
            [["sweeps.runfolder.a", "sweeps.runfolder.b"]]
    else:
        assert upward(edges) == ["sweeps.runfolder.b -> sweeps.engine", "sweeps.runfolder.b -> sweeps.engine.driver"]


def test_in_analysis_only_one_module_turns_a_checkpoint_into_a_model():
    loaders = ("trainer.checkpoint", "trainer.loop.load_model", "trainer.datasets.load_data")
    users = sorted({m for m, ts in GRAPH.items() if _within(m, "analysis") for t, _ in ts if t in loaders})
    assert users == ["analysis.trained"]


def test_every_report_section_is_listed_once_in_order():
    import analysis.report as report

    sections = sorted(name for name in vars(report) if name.endswith("_section") and not name.startswith("_")
                      and name != "gradcam_section")  # Grad-CAM: part of the best model's section
    assert sorted(f.__name__ for f in report.SECTIONS) == sections
    assert len(set(report.SECTIONS)) == len(report.SECTIONS)

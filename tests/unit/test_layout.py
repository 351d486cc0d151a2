"""The package's shape: no import cycles between its modules, no module too long to read,
and every sample image credited. (The layer order itself is import-linter's contract:
`lint-imports`, run by CI.)"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "nst_cli"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each module -> the nst_cli modules it imports when it is imported (top level, outside
    `if TYPE_CHECKING:`; imports inside functions run later and cannot form a cycle at import)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    assert len(graph) > 40 and graph["nst_cli.run.stylize"]  # the graph was really read
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not long, long


def test_every_sample_image_is_credited_in_sources() -> None:
    samples = Path(__file__).resolve().parents[2] / "samples"
    sources = (samples / "SOURCES.md").read_text(encoding="utf-8")
    images = [p.name for p in samples.rglob("*") if p.suffix in {".png", ".jpg", ".mp4"}]
    assert images and all(f"`{name}`" in sources for name in images), images


def test_every_path_the_docs_name_exists() -> None:
    """A page that cites `tests/test_losses.py` after the tests moved to tests/unit/ sends a
    reader nowhere: every repository path the README and the docs name is there."""
    import re

    root = PACKAGE.parent
    pages = [root / "README.md", root / "CHANGELOG.md", *sorted((root / "docs").rglob("*.md"))]
    cited = re.compile(
        r"(?<![\w/.-])((?:tests|nst_cli|benchmarks|samples|configs|docs|\.ci)/[\w./-]*\w)"
    )
    missing = [
        f"{page.relative_to(root)}: {path}"
        for page in pages
        for path in cited.findall(page.read_text(encoding="utf-8"))
        if "*" not in path and not (root / path).exists()
    ]
    assert not missing, "\n".join(missing)


def test_the_development_page_s_layer_table_names_every_module() -> None:
    """docs/development.md's table of layers is the map a contributor reads first: every
    module of each layer is on it."""
    text = (PACKAGE.parent / "docs" / "development.md").read_text(encoding="utf-8")
    rows = {
        line.split("`")[1].rstrip("/"): line for line in text.splitlines() if line.startswith("| `")
    }
    missing = [
        f"{layer}/{path.stem}"
        for layer in ("core", "config", "io", "run", "sweep", "studio", "cli")
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        if path.stem != "__init__" and f"`{path.stem}`" not in rows[layer]
    ]
    assert not missing, f"not in docs/development.md's layer table: {', '.join(missing)}"

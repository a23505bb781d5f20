"""The package's shape (docs/architecture.md): imports flow one way, modules stay small, and nothing outside the
search spaces knows a space by name. Read from the source with `ast`, so the test also runs where torch is absent."""
import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kshot_bench"
MAX_LINES = 700
SPACE_NAME_TEST = re.compile(r"(==|!=|in) *\(?['\"](nb201|mbv2|macro)['\"]")


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        yield name, path


def imported(name: str, path: Path, known) -> set:
    """kshot_bench modules that `name` imports anywhere in its file (module level or inside functions)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def test_no_import_cycle():
    found = dict(modules())
    graph = {name: imported(name, path, found) for name, path in found.items()}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_over_700_lines():
    long = {name: n for name, path in modules() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_only_the_search_spaces_know_a_space_by_name():
    hits = []
    for name, path in modules():
        if name.startswith("kshot_bench.search_space"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if SPACE_NAME_TEST.search(line):
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)

"""The import rules of docs/architecture.md ("Layers") hold: no app imports an app above it, the shared
modules of autogen_platform import no app, no package's modules import each other in a circle (the
contracts in .importlinter, checked by import-linter), every project package is under those contracts,
and an import made inside a function says why in a comment."""
import ast
import configparser
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"

# Not Django code: the program a sandbox runs (imported there as the top-level package `agentchild`).
NOT_DJANGO = ("runtime/agentchild/",)


def _project_packages() -> set[str]:
    return {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}


def _config() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(CONFIG)
    return config


def _listed(value: str) -> set[str]:
    return {line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")}


def test_import_contracts_hold():
    # A process of its own: in this one Django has loaded zope.interface (through daphne), whose classes'
    # `__provides__` breaks import-linter's reading of its contract classes.
    linted = subprocess.run([Path(sys.executable).with_name("lint-imports"), "--config", CONFIG, "--no-cache"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_every_project_package_is_under_the_contracts():
    config = _config()
    packages = _project_packages()
    assert _listed(config["importlinter"]["root_packages"]) == packages
    assert _listed(config["importlinter:contract:acyclic"]["ancestors"]) == packages
    layered = {name.strip("() ") for line in _listed(config["importlinter:contract:layers"]["layers"])
               for name in line.split("|")}
    assert packages - {"autogen_platform"} <= layered, "every app has its place in the layers"


def _function_level_imports(path: Path):
    source = path.read_text()
    lines = source.splitlines()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else None  # relative: always the project's
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if names is not None and not any(n.split(".")[0] in _project_packages() for n in names):
                continue
            yield node.lineno, lines


def _explained(lineno: int, lines: list[str]) -> bool:
    """A comment on the import's line, or on the line above it or above its block of imports."""
    if "#" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0 and (not lines[i].strip() or lines[i].strip().startswith(("from ", "import "))):
        if "#" in lines[i]:
            return True
        i -= 1
    return i >= 0 and lines[i].strip().startswith("#")


def test_imports_inside_functions_say_why():
    unexplained = []
    for package in sorted(_project_packages()):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/tests/" in relative or "/migrations/" in relative or relative.startswith(NOT_DJANGO):
                continue
            unexplained += [f"{relative}:{lineno}" for lineno, lines in _function_level_imports(path)
                            if not _explained(lineno, lines)]
    assert unexplained == [], "an import inside a function needs a one-line comment saying why it is there"

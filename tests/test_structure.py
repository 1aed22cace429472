"""The shape of the code: imports point down, and each gold table is defined once.

    dags/                  wiring only: imports core and engagement
    engagement/            programs that combine parts (CLI, pipeline, demo, status, query ...)
    streaming/ jobs/ expectations/    the parts: each imports core and itself, never another part
    core/                  the base: imports the standard library only (and boto3 lazily for S3)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("core", "streaming", "jobs", "expectations", "engagement", "dags")
# What each package may import from the project (itself included).
ALLOWED = {
    "core": {"core"},
    "streaming": {"core", "streaming"},
    "jobs": {"core", "jobs"},
    "expectations": {"core", "expectations"},
    "engagement": {"core", "streaming", "jobs", "expectations", "engagement"},
    "dags": {"core", "engagement"},
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module a file imports, at any depth (function-level imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_import_walker_sees_function_level_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from jobs.silver import build_silver\n    import streaming.loader\n")
    assert imported_modules(sample) == [(1, "os"), (4, "jobs.silver"), (5, "streaming.loader")]


@pytest.mark.parametrize("package", PROJECT)
def test_imports_point_down(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top in PROJECT and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


# The one exception: the S3 client, imported inside core.storage's S3 store when an s3://
# warehouse is opened (never at import time, see the next test).
LAZY_IN_CORE = {"core/storage.py": {"boto3", "botocore"}}


def test_base_package_imports_only_the_standard_library():
    wrong = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        top_level = {node.lineno for node in ast.parse(path.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))}
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            lazy_ok = line not in top_level and top in LAZY_IN_CORE.get(name, ())
            if top not in sys.stdlib_module_names and top != "core" and not lazy_ok:
                wrong.append(f"{name}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_importing_the_base_package_loads_nothing_else_of_the_project():
    code = (
        "import sys, core.settings, core.contract, core.layout, core.tables, core.errors, core.storage, core.loader_log;"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {PROJECT!r} and m.split('.')[0] != 'core'"
        " or m.split('.')[0] in ('pyspark', 'airflow', 'great_expectations', 'kafka', 'pyarrow', 'boto3', 'botocore'));"
        "print(','.join(loaded))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""

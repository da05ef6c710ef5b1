"""The project's shape, checked so it cannot drift: dvc.yaml's code deps, cross-flow imports,
and the params defaults.

DVC reruns a stage when one of its listed deps changes, so a stage that imports a module
dvc.yaml does not list silently keeps a stale output after that module changes. The code deps
are therefore derived here from each stage flow's static import closure (every import
statement, including those inside functions) and compared with what dvc.yaml lists.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("stages", "flows", "metrics")
# Code a module loads by path rather than by import: the module, and the code folder it needs.
PATH_LOADED = {"stages/evaluate.py": "metrics/relation_f1"}
# Modules in flows/ that define no Prefect flow and that any flow may import.
FLOW_HELPERS = {"flows/common.py", "flows/local.py", "flows/server.py", "flows/diff.py"}


def _module_file(module: str, root: Path) -> str | None:
    """The project file for a dotted module name, or None when it is not project code."""
    parts = module.split(".")
    if parts[0] not in CODE_DIRS:
        return None
    base = root.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand.relative_to(root).as_posix()
    return None


def _package(rel: str) -> str:
    parts = rel[: -len(".py")].split("/")
    return ".".join(parts[:-1])


def imported_files(rel: str, root: Path = ROOT) -> set[str]:
    """The project files ``rel`` imports directly (all import statements, any nesting)."""
    tree = ast.parse((root / rel).read_text(), filename=rel)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = _package(rel).split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import name` imports pkg, and pkg.name when that is a module
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            f = _module_file(name, root)
            if f:
                found.add(f)
    found.discard(rel)
    return found


def _trivial_init(rel: str, root: Path) -> bool:
    """A package __init__ holding only a docstring: importing it runs nothing that could change."""
    if not rel.endswith("__init__.py"):
        return False
    body = ast.parse((root / rel).read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def import_closure(rel: str, root: Path = ROOT) -> set[str]:
    """Every project file ``rel`` reaches through imports (package inits included), itself
    included, plus path-loaded code."""
    seen: set[str] = set()
    todo = [rel]
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        todo.extend(imported_files(cur, root) - seen)
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        parts = cur.split("/")[:-1]
        todo.extend(f for i in range(1, len(parts) + 1)
                    if (root / (f := "/".join(parts[:i]) + "/__init__.py")).is_file())
    out = {f for f in seen if not _trivial_init(f, root)}
    for f in list(out):
        if f in PATH_LOADED:
            out.add(PATH_LOADED[f])
    # files inside a path-loaded folder are covered by the folder
    return {f for f in out if not any(f.startswith(d + "/") for d in PATH_LOADED.values())}


def _is_code_dep(dep: str) -> bool:
    return dep.endswith(".py") or (dep.split("/")[0] in CODE_DIRS and (ROOT / dep).is_dir())


def code_dep_mismatches(dvc_yaml: Path, root: Path = ROOT) -> list[str]:
    """One message per stage whose listed code deps differ from its flow's import closure."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    problems = []
    for name, stage in stages.items():
        m = re.fullmatch(r"python -m (flows\.\w+)(\s.*)?", stage["cmd"].strip())
        if not m:
            continue
        flow = m.group(1).replace(".", "/") + ".py"
        listed = {d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])}
        listed = {d.rstrip("/") for d in listed if _is_code_dep(d)}
        needed = import_closure(flow, root)
        # a listed package folder (stages/mine) covers the modules inside it
        folders = {d for d in listed if not d.endswith(".py")}
        covered = {f for f in needed if any(f.startswith(d + "/") for d in folders)}
        used = {d for d in folders if any(f.startswith(d + "/") for f in needed)}
        for path in sorted(needed - listed - covered):
            problems.append(f"stage '{name}': {flow} imports {path}, which dvc.yaml does not list in deps")
        for path in sorted(listed - needed - used):
            problems.append(f"stage '{name}': dvc.yaml lists {path} in deps, which {flow} does not import")
    return problems


def test_dvc_code_deps_match_import_closure():
    problems = code_dep_mismatches(ROOT / "dvc.yaml")
    assert not problems, "dvc.yaml code deps are out of date:\n" + "\n".join(problems)


def test_removed_dep_is_named(tmp_path):
    data = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    deps = data["stages"]["calibrate"]["deps"]
    deps.remove("stages/errors.py")
    deps.append("stages/split.py")
    copy = tmp_path / "dvc.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    problems = code_dep_mismatches(copy)
    assert problems == [
        "stage 'calibrate': flows/calibrate.py imports stages/errors.py, which dvc.yaml does not list in deps",
        "stage 'calibrate': dvc.yaml lists stages/split.py in deps, which flows/calibrate.py does not import",
    ]


def test_closure_follows_imports_inside_functions_and_relative_ones():
    # flows/train.py imports stages.train inside a function; stages/train.py imports .evaluate,
    # which loads the metric folder by path
    closure = import_closure("flows/train.py")
    assert {"stages/train.py", "stages/evaluate.py", "metrics/relation_f1", "flows/common.py"} <= closure
    assert not any(f.startswith("metrics/relation_f1/") for f in closure)
    assert "stages/__init__.py" not in closure  # a docstring-only package init
    assert "flows/__init__.py" in closure and "flows/local.py" in closure  # flows/__init__ sets Prefect's defaults


def test_path_loaded_code_is_still_loaded_by_path():
    for module, folder in PATH_LOADED.items():
        assert (ROOT / folder).is_dir(), f"{folder} is gone: drop it from PATH_LOADED"
        assert Path(folder).name in (ROOT / module).read_text(), f"{module} no longer loads {folder}"


def _defines_flow(rel: str) -> bool:
    tree = ast.parse((ROOT / rel).read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if (isinstance(target, ast.Name) and target.id == "flow") or (
                    isinstance(target, ast.Attribute) and target.attr == "flow"
                ):
                    return True
    return False


def test_no_flow_imports_another_flow():
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "flows").glob("*.py"))
    bad = []
    for rel in modules:
        if rel == "flows/__init__.py":
            continue
        others = {f for f in imported_files(rel) if f.startswith("flows/")} - FLOW_HELPERS - {"flows/__init__.py"}
        bad += [f"{rel} imports {f}" for f in sorted(others)]
    assert not bad, "flow modules import each other (move the shared code to stages/):\n" + "\n".join(bad)
    for helper in FLOW_HELPERS:
        assert not _defines_flow(helper), f"{helper} defines a Prefect flow, so it is no helper"
        assert not {f for f in imported_files(helper) if f.startswith("flows/")} - FLOW_HELPERS


def test_data_stages_do_not_depend_on_execution_settings():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert "run" not in stage.get("params", []), (
            f"stage '{name}' lists the run section in params: how a stage runs must not rerun it"
        )


def _call_name(node: ast.Call) -> str | None:
    return getattr(node.func, "id", None) or getattr(node.func, "attr", None)


def params_classes(root: Path = ROOT) -> dict[str, tuple[str, str]]:
    """section -> (module, class name), from every ``load_params(Cls, "section")`` and
    ``parse_params(Cls, raw, "section")`` call in stages/ and flows/."""
    files = sorted([*root.glob("stages/**/*.py"), *root.glob("flows/*.py")])
    defined: dict[str, str] = {}
    sections: dict[str, str] = {}
    for f in files:
        tree = ast.parse(f.read_text())
        module = f.relative_to(root).with_suffix("").as_posix().replace("/", ".")
        defined.update({n.name: module for n in tree.body if isinstance(n, ast.ClassDef)})
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name)):
                continue
            pos = {"load_params": 1, "parse_params": 2}.get(_call_name(node) or "")
            if pos is not None and len(node.args) > pos and isinstance(node.args[pos], ast.Constant):
                sections[node.args[pos].value] = node.args[0].id
    return {sec: (defined[cls], cls) for sec, cls in sections.items()}


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def test_every_params_section_has_its_dataclass():
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(params_classes()) == set(shipped), "a params.yaml section without a reader, or the reverse"
    in_flows = sorted(f"{m}.{c}" for m, c in params_classes().values() if not m.startswith("stages."))
    assert not in_flows, f"params dataclasses belong in stages/ (one place for every default): {in_flows}"
    from stages.params import SECTIONS

    assert set(SECTIONS) == set(shipped), "stages/params.py SECTIONS (what load_yaml accepts) differs from params.yaml"


@pytest.mark.parametrize("section", sorted(yaml.safe_load((ROOT / "params.yaml").read_text())))
def test_params_defaults_equal_params_yaml(section):
    """The dataclass defaults are what a params.yaml without that key gets: they must be the
    shipped values, or a user who deletes a line silently gets another model."""
    module, name = params_classes()[section]
    cls = getattr(importlib.import_module(module), name)
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())[section] or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(shipped) <= set(fields), f"{section}: params.yaml keys {set(shipped) - set(fields)} unknown to {name}"
    assert set(fields) <= set(shipped), f"{section}: {name} fields {set(fields) - set(shipped)} missing from params.yaml"
    differ = []
    for key, f in fields.items():
        default = _default(f)
        if key in shipped and default is not dataclasses.MISSING and default != shipped[key]:
            differ.append(f"{section}.{key}: {module}.{name} says {default!r}, params.yaml says {shipped[key]!r}")
    assert not differ, "defaults differ (params.yaml is the shipped value):\n" + "\n".join(differ)

"""A domain is files, not code: domains/<name>/ holds a byte-identical copy of dvc.yaml, its own
params.yaml, patterns and lists, and `dvc repro domains/<name>/dvc.yaml` builds it with outputs and
reports of its own, leaving the default domain's alone."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = sorted(p.parent for p in (ROOT / "domains").glob("*/dvc.yaml"))
TEMPLATE = re.compile(r"\$\{([\w.]+)\}")


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k not in ("type_map", "label_map", "gold_sets"):
            out |= _keys(v, f"{prefix}{k}.")
    return out


def _lookup(params: dict, dotted: str):
    v = params
    for part in dotted.split("."):
        v = v[part]
    return v


def declared_paths(dvc_yaml: Path, params: dict) -> dict[str, list[str]]:
    """stage -> the outs, metrics and plots it declares, with ${...} resolved from params."""
    spec = yaml.safe_load(dvc_yaml.read_text())
    out: dict[str, list[str]] = {}
    for name, stage in spec["stages"].items():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                raw = next(iter(entry)) if isinstance(entry, dict) else entry
                out.setdefault(name, []).append(TEMPLATE.sub(lambda m: str(_lookup(params, m.group(1))), raw))
    return out


def test_there_is_an_example_domain():
    assert [d.name for d in DOMAINS] == ["methods"]


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_a_domain_copies_dvc_yaml_and_names_every_key_of_params(domain):
    assert (domain / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text(), (
        f"{domain}/dvc.yaml differs from dvc.yaml: copy it again (cp dvc.yaml {domain.relative_to(ROOT)}/)")
    root = yaml.safe_load((ROOT / "params.yaml").read_text())
    mine = yaml.safe_load((domain / "params.yaml").read_text())
    assert _keys(mine) == _keys(root), "keys only in one of the two params files: " + ", ".join(
        sorted(_keys(mine) ^ _keys(root)))
    rel = domain.relative_to(ROOT).as_posix()
    assert mine["domain"]["params"] == f"{rel}/params.yaml"
    assert (domain / mine["domain"]["wdir"]).resolve() == ROOT


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_a_domain_writes_only_inside_its_folder(domain):
    rel = domain.relative_to(ROOT).as_posix()
    params = yaml.safe_load((domain / "params.yaml").read_text())
    root_paths = {p for ps in declared_paths(ROOT / "dvc.yaml", yaml.safe_load((ROOT / "params.yaml").read_text()))
                  .values() for p in ps}
    for stage, paths in declared_paths(domain / "dvc.yaml", params).items():
        for p in paths:
            assert p.startswith(f"{rel}/"), f"{stage} writes {p}, outside {rel}/"
            assert p not in root_paths
    for section in ("extract", "review", "importer"):  # the flows that are not DVC stages
        for key, value in params[section].items():
            if isinstance(value, str) and "/" in value:
                assert value.startswith(f"{rel}/"), f"{section}.{key} = {value} is not this domain's"


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


@pytest.mark.slow
def test_dvc_repro_builds_the_example_domain_apart(tmp_path, hard_pdfs, prefect_server):
    """The real `dvc repro domains/methods/dvc.yaml` in a fresh git+DVC copy of the project."""
    repo = tmp_path / "relmine"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("data/papers", "data/gazetteers", "reports/", "tests/", ".dvc/",
                                                 "domains/methods/reports/", "domains/methods/dvc.lock")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    pp = repo / "domains" / "methods" / "params.yaml"
    params = yaml.safe_load(pp.read_text())
    params["mine"]["papers_dir"] = str(hard_pdfs)
    params["mine"]["papers"] = ["bravo2015_*.pdf"]
    params["train"].update(epochs=1, max_length=64, patience=1)
    params["evaluate"]["bootstrap"] = 20
    params["augment"]["backend"] = "none"
    pp.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["git", "init", "-q"], dvc + ["init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        _run(cmd, repo, env)
    out = _run(dvc + ["repro", "domains/methods/dvc.yaml"], repo, env)
    assert re.findall(r"Running stage '([^']+)'", out) == [
        f"domains/methods/dvc.yaml:{s}" for s in
        ("mine", "entities", "relations", "split", "augment", "train", "calibrate", "evaluate")]
    for stage, paths in declared_paths(repo / "domains/methods/dvc.yaml", params).items():
        for p in paths:
            assert (repo / p).exists(), f"{stage}: {p} missing"
    annotation = json.loads((repo / "domains/methods/reports/annotation.json").read_text())
    assert annotation["candidates_per_class"].get("trained_on", 0) > 0  # the domain's own rules fired
    assert not (repo / "reports").exists() and not (repo / "data" / "mined").exists()  # the default's untouched
    assert "domains/methods/reports/metrics.json" in _run(dvc + ["metrics", "show", "--json"], repo, env)
    assert "up to date" in _run(dvc + ["status", "domains/methods/dvc.yaml"], repo, env)

"""End to end: the real `dvc repro` on two papers with tiny params, in a temporary git+DVC repo.

Checks every declared output, that a second repro runs nothing, and that DVC reruns only what an
edit affects (relation patterns -> relations and after; a train param -> train, calibrate, evaluate).
"""
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
PAPERS = ["babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf", "bergstrom2000_Episodes_SandbianGSSP.pdf"]
STAGES = ["mine", "entities", "knowledge", "relations", "split", "augment", "train", "calibrate", "evaluate"]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def tiny_params(params: dict) -> dict:
    params["train"].update(epochs=1, max_train_examples=96, batch_size=16, max_length=64, patience=1)
    params["evaluate"]["bootstrap"] = 50
    if not shutil.which("apertium"):
        params["augment"]["backend"] = "none"
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory, sample_papers, prefect_server):
    """A copy of the project's tracked files with two papers, as a fresh git+DVC repo, reproduced once."""
    repo = tmp_path_factory.mktemp("relmine-e2e")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        # .dvc/ is made by `dvc init` below (it refuses an existing one)
        if src.is_file() and not rel.startswith(("data/papers", "data/gazetteers", "reports/", "tests/", ".dvc/")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    (repo / "data" / "papers").mkdir(parents=True)
    for name in PAPERS:
        shutil.copy2(sample_papers / name, repo / "data" / "papers" / name)
    shutil.copytree(ROOT / "data" / "gazetteers", repo / "data" / "gazetteers")
    params_path = repo / "params.yaml"
    params_path.write_text(yaml.safe_dump(tiny_params(yaml.safe_load(params_path.read_text())), sort_keys=False))

    env = {**os.environ, "PREFECT_API_URL": prefect_server,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["git", "init", "-q"], dvc + ["init", "-q"], dvc + ["add", "-q", "data/papers", "data/gazetteers"],
                ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        _run(cmd, repo, env)
    out = _run(dvc + ["repro"], repo, env)
    return repo, env, dvc, out


def test_first_repro_runs_every_stage_and_writes_every_declared_output(project):
    repo, env, dvc, out = project
    ran = ran_stages(out)  # knowledge and mine/entities are independent: DVC may run them in either order
    assert sorted(ran) == sorted(STAGES) and ran[-6:] == STAGES[-6:]
    assert sorted(p.stem for p in (repo / "data" / "mined").glob("*.jsonl")) == sorted(Path(p).stem for p in PAPERS)
    for split in ("train", "dev", "test"):
        assert (repo / "data" / "split" / f"{split}.jsonl").exists()
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    for name, stage in spec["stages"].items():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path = repo / (next(iter(entry)) if isinstance(entry, dict) else entry)
                assert path.exists(), f"stage {name}: declared {kind} {path.name} missing"
                if path.suffix == ".json":
                    json.loads(path.read_text())  # well-formed
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert (repo / "reports" / "confusion.png").stat().st_size > 1000
    shown = _run(dvc + ["metrics", "show", "--json"], repo, env)
    assert "reports/metrics.json" in shown


def test_second_repro_runs_nothing(project):
    repo, env, dvc, _ = project
    out = _run(dvc + ["repro"], repo, env)
    assert ran_stages(out) == []
    assert "up to date" in _run(dvc + ["status"], repo, env)


def test_editing_relation_patterns_reruns_relations_and_after_but_not_mining_or_entities(project):
    repo, env, dvc, _ = project
    patterns = repo / "data" / "patterns" / "relations.yaml"
    patterns.write_text(patterns.read_text() + "\n# curator note: edited by the end-to-end test\n")
    status = json.loads(_run(dvc + ["status", "--json"], repo, env))
    assert "relations" in status
    assert "mine" not in status and "entities" not in status
    out = _run(dvc + ["repro"], repo, env)
    ran = ran_stages(out)
    assert ran[0] == "relations" and "mine" not in ran and "entities" not in ran
    # relations reran, but from a comment-only change its output is identical: DVC stops there
    assert "Stage 'split' didn't change" in out or "split" in ran


def test_editing_a_train_param_reruns_only_training_and_after(project):
    repo, env, dvc, _ = project
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"]["lr"] = params["train"]["lr"] * 2
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(dvc + ["repro"], repo, env)
    assert ran_stages(out) == ["train", "calibrate", "evaluate"]

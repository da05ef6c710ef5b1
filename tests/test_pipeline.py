"""End to end: the real `dvc repro` on two papers with tiny params, in a temporary git+DVC repo.

Checks every declared output, that a second repro runs nothing, and that DVC reruns only what an
edit affects (a comment in the relation patterns -> the stages that read the file, and not those
that only see relations' unchanged output; a train param -> train, calibrate, evaluate).
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

from pipeline_helpers import ran_stages, run_cmd as _run, stage_paths

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ["babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf", "bergstrom2000_Episodes_SandbianGSSP.pdf"]
STAGES = ["mine", "entities", "knowledge", "relations", "split", "augment", "train", "calibrate", "evaluate"]

pytestmark = pytest.mark.slow


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
        # a domain's lock and reports are what its own repro makes: left out like the root's
        if src.is_file() and not rel.startswith(("data/papers", "data/gazetteers", "reports/", "tests/", ".dvc/")) \
                and not re.match(r"domains/[^/]+/(dvc\.lock|reports/|dvclive/)", rel):
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
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for name, paths in stage_paths(repo / "dvc.yaml", params).items():
        for rel in paths:
            path = repo / rel
            assert path.exists(), f"stage {name}: declared output {rel} missing"
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
    assert "up to date" in _run(dvc + ["status", "dvc.yaml"], repo, env)


def test_execution_settings_rerun_nothing(project):
    """`run` says how flows execute (workers, Dask), not what they make: no stage depends on it."""
    repo, env, dvc, _ = project
    params_path = repo / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["run"]["max_workers"] += 1
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert "up to date" in _run(dvc + ["status", "dvc.yaml"], repo, env)
    finally:
        params_path.write_text(original)


def _lock_outs(repo: Path, stage: str) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]
    return {o["path"]: o["md5"] for o in lock["outs"]}


def test_a_comment_in_relation_patterns_reruns_only_the_stages_reading_it(project):
    repo, env, dvc, _ = project
    before = _lock_outs(repo, "relations")
    patterns = repo / "data" / "patterns" / "relations.yaml"
    patterns.write_text(patterns.read_text() + "\n# curator note: edited by the end-to-end test\n")
    status = json.loads(_run(dvc + ["status", "dvc.yaml", "--json"], repo, env))
    assert "relations" in status
    assert "mine" not in status and "entities" not in status
    out = _run(dvc + ["repro"], repo, env)
    # the stages that read the file rerun (relations; calibrate and evaluate for the type
    # constraints); from a comment-only change relations writes the same bytes, so split, augment
    # and train, which only see its output, are up to date
    deps = stage_paths(repo / "dvc.yaml", yaml.safe_load((repo / "params.yaml").read_text()), ("deps",))
    readers = [s for s in STAGES if "data/patterns/relations.yaml" in deps[s]]
    assert readers[0] == "relations" and "augment" not in readers and "train" not in readers
    assert ran_stages(out) == readers
    assert _lock_outs(repo, "relations")["data/relations"] == before["data/relations"]


def test_editing_a_train_param_reruns_only_training_and_after(project):
    repo, env, dvc, _ = project
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"]["lr"] = params["train"]["lr"] * 2
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(dvc + ["repro"], repo, env)
    assert ran_stages(out) == ["train", "calibrate", "evaluate"]


def test_a_second_domain_builds_apart_from_the_default(project, hard_pdfs):
    """domains/methods through `dvc repro domains/methods/dvc.yaml`, next to the default domain:
    its own outputs and reports, and the default's stay up to date and untouched."""
    repo, env, dvc, _ = project
    pp = repo / "domains" / "methods" / "params.yaml"
    params = yaml.safe_load(pp.read_text())
    params["mine"]["papers_dir"] = str(hard_pdfs)
    params["mine"]["papers"] = ["bravo2015_*.pdf"]
    params["train"].update(epochs=1, max_length=64, patience=1)
    params["evaluate"]["bootstrap"] = 20
    params["augment"]["backend"] = "none"
    pp.write_text(yaml.safe_dump(params, sort_keys=False))
    default_metrics = (repo / "reports" / "metrics.json").read_bytes()
    out = _run(dvc + ["repro", "domains/methods/dvc.yaml"], repo, env)
    ran = ran_stages(out)  # knowledge and mine/entities are independent: DVC may run them in either order
    want = [f"domains/methods/dvc.yaml:{s}" for s in STAGES]
    assert sorted(ran) == sorted(want) and ran[-6:] == want[-6:]
    for stage, paths in stage_paths(repo / "domains/methods/dvc.yaml", params).items():
        for rel in paths:
            assert rel.startswith("domains/methods/") and (repo / rel).exists(), f"{stage}: {rel}"
    annotation = json.loads((repo / "domains/methods/reports/annotation.json").read_text())
    assert annotation["candidates_per_class"].get("trained_on", 0) > 0  # the domain's own rules fired
    assert (repo / "reports" / "metrics.json").read_bytes() == default_metrics
    assert "up to date" in _run(dvc + ["status", "dvc.yaml"], repo, env)  # the default domain
    assert "up to date" in _run(dvc + ["status", "domains/methods/dvc.yaml"], repo, env)
    shown = _run(dvc + ["metrics", "show", "--json"], repo, env)
    assert "domains/methods/reports/metrics.json" in shown and "reports/metrics.json" in shown

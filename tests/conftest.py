"""Shared fixtures: paths to ../shared data (skipped with a reason when absent) and a
real local Prefect server for the tests that run flows."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RELMINE_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs the third-party data in ../shared (RELMINE_SHARED moves it)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def hard_pdfs(shared_dir) -> Path:
    return _need(shared_dir / "corpus" / "hard")


@pytest.fixture(scope="session")
def gold_dir(shared_dir) -> Path:
    return _need(shared_dir / "gold")


@pytest.fixture(scope="session")
def sample_papers() -> Path:
    """The DVC-tracked sample corpus (data/papers), pulled from ../shared/dvc-remote."""
    papers = ROOT / "data" / "papers"
    if not any(papers.glob("*.pdf")):
        _need(SHARED / "dvc-remote")
        import subprocess

        subprocess.run([sys.executable, "-m", "dvc", "pull", "-q", "data/papers.dvc", "data/gazetteers.dvc"],
                       cwd=ROOT, check=True)
    return papers


@pytest.fixture(scope="session")
def gazetteers(sample_papers) -> Path:
    return ROOT / "data" / "gazetteers"


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One real Prefect server on 127.0.0.1 for the whole session (own PREFECT_HOME)."""
    from flows.server import start_server, stop_pid

    home = tmp_path_factory.mktemp("prefect-home")
    proc, url = start_server(home=home)
    old = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    os.environ["PREFECT_API_URL"] = url
    os.environ["PREFECT_HOME"] = str(home)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        # env for subprocesses (dvc repro, python -m flows.x); settings for this process,
        # where prefect may already have read its environment at import
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
            # send the logs Prefect still holds before the server goes away
            from prefect.logging.handlers import APILogHandler

            APILogHandler().flush()
    finally:
        stop_pid(proc.pid)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

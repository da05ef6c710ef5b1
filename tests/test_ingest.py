"""Ingest: checks on inbox files, safe names, nothing lost, restore after a failed repro (a fake
one-stage pipeline in a temporary git+DVC repo), commit + push to a local DVC remote; and the
end-to-end run of the served deployment on a real Prefect server with the real pipeline."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.ingest import ingest
from stages.ingest import SNAPSHOT_DIR, InboxLock, IngestError, Snapshot, check_file, inside, recover, safe_name

ROOT = Path(__file__).resolve().parents[1]
BASE_PAPER = "bergstrom2000_Episodes_SandbianGSSP.pdf"  # small sample paper: the corpus we start from
NEW_PAPER = "ammar2018_NAACL_LiteratureGraph_CC-BY-4.0.pdf"  # from ../shared/corpus/hard
BIG_PAPER = "bravo2015_BMCBioinformatics_GADcorpus_CC-BY-4.0.pdf"  # 1.8 MB: over a 1 MB limit
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}

# fake `mine`: one Sentence per paper, and as chatty as the real stages (more lines than the
# 40 of output an ingest run keeps); RELMINE_FAKE_FAIL makes it fail after touching reports/
FAKE_MINE = """
import hashlib, json, os, pathlib, sys
papers = sorted(pathlib.Path("data/papers").glob("*.pdf"))
for i in range(60):
    print(f"fake mine: progress line {i}", flush=True)
pathlib.Path("reports/mine.json").write_text(json.dumps({"papers": len(papers)}))
if os.environ.get("RELMINE_FAKE_FAIL"):
    pathlib.Path("reports/partial.txt").write_text("half-written")
    sys.exit("fake stage failure")
out = pathlib.Path("data/mined"); out.mkdir(parents=True, exist_ok=True)
for p in papers:
    rec = {"doc_id": p.stem, "sent_id": 0, "page": 1, "section": "body",
           "text": hashlib.sha256(p.read_bytes()).hexdigest(), "kind": "body"}
    (out / f"{p.stem}.jsonl").write_text(json.dumps(rec) + "\\n")
"""
FAKE_DVC_YAML = """stages:
  mine:
    cmd: python fake_mine.py
    deps: [data/papers, fake_mine.py]
    params: [mine]
    outs: [data/mined]
    metrics:
      - reports/mine.json: {cache: false}
"""


def _env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env or _env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


DVC = [sys.executable, "-m", "dvc"]


def encrypted_copy(pdf: Path, dest: Path) -> Path:
    """``pdf`` locked with a user password, as a password-protected save leaves it: a Standard
    security handler (/Encrypt in the trailer) appended as an incremental update. Readers ask
    for a password they cannot guess; the signature checks still pass."""
    src = pdf.read_bytes().rstrip() + b"\n"
    prev = int(re.findall(rb"startxref\s+(\d+)", src)[-1])
    obj = max(int(x) for x in re.findall(rb"/Size\s+(\d+)", src))
    root = re.findall(rb"/Root\s+(\d+ \d+ R)", src)[-1].decode()
    file_id = hashlib.md5(src).hexdigest()
    enc = (
        f"{obj} 0 obj\n<< /Filter /Standard /V 1 /R 2 /Length 40 /P -44 /O <{hashlib.sha256(b'o').hexdigest()}> "
        f"/U <{hashlib.sha256(b'u').hexdigest()}> >>\nendobj\n"
    ).encode()
    xref = f"xref\n{obj} 1\n{len(src):010d} 00000 n \n".encode()
    trailer = (
        f"trailer\n<< /Size {obj + 1} /Root {root} /Prev {prev} /Encrypt {obj} 0 R /ID [<{file_id}> <{file_id}>] >>\n"
        f"startxref\n{len(src) + len(enc)}\n%%EOF\n"
    ).encode()
    dest.write_bytes(src + enc + xref + trailer)
    return dest


def _snapshot(repo: Path) -> dict[str, bytes]:
    """Contents of everything a failed run must leave as it was."""
    paths = [
        *sorted((repo / "data" / "papers").iterdir()),
        repo / "data" / "papers.dvc",
        repo / "dvc.lock",
        *sorted((repo / "reports").rglob("*")),
    ]
    return {str(p.relative_to(repo)): p.read_bytes() for p in paths if p.is_file()}


# ---------------------------------------------------------------- plain checks


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("../../etc/evil.pdf", "evil.pdf"),
        ("..\\..\\windows\\evil.PDF", "evil.pdf"),
        ("-rf --force.pdf", "rf_--force.pdf"),  # no leading dash: never an option to git/dvc
        (".hidden.pdf", "hidden.pdf"),
        ("Müller et al. (2020).pdf", "Muller_et_al._2020.pdf"),
        ("..", "paper.pdf"),
        ("paper", "paper.pdf"),
    ],
)
def test_safe_name_keeps_only_a_plain_base_name(raw, expected, tmp_path):
    name = safe_name(raw)
    assert name == expected
    assert inside(tmp_path / name, tmp_path)


def test_safe_name_renames_on_collision_with_the_content_hash():
    assert safe_name("a.pdf", {"a.pdf"}, "0123456789abcdef") == "a-0123456789.pdf"


def test_check_file_signature_size_truncation_and_links(tmp_path, hard_pdfs):
    good = hard_pdfs / NEW_PAPER
    assert check_file(good, 10**8) is None
    assert "over the limit" in check_file(good, 1000)
    html = tmp_path / "page.pdf"
    html.write_bytes(b"<!DOCTYPE html><html>...</html>")
    assert "not a PDF" in check_file(html, 10**8)
    empty = tmp_path / "empty.pdf"
    empty.touch()
    assert "empty" in check_file(empty, 10**8)
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "truncated" in check_file(cut, 10**8)
    link = tmp_path / "link.pdf"
    link.symlink_to(good)
    assert "symbolic link" in check_file(link, 10**8)
    locked = encrypted_copy(good, tmp_path / "locked.pdf")
    assert "encrypted PDF (password-protected): mine cannot read it; fix: save an unprotected copy" in check_file(
        locked, 10**8
    )


def test_every_sample_and_hard_pdf_passes_the_checks(sample_papers, hard_pdfs):
    pdfs = [*sample_papers.glob("*.pdf"), *hard_pdfs.glob("*.pdf")]
    assert len(pdfs) >= 20
    assert {p.name: check_file(p, 10**8) for p in pdfs} == {p.name: None for p in pdfs}


def test_inbox_lock_refuses_a_second_run_and_clears_a_stale_one(tmp_path):
    with InboxLock(tmp_path), pytest.raises(IngestError, match="another ingest run"), InboxLock(tmp_path):
        pass
    (tmp_path / ".ingest.lock").write_text("999999999")  # a pid that can't be alive
    with InboxLock(tmp_path):
        assert (tmp_path / ".ingest.lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".ingest.lock").exists()


# ---------------------------------------------------------------- the flow on a fake pipeline


@pytest.fixture(scope="module")
def fake_repo_template(tmp_path_factory, sample_papers) -> Path:
    """git+DVC repo: one paper in data/papers (tracked as data/papers.dvc), a fake `mine`, a local
    DVC remote (relative, so copies stay self-contained), reproduced and committed; an inbox."""
    base = tmp_path_factory.mktemp("ingest-template")
    repo = base / "repo"
    (repo / "data" / "papers").mkdir(parents=True)
    (repo / "reports").mkdir()
    shutil.copy2(sample_papers / BASE_PAPER, repo / "data" / "papers" / BASE_PAPER)
    (repo / "fake_mine.py").write_text(FAKE_MINE)
    (repo / "dvc.yaml").write_text(FAKE_DVC_YAML)
    (repo / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "mine": {"min_sentence_chars": 20},
                "ingest": {"inbox": "../inbox", "max_size_mb": 1.0, "min_age_s": 0.0},
            }
        )
    )
    _run(["git", "init", "-q"], repo)
    _run(DVC + ["init", "-q"], repo)
    _run(DVC + ["remote", "add", "-d", "local", "../../remote"], repo)  # relative to .dvc/
    _run(DVC + ["add", "-q", "data/papers"], repo)
    _run(DVC + ["repro", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "init"], repo)
    (base / "inbox").mkdir()
    return base


@pytest.fixture
def fake_repo(fake_repo_template, tmp_path) -> Path:
    """A fresh copy of the template for each test (setting one up costs several dvc calls)."""
    shutil.copytree(fake_repo_template, tmp_path / "t", symlinks=True)
    return tmp_path / "t" / "repo"


def test_ingest_accepts_good_papers_rejects_the_rest_and_commits_and_pushes(
    fake_repo, hard_pdfs, prefect_server, monkeypatch
):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    inbox = fake_repo.parent / "inbox"
    new = hard_pdfs / NEW_PAPER
    shutil.copy2(new, inbox / "up\\..\\..\\evil name.pdf")  # a traversal-looking name: becomes evil_name.pdf
    shutil.copy2(new, inbox / "zz-copy-of-the-same.pdf")  # duplicate within the batch
    shutil.copy2(fake_repo / "data" / "papers" / BASE_PAPER, inbox / "renamed.pdf")  # duplicate of the corpus
    shutil.copy2(hard_pdfs / BIG_PAPER, inbox / BIG_PAPER)  # over max_size_mb = 1.0
    (inbox / "notes.pdf").write_text("not a pdf at all")
    (inbox / "link.pdf").symlink_to(new)
    (inbox / ".partial-upload.pdf").write_bytes(new.read_bytes()[:100])  # hidden: left alone
    encrypted_copy(hard_pdfs / "webb2017_PeerJCS_VESPA_CC-BY-4.0.pdf", inbox / "locked.pdf")
    (inbox / "batch2").mkdir()  # not taken, but reported
    shutil.copy2(hard_pdfs / "cohan2020_ACL_SPECTER_CC-BY-4.0.pdf", inbox / "batch2" / "nested.pdf")
    old_pointer = (fake_repo / "data" / "papers.dvc").read_text()
    head = _run(["git", "rev-parse", "HEAD"], fake_repo).strip()

    summary = ingest(repo=str(fake_repo), commit=True, push=True)

    assert summary["accepted"] == ["evil_name.pdf"]
    assert sorted(summary["rejected"]) == sorted(
        [BIG_PAPER, "zz-copy-of-the-same.pdf", "link.pdf", "notes.pdf", "renamed.pdf", "locked.pdf"]
    )
    # the stages that ran, though the stage printed more lines than the run keeps
    assert summary["stages"] == ["mine"] and summary["published"] == ["commit", "push"]
    assert summary["in_subfolders"] == ["batch2/nested.pdf"] and (inbox / "batch2" / "nested.pdf").exists()
    # the corpus got exactly the new paper, under its safe name; nothing was written outside it
    assert sorted(p.name for p in (fake_repo / "data" / "papers").iterdir()) == [BASE_PAPER, "evil_name.pdf"]
    assert (fake_repo / "data" / "papers" / "evil_name.pdf").read_bytes() == new.read_bytes()
    evil = sorted(str(p.relative_to(fake_repo.parent)) for p in fake_repo.parent.rglob("*evil*.pdf"))
    assert evil == ["inbox/processed/up\\..\\..\\evil name.pdf", "repo/data/papers/evil_name.pdf"]
    assert (fake_repo / "data" / "papers.dvc").read_text() != old_pointer
    # the pipeline ran on it
    rec = json.loads((fake_repo / "data" / "mined" / "evil_name.jsonl").read_text())
    assert rec["doc_id"] == "evil_name"
    # inbox: processed / failed with reasons, the hidden partial upload untouched
    assert [p.name for p in (inbox / "processed").iterdir()] == ["up\\..\\..\\evil name.pdf"]
    reasons = {
        p.name.removesuffix(".reason.txt"): p.read_text() for p in (inbox / "failed").glob("*.reason.txt")
    }
    assert (
        "duplicate" in reasons["zz-copy-of-the-same.pdf"]
        and "evil_name.pdf" in reasons["zz-copy-of-the-same.pdf"]
    )
    assert "duplicate" in reasons["renamed.pdf"] and BASE_PAPER in reasons["renamed.pdf"]
    assert "over the limit" in reasons[BIG_PAPER] and "max_size_mb" in reasons[BIG_PAPER]
    assert "not a PDF" in reasons["notes.pdf"]
    assert "symbolic link" in reasons["link.pdf"]
    assert "encrypted PDF" in reasons["locked.pdf"]
    assert sorted(p.name for p in inbox.iterdir()) == [".partial-upload.pdf", "batch2", "failed", "processed"]
    # the report: metrics diff against the previous commit, naming the new paper
    diff = (fake_repo / "reports" / "diff.md").read_text()
    assert "evil_name.pdf" in diff and "reports/mine.json" in diff and "papers" in diff
    # committed on top of the previous HEAD, with the pointer, the lock and the reports
    assert _run(["git", "rev-parse", "HEAD~1"], fake_repo).strip() == head
    changed = _run(["git", "show", "--name-only", "--format=", "HEAD"], fake_repo).split()
    assert {"data/papers.dvc", "dvc.lock", "reports/diff.md", "reports/mine.json"} <= set(changed)
    assert not _run(["git", "status", "--porcelain", "data", "reports", "dvc.lock"], fake_repo).strip()
    # pushed: the local remote now has every file of the corpus (status against the remote is clean)
    status = json.loads(_run(DVC + ["status", "--cloud", "--json"], fake_repo) or "{}")
    assert status == {}


def test_failed_repro_restores_corpus_and_reports_and_moves_the_paper_to_failed(
    fake_repo, hard_pdfs, prefect_server, monkeypatch
):
    inbox = fake_repo.parent / "inbox"
    shutil.copy2(hard_pdfs / NEW_PAPER, inbox / NEW_PAPER)
    (fake_repo / "reports" / "diff.md").write_text("the last good report\n")
    _run(DVC + ["config", "core.autostage", "true"], fake_repo)  # as in the project: dvc add stages in git
    _run(["git", "commit", "-qam", "autostage"], fake_repo)
    before = _snapshot(fake_repo)
    monkeypatch.setenv("RELMINE_FAKE_FAIL", "1")

    with pytest.raises(IngestError, match="dvc repro"):
        ingest(repo=str(fake_repo))

    assert _snapshot(fake_repo) == before  # corpus, pointer, lock, reports: byte for byte
    assert not (fake_repo / "reports" / "partial.txt").exists()
    assert not (inbox / NEW_PAPER).exists() and not (inbox / "processed").exists()
    assert (inbox / "failed" / NEW_PAPER).read_bytes() == (hard_pdfs / NEW_PAPER).read_bytes()
    reason = (inbox / "failed" / f"{NEW_PAPER}.reason.txt").read_text()
    assert "fake stage failure" in reason and "restored" in reason
    # the git index holds the restored pointer again, and the workspace matches pointer and lock
    assert not _run(["git", "diff", "--cached", "--name-only"], fake_repo).strip()
    monkeypatch.delenv("RELMINE_FAKE_FAIL")
    assert "up to date" in _run(DVC + ["status"], fake_repo)


def test_a_file_swapped_for_a_link_after_its_check_is_not_copied(fake_repo, hard_pdfs, prefect_server, monkeypatch):
    """Between the check and the copy (here: while the snapshot is taken) one inbox paper is
    replaced by a link to another file and another one's content is changed: neither is copied."""
    import flows.ingest as ingest_mod

    inbox = fake_repo.parent / "inbox"
    for name in ("swapped.pdf", "changed.pdf", "kept.pdf"):
        shutil.copy2(hard_pdfs / NEW_PAPER, inbox / name)
        if name != "kept.pdf":  # three distinct papers: none a duplicate of another
            with open(inbox / name, "ab") as fh:
                fh.write(f"% {name}\n".encode())
    secret = fake_repo.parent / "secret.pdf"
    shutil.copy2(hard_pdfs / "webb2017_PeerJCS_VESPA_CC-BY-4.0.pdf", secret)
    take = ingest_mod.Snapshot.take

    def take_then_swap(*args, **kwargs):
        snap = take(*args, **kwargs)
        (inbox / "swapped.pdf").unlink()
        (inbox / "swapped.pdf").symlink_to(secret)
        with open(inbox / "changed.pdf", "ab") as fh:
            fh.write(b"% appended after the check\n")
        return snap

    monkeypatch.setattr(ingest_mod.Snapshot, "take", take_then_swap)
    summary = ingest(repo=str(fake_repo))
    assert summary["accepted"] == ["kept.pdf"] and sorted(summary["rejected"]) == ["changed.pdf", "swapped.pdf"]
    papers = fake_repo / "data" / "papers"
    assert sorted(p.name for p in papers.iterdir()) == [BASE_PAPER, "kept.pdf"]
    assert all(p.read_bytes() != secret.read_bytes() for p in papers.iterdir())
    reasons = {p.name: p.read_text() for p in (inbox / "failed").glob("*.reason.txt")}
    assert "changed after its check" in reasons["swapped.pdf.reason.txt"]
    assert "other content" in reasons["changed.pdf.reason.txt"]


def test_a_run_killed_half_way_is_rolled_back_by_the_next_one(fake_repo, hard_pdfs, prefect_server):
    """A SIGKILL after the snapshot, the copy and `dvc add`: the next run first restores the
    corpus and reports; the paper, still in the inbox, then goes through."""
    inbox = fake_repo.parent / "inbox"
    shutil.copy2(hard_pdfs / NEW_PAPER, inbox / NEW_PAPER)
    before = _snapshot(fake_repo)
    papers = fake_repo / "data" / "papers"
    Snapshot.take(
        inbox / SNAPSHOT_DIR,
        [fake_repo / "data" / "papers.dvc", fake_repo / "dvc.lock"],
        fake_repo / "reports",
        papers,
        [NEW_PAPER],
    )
    shutil.copy2(hard_pdfs / NEW_PAPER, papers / NEW_PAPER)
    _run(DVC + ["add", "-q", "data/papers"], fake_repo)
    (fake_repo / "reports" / "mine.json").write_text('{"papers": "half-written"}')
    assert _snapshot(fake_repo) != before

    recover(fake_repo, inbox / SNAPSHOT_DIR, logging.getLogger("test"))  # what the next run does first
    assert _snapshot(fake_repo) == before
    assert not (inbox / SNAPSHOT_DIR).exists()
    assert "up to date" in _run(DVC + ["status"], fake_repo)
    # the paper is still in the inbox, and now goes through (not rejected as a duplicate of itself)
    summary = ingest(repo=str(fake_repo))
    assert summary["accepted"] == [NEW_PAPER] and (inbox / "processed" / NEW_PAPER).exists()
    assert json.loads((fake_repo / "reports" / "mine.json").read_text()) == {"papers": 2}


def test_an_empty_inbox_runs_nothing(fake_repo, prefect_server):
    lock = (fake_repo / "dvc.lock").read_text()
    summary = ingest(repo=str(fake_repo))
    assert summary["accepted"] == [] and summary["stages"] == []
    assert (fake_repo / "dvc.lock").read_text() == lock and not (fake_repo / "reports" / "diff.md").exists()


# ---------------------------------------------------------------- served deployment, real pipeline


def _tiny_params(params: dict, inbox: Path) -> dict:
    params["train"].update(epochs=1, max_train_examples=64, batch_size=16, max_length=64, patience=1)
    params["evaluate"]["bootstrap"] = 20
    if not shutil.which("apertium"):
        params["augment"]["backend"] = "none"
    # the whole pipeline is covered by test_pipeline.py; here up to relations is enough to see
    # the new paper mined and annotated, and saves minutes of training
    params["ingest"].update(inbox=str(inbox), min_age_s=0.0, repro_targets=["relations"])
    return params


def _wait_for_deployment(
    name: str, env: dict[str, str], cwd: Path, proc: subprocess.Popen, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the serve process exited early"
        out = subprocess.run(
            [sys.executable, "-m", "prefect", "deployment", "ls"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
        if name in out:
            return
        time.sleep(1)
    raise AssertionError(f"deployment {name} not registered within {timeout} s")


@pytest.mark.slow
def test_served_deployment_ingests_a_hard_paper_through_the_real_pipeline(
    tmp_path, sample_papers, hard_pdfs, prefect_server
):
    repo, inbox = tmp_path / "project", tmp_path / "inbox"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file() and not rel.startswith(
            ("data/papers", "data/gazetteers", "reports/", "tests/", "benchmarks/", ".dvc/", "inbox/")
        ):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    for pointer in ("data/papers.dvc", "data/gazetteers.dvc"):
        (repo / pointer).unlink(missing_ok=True)
    (repo / "data" / "papers").mkdir(parents=True)
    shutil.copy2(sample_papers / BASE_PAPER, repo / "data" / "papers" / BASE_PAPER)
    shutil.copy2(sample_papers / "babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf", repo / "data" / "papers")
    shutil.copytree(ROOT / "data" / "gazetteers", repo / "data" / "gazetteers")
    (repo / "reports").mkdir(exist_ok=True)
    params_path = repo / "params.yaml"
    params_path.write_text(
        yaml.safe_dump(_tiny_params(yaml.safe_load(params_path.read_text()), inbox), sort_keys=False)
    )
    targets = yaml.safe_load(params_path.read_text())["ingest"]["repro_targets"]
    env = {
        **_env(),
        "PREFECT_API_URL": prefect_server,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(repo),
    }
    for cmd in (
        ["git", "init", "-q"],
        DVC + ["init", "-q"],
        DVC + ["add", "-q", "data/papers", "data/gazetteers"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        _run(cmd, repo, env)
    inbox.mkdir()
    shutil.copy2(hard_pdfs / NEW_PAPER, inbox / NEW_PAPER)

    name = f"ingest-test-{os.getpid()}"
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.ingest", "serve", "--name", name, "--cron", "0 0 1 1 *"],
        cwd=repo,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_deployment(name, env, repo, serve, timeout=120)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "prefect",
                "deployment",
                "run",
                f"ingest/{name}",
                "--watch",
                "--watch-timeout",
                "1200",
            ],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0 and "Completed" in run.stdout, (
            run.stdout[-3000:] + run.stderr[-3000:] + (tmp_path / "serve.log").read_text()[-6000:]
        )
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
        log.close()

    doc_id = Path(NEW_PAPER).stem
    mined = [
        json.loads(line) for line in (repo / "data" / "mined" / f"{doc_id}.jsonl").read_text().splitlines()
    ]
    assert len(mined) > 20 and {r["doc_id"] for r in mined} == {doc_id}
    assert all({"sent_id", "page", "section", "text"} <= r.keys() for r in mined)
    assert any("citation" in r["text"].lower() or "graph" in r["text"].lower() for r in mined)
    assert (repo / "reports" / "diff.md").exists() and NEW_PAPER in (repo / "reports" / "diff.md").read_text()
    assert (inbox / "processed" / NEW_PAPER).exists() and not (inbox / NEW_PAPER).exists()
    if not targets:  # the whole pipeline ran: its metrics are there
        assert json.loads((repo / "reports" / "metrics.json").read_text())

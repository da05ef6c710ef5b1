"""Prefect flow ``ingest``: new PDFs from an inbox folder -> corpus -> ``dvc repro`` -> reports/diff.md.

    python -m flows.ingest run [--inbox DIR] [--commit] [--push]     # one run
    python -m flows.ingest serve [--cron "*/30 * * * *"] [--name N]   # a deployment on a cron schedule

Per inbox file: PDF signature (``%PDF-`` at byte 0, ``%%EOF`` near the end), size limit,
PDFium opens it (an encrypted, password-protected PDF passes the signature checks but
cannot be mined), duplicate by SHA-256 content hash against the corpus (and the other
files of the batch). Files are opened without following symbolic links, and a paper is
copied from an open descriptor and its hash compared with the checked one, so a file
swapped for a link or another file after its check is refused, not copied. PDFs in a
sub-folder of the inbox are not taken; each run reports them. Good
files are copied under a sanitised name into ``data/papers/`` (no path traversal: only the
base name survives, restricted to ``[A-Za-z0-9._-]``), then ``dvc add data/papers`` and
``dvc repro``; then ``reports/diff.md`` (metrics and params diff against the last commit, see
``flows.diff``); optionally ``git commit`` and ``dvc push``.

Nothing is lost: an inbox file moves to ``<inbox>/processed/`` only after its repro succeeded.
Rejected files and the files of a failed run move to ``<inbox>/failed/`` with
``<name>.reason.txt``. A failed ``dvc add``/``dvc repro`` restores ``data/papers``,
``data/papers.dvc``, ``dvc.lock`` and ``reports/`` as they were before the run (and
``dvc checkout`` puts the stage outputs back). That snapshot is kept in
``<inbox>/.ingest-snapshot/`` while a run works, so a run killed half-way is rolled back by the
next one, whose papers, still in the inbox, are then tried again.

Not a DVC stage (it drives DVC). Params: the ``ingest`` section of params.yaml.
"""

from __future__ import annotations

import argparse
import collections
import errno
import filecmp
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import PARAMS_FILE, load_params
from flows.diff import DiffError, metrics_markdown
from stages.errors import InputError
from stages.params import ParamsError
from stages.records import atomic_write_text

log = logging.getLogger("relmine.ingest")

PDF_MAGIC = b"%PDF-"
EOF_MARKER = b"%%EOF"
EOF_WINDOW = 4096  # %%EOF may be followed by whitespace or junk; look in the last 4 KiB
SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 120
SNAPSHOT_DIR = ".ingest-snapshot"  # hidden: never taken for a paper


@dataclass
class IngestParams:
    """``ingest`` section of params.yaml."""

    inbox: str = "inbox"  # relative to the project root, or absolute
    papers_dir: str = "data/papers"  # the DVC-tracked corpus (<papers_dir>.dvc)
    max_size_mb: float = 50.0
    min_age_s: float = 5.0  # younger files may still be being copied in: left for the next run
    repro_targets: list[str] = field(default_factory=list)  # empty: the whole pipeline
    reports_dir: str = "reports"  # restored as it was when a run fails
    diff_report: str = "reports/diff.md"
    diff_base: str = "HEAD"  # the previous commit (the result is committed after the diff)
    commit: bool = False  # git commit data/papers.dvc, dvc.lock and reports/
    push: bool = False  # dvc push to the default remote
    cron: str = "*/30 * * * *"  # schedule of the served deployment
    deployment: str = "relmine-ingest"

    def check(self) -> None:
        if self.max_size_mb <= 0:
            raise ValueError("max_size_mb must be > 0")
        if self.min_age_s < 0:
            raise ValueError("min_age_s must be >= 0")
        if len(self.cron.split()) != 5:
            raise ValueError(f"cron '{self.cron}' must have 5 fields, e.g. '*/30 * * * *'")


class IngestError(RuntimeError):
    """A run that failed after its checks (dvc add/repro, commit, push); the message says what to do."""


@dataclass
class Candidate:
    path: Path  # in the inbox
    name: str  # safe name in the corpus
    digest: str


# ---------------------------------------------------------------- checks (plain functions)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_name(name: str, taken: set[str] | None = None, digest: str = "") -> str:
    """A corpus file name from an untrusted inbox name: base name only, ASCII ``[A-Za-z0-9._-]``,
    no leading dot or dash (hidden files, option injection into dvc/git), ``.pdf`` suffix.
    A name already in ``taken`` gets the content hash appended (same name, other paper)."""
    base = re.split(r"[/\\]", name)[-1]  # drop any directory part, POSIX or Windows style
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"\.pdf$", "", base, flags=re.IGNORECASE)
    stem = SAFE_CHARS.sub("_", stem).strip("._-")[:MAX_STEM].rstrip("._-") or "paper"
    out = f"{stem}.pdf"
    if taken is not None and out in taken:
        out = f"{stem}-{(digest or hashlib.sha256(base.encode()).hexdigest())[:10]}.pdf"
    return out


def inside(path: Path, folder: Path) -> bool:
    return path.resolve().parent == folder.resolve()


def check_file(path: Path, max_bytes: int) -> str | None:
    """Why ``path`` can't be ingested, or None when it looks like a complete PDF."""
    if path.is_symlink():
        return "a symbolic link: copy the PDF itself into the inbox"
    if not path.is_file():
        return "not a regular file"
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes): the copy into the inbox may have failed; copy it again"
    if size > max_bytes:
        return (
            f"{size / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:.1f} MB: "
            "raise ingest.max_size_mb in params.yaml or split the file"
        )
    try:
        fh = open_nofollow(path)
    except OSError as exc:
        return f"cannot be opened as a regular file ({exc.strerror}): copy the PDF itself into the inbox"
    with fh:
        head = fh.read(len(PDF_MAGIC))
        fh.seek(max(0, size - EOF_WINDOW))
        tail = fh.read()
    if head != PDF_MAGIC:
        return f"not a PDF (starts with {head!r}, expected {PDF_MAGIC!r}): only PDF papers can be ingested"
    if EOF_MARKER not in tail:
        return (
            "truncated PDF (no %%EOF marker at the end): the download or copy was cut short; fetch it again"
        )
    return pdfium_refusal(path)


def open_nofollow(path: Path):
    """``path`` opened for reading, refusing a symbolic link (O_NOFOLLOW) or a non-regular file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def pdfium_refusal(path: Path) -> str | None:
    """Why PDFium (the engine of ``mine``) cannot open ``path``, or None."""
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            return (
                "encrypted PDF (password-protected): mine cannot read it; fix: save an unprotected copy "
                "(open it with the password and print/export to PDF) and put that in the inbox"
            )
        return f"PDFium cannot open it ({exc}): the file is damaged; fetch it again"
    try:
        if len(doc) == 0:
            return "PDF without pages: nothing to mine; fetch the paper again"
    finally:
        doc.close()
    return None


def corpus_digests(papers: Path) -> dict[str, str]:
    """SHA-256 -> name of every file already in the corpus."""
    if not papers.is_dir():
        return {}
    return {sha256(p): p.name for p in sorted(papers.iterdir()) if p.is_file()}


def nested_pdfs(inbox: Path) -> list[Path]:
    """PDFs in sub-folders of the inbox (not processed/, failed/ or hidden ones): not taken,
    since only the inbox's own files are, but reported so they are not forgotten there."""
    out = []
    for d in sorted(inbox.iterdir()):
        if d.is_dir() and not d.is_symlink() and not d.name.startswith(".") and d.name not in ("processed", "failed"):
            out += sorted(p for p in d.rglob("*") if p.suffix.lower() == ".pdf" and not p.is_dir())
    return out


def inbox_files(inbox: Path, min_age_s: float) -> list[Path]:
    """Files waiting in the inbox: not hidden (partial uploads, our lock), not the
    processed/ and failed/ folders, and old enough not to be still being written."""
    now = time.time()
    out = []
    for p in sorted(inbox.iterdir()):
        if p.name.startswith(".") or (p.is_dir() and not p.is_symlink()):
            continue
        try:
            if now - p.lstat().st_mtime < min_age_s:
                log.info(
                    "%s is %.1f s old (< ingest.min_age_s): left for the next run",
                    p.name,
                    now - p.lstat().st_mtime,
                )
                continue
        except FileNotFoundError:
            continue
        out.append(p)
    return out


def _free_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name`` with a counter when an earlier run left one there."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    n = 1
    while dest.exists() or dest.is_symlink():
        stem, dot, ext = name.partition(".")
        dest = folder / f"{stem}.{n}{dot}{ext}"
        n += 1
    return dest


def move_to(path: Path, folder: Path) -> Path:
    dest = _free_path(folder, path.name)
    os.replace(path, dest)  # same file system (a sub-folder of the inbox): atomic
    return dest


def reject(path: Path, inbox: Path, reason: str) -> Path:
    """Move an inbox file to failed/ next to ``<name>.reason.txt``."""
    dest = move_to(path, inbox / "failed")
    atomic_write_text(dest.parent / f"{dest.name}.reason.txt", reason.rstrip() + "\n")
    _logger().warning("rejected %s", reason.splitlines()[0])
    return dest


# ---------------------------------------------------------------- snapshot / restore


@dataclass
class Snapshot:
    """What a failed run must put back: the corpus (the papers it added), its pointer file,
    dvc.lock and the reports. Kept on disk in ``<inbox>/.ingest-snapshot/`` until the run ends,
    so a run killed half-way (power cut, SIGKILL) is rolled back by the next one."""

    keep: Path
    texts: dict[str, str | None]  # absolute path -> content before the run (None: absent)
    reports: Path
    reports_existed: bool
    papers: Path
    added: list[str]  # corpus names this run copied in

    MANIFEST = "manifest.json"

    @classmethod
    def take(cls, keep: Path, files: list[Path], reports: Path, papers: Path, added: list[str]) -> Snapshot:
        tmp = keep.with_name(keep.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        texts = {str(f): (f.read_text(encoding="utf-8") if f.exists() else None) for f in files}
        existed = reports.is_dir()
        if existed:
            shutil.copytree(reports, tmp / "reports", symlinks=True)
        snap = cls(keep, texts, reports, existed, papers, list(added))
        atomic_write_text(
            tmp / cls.MANIFEST,
            json.dumps(
                {
                    "texts": texts,
                    "reports": str(reports),
                    "reports_existed": existed,
                    "papers": str(papers),
                    "added": snap.added,
                }
            ),
        )
        os.replace(tmp, keep)  # complete or absent: a half-taken snapshot is never restored
        return snap

    @classmethod
    def load(cls, keep: Path) -> Snapshot | None:
        try:
            m = json.loads((keep / cls.MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cls(keep, m["texts"], Path(m["reports"]), m["reports_existed"], Path(m["papers"]), m["added"])

    def restore(self) -> None:
        for name in self.added:
            (self.papers / name).unlink(missing_ok=True)
            (self.papers / f".{name}.part").unlink(missing_ok=True)
        for path, text in self.texts.items():
            if text is None:
                Path(path).unlink(missing_ok=True)
            else:
                atomic_write_text(path, text)
        saved = self.keep / "reports"
        if self.reports.is_dir():
            # drop what the failed run created, put back what it changed
            for p in sorted(self.reports.rglob("*"), reverse=True):  # children before their folder
                rel = p.relative_to(self.reports)
                if not (saved / rel).exists() and not (saved / rel).is_symlink():
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            if not self.reports_existed:
                self.reports.rmdir()
        if self.reports_existed:
            for p in saved.rglob("*"):
                dest = self.reports / p.relative_to(saved)
                if p.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                elif not dest.exists() or not filecmp.cmp(p, dest, shallow=False):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(p, dest)

    def discard(self) -> None:
        shutil.rmtree(self.keep, ignore_errors=True)


# ---------------------------------------------------------------- subprocesses


def tool_env() -> dict[str, str]:
    """dvc's stage commands say ``python``: make it this interpreter (the venv), wherever we run."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_logged(
    cmd: list[str], cwd: Path, logger: Any, tail_lines: int = 40, watch: tuple[re.Pattern, list[str]] | None = None
) -> tuple[int, str]:
    """Run ``cmd``, logging its output as it comes; return (exit code, last lines). ``watch``:
    (pattern, list) collects the pattern's first group from every line, not only the last ones."""
    logger.info("$ %s", " ".join(cmd))
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            tail.append(line)
            logger.info("  %s", line)
            m = watch[0].search(line) if watch else None
            if m:
                watch[1].append(m.group(1))
    return proc.wait(), "\n".join(tail)


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def autostage(root: Path) -> bool:
    """``core.autostage`` of the project (.dvc/config, overridden by .dvc/config.local); read
    directly because a `dvc config` call costs a second or more."""
    value = False
    for name in ("config", "config.local"):
        section = ""
        try:
            lines = (root / ".dvc" / name).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]'\" ").lower()
            elif section == "core" and "=" in line:
                key, _, val = line.partition("=")
                if key.strip() == "autostage":
                    value = val.strip().lower() == "true"
    return value


# ---------------------------------------------------------------- lock


class InboxLock:
    """One ingest at a time per inbox (a slow run must not overlap the next scheduled one)."""

    def __init__(self, inbox: Path):
        self.path = inbox / ".ingest.lock"

    def __enter__(self) -> InboxLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return self
            except FileExistsError:
                if not self._stale():
                    raise IngestError(
                        f"{self.path}: another ingest run (pid {self._pid()}) is working on this inbox; "
                        "this run does nothing (delete the file if that process is gone)"
                    )
                self.path.unlink(missing_ok=True)
        raise IngestError(f"{self.path}: could not take the lock")

    def _pid(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _stale(self) -> bool:
        pid = self._pid()
        if pid is None:
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------- Prefect tasks


def _logger() -> Any:
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow/task run
        return log


# NO_CACHE: every step reads or changes files, an input-keyed cache would replay stale results
@task(name="check-inbox", cache_policy=NO_CACHE)
def check_inbox(
    inbox: str, papers_dir: str, max_size_mb: float, min_age_s: float, shown_dir: str = "data/papers"
) -> tuple[list[Candidate], list[str]]:
    """Reject bad inbox files (to failed/); return the good ones (with their corpus names) and the
    names of the rejected ones."""
    logger = _logger()
    inbox_p, papers = Path(inbox), Path(papers_dir)
    known = corpus_digests(papers)
    taken = set(known.values())
    max_bytes = int(max_size_mb * 1e6)
    accepted: list[Candidate] = []
    rejected: list[str] = []
    for p in nested_pdfs(inbox_p):
        logger.warning(
            "%s is in a sub-folder of the inbox and is not ingested; fix: move it to %s/ itself",
            p.relative_to(inbox_p),
            inbox_p,
        )
    files = inbox_files(inbox_p, min_age_s)
    for i, path in enumerate(files, 1):
        reason = check_file(path, max_bytes)
        digest = "" if reason else sha256(path)
        if not reason and digest in known:
            reason = f"duplicate: same content (sha256 {digest[:12]}...) as {shown_dir}/{known[digest]}"
        name = safe_name(path.name, taken, digest)
        if not reason and not inside(papers / name, papers):
            reason = f"unsafe file name {path.name!r}: rename it"
        if reason:
            reject(path, inbox_p, f"{path.name}: {reason}")
            rejected.append(path.name)
            continue
        known[digest] = name  # a second copy in the same batch is a duplicate too
        taken.add(name)
        accepted.append(Candidate(path, name, digest))
        logger.info("checked %d/%d: %s -> %s/%s", i, len(files), path.name, shown_dir, name)
    return accepted, rejected


def copy_checked(c: Candidate, papers: Path) -> str | None:
    """Copy an accepted paper into the corpus from a descriptor opened without following links,
    hashing what is copied; None, or why it was not copied (it changed after its check)."""
    tmp = papers / f".{c.name}.part"  # not a paper until the rename
    h = hashlib.sha256()
    try:
        with open_nofollow(c.path) as src, open(tmp, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                dst.write(chunk)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return (
            f"changed after its check ({exc.strerror or exc}): not copied; "
            "fix: copy the PDF itself into the inbox again"
        )
    if h.hexdigest() != c.digest:
        tmp.unlink(missing_ok=True)
        return "changed after its check (other content): not copied; fix: put it in the inbox again once it is complete"
    os.replace(tmp, papers / c.name)
    return None


@task(name="copy-papers", cache_policy=NO_CACHE)
def copy_papers(root: str, papers_dir: str, accepted: list[Candidate]) -> tuple[list[Candidate], dict[str, str]]:
    """Copy the accepted papers into the corpus: (the copied ones, {inbox name: why not} for the others)."""
    papers = Path(root) / papers_dir
    papers.mkdir(parents=True, exist_ok=True)
    copied, refused = [], {}
    for c in accepted:
        why = copy_checked(c, papers)
        if why:
            refused[c.path.name] = why
        else:
            copied.append(c)
    _logger().info("copied %d paper(s) into %s", len(copied), papers_dir)
    return copied, refused


STAGE_RUN = re.compile(r"Running stage '([^']+)'")


@task(name="add-and-repro", cache_policy=NO_CACHE)
def add_and_repro(root: str, papers_dir: str, accepted: list[Candidate], targets: list[str]) -> list[str]:
    """``dvc add`` the corpus (the papers already copied in), ``dvc repro``: the stages that ran;
    IngestError on failure."""
    logger = _logger()
    rootp = Path(root)
    rc, out = run_logged(dvc("add", "-q", papers_dir), rootp, logger)
    if rc != 0:
        raise IngestError(f"`dvc add {papers_dir}` failed (exit {rc}):\n{out}")
    stages: list[str] = []
    rc, out = run_logged(dvc("repro", *targets), rootp, logger, watch=(STAGE_RUN, stages))
    if rc != 0:
        raise IngestError(
            f"`dvc repro {' '.join(targets)}` failed (exit {rc}); the corpus and reports were "
            f"restored. Fix the stage, then put the paper back in the inbox. Last output:\n{out}"
        )
    return stages


@task(name="diff-report", cache_policy=NO_CACHE)
def write_diff(root: str, out: str, base: str, names: list[str]) -> str:
    header = "Papers ingested in this run:\n\n" + "".join(f"- `{n}`\n" for n in names) + "\n"
    try:
        body = metrics_markdown(base, root, title=f"Ingest: metrics and params, {base} vs this run")
    except DiffError as exc:  # the repro succeeded: a report problem must not undo it
        body = f"# Ingest\n\nThe metrics/params diff could not be computed:\n\n```\n{exc}\n```\n"
    body = body.replace("\n\n", "\n\n" + header, 1)  # right after the title
    path = Path(root) / out
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, body)
    return str(path)


@task(name="publish", cache_policy=NO_CACHE)
def publish(root: str, paths: list[str], message: str, commit: bool, push: bool) -> list[str]:
    """git commit the run's pointer files and reports, then dvc push; raise IngestError on failure."""
    logger, rootp, done = _logger(), Path(root), []
    if commit:
        existing = [p for p in paths if (rootp / p).exists()]
        for cmd in (["git", "add", "-A", "--", *existing], ["git", "commit", "-q", "-m", message]):
            rc, out = run_logged(cmd, rootp, logger)
            if rc != 0:
                raise IngestError(
                    f"`{' '.join(cmd[:2])}` failed (exit {rc}); the papers are in the corpus and "
                    f"processed: commit by hand. Output:\n{out}"
                )
        done.append("commit")
    if push:
        rc, out = run_logged(dvc("push", "-q"), rootp, logger)
        if rc != 0:
            raise IngestError(
                f"`dvc push` failed (exit {rc}); the run itself succeeded: run `dvc push` again "
                f"once the remote is reachable. Output:\n{out}"
            )
        done.append("push")
    return done


# ---------------------------------------------------------------- the flow


def resolve_inbox(root: Path, inbox: str) -> Path:
    path = Path(inbox)
    return (path if path.is_absolute() else root / path).resolve()


@flow(name="ingest")
def ingest(
    inbox: str | None = None,
    repo: str = ".",
    params_path: str = PARAMS_FILE,
    commit: bool | None = None,
    push: bool | None = None,
) -> dict[str, Any]:
    """Take new PDFs from the inbox into the corpus and rerun the pipeline (see module doc)."""
    logger = _logger()
    root = Path(repo).resolve()
    params_file = Path(params_path) if Path(params_path).is_absolute() else root / params_path
    p: IngestParams = load_params(IngestParams, "ingest", params_file)
    inbox_dir = resolve_inbox(root, inbox or p.inbox)
    if not inbox_dir.is_dir():
        raise InputError(
            f"inbox {inbox_dir} not found: create it, or set ingest.inbox in {params_file} / pass --inbox"
        )
    papers = root / p.papers_dir
    summary: dict[str, Any] = {
        "inbox": str(inbox_dir),
        "accepted": [],
        "rejected": [],
        "stages": [],
        "published": [],
    }
    with InboxLock(inbox_dir):
        recover(root, inbox_dir / SNAPSHOT_DIR, logger)
        accepted, summary["rejected"] = check_inbox(
            str(inbox_dir), str(papers), p.max_size_mb, p.min_age_s, p.papers_dir
        )
        summary["in_subfolders"] = [str(q.relative_to(inbox_dir)) for q in nested_pdfs(inbox_dir)]
        if not accepted:
            logger.info("no new paper in %s (%d rejected)", inbox_dir, len(summary["rejected"]))
            return summary
        pointer = papers.with_name(papers.name + ".dvc")
        restage = autostage(root)
        snap = Snapshot.take(
            inbox_dir / SNAPSHOT_DIR,
            [pointer, root / "dvc.lock"],
            root / p.reports_dir,
            papers,
            [c.name for c in accepted],
        )
        try:
            accepted, refused = copy_papers(str(root), p.papers_dir, accepted)
            for inbox_name, why in refused.items():
                reject(inbox_dir / inbox_name, inbox_dir, f"{inbox_name}: {why}")
                summary["rejected"].append(inbox_name)
            if not accepted:
                _rollback(root, snap, pointer, restage, logger)
                logger.info("no new paper in %s (%d rejected)", inbox_dir, len(summary["rejected"]))
                return summary
            summary["stages"] = add_and_repro(str(root), p.papers_dir, accepted, p.repro_targets)
        except IngestError as exc:  # the run failed: its papers go to failed/ with the reason
            _rollback(root, snap, pointer, restage, logger)
            for c in accepted:
                reject(c.path, inbox_dir, f"{c.path.name}: {exc}")
            raise
        except (
            BaseException
        ):  # interrupted (Ctrl-C, cancelled run) or a bug: the papers stay for the next run
            _rollback(root, snap, pointer, restage, logger)
            raise
        snap.discard()
        names = [c.name for c in accepted]
        summary["accepted"] = names
        summary["diff"] = write_diff(str(root), p.diff_report, p.diff_base, names)
        for c in accepted:  # the run succeeded: now, and only now, they leave the inbox
            move_to(c.path, inbox_dir / "processed")
        logger.info(
            "ingested %d paper(s): %s; stages run: %s",
            len(names),
            ", ".join(names),
            ", ".join(summary["stages"]) or "none (dvc repro found every stage up to date)",
        )
        do_commit = p.commit if commit is None else commit
        do_push = p.push if push is None else push
        if do_commit or do_push:
            rel_pointer = str(pointer.relative_to(root))
            paths = [rel_pointer, str(Path(p.papers_dir).parent / ".gitignore"), "dvc.lock", p.reports_dir]
            msg = f"ingest: {len(names)} new paper(s)\n\n" + "\n".join(names)
            summary["published"] = publish(str(root), paths, msg, do_commit, do_push)
    return summary


def _rollback(root: Path, snap: Snapshot, pointer: Path, restage: bool, logger: Any) -> None:
    """Put the corpus, its pointer, dvc.lock and the reports back as they were before the run."""
    snap.restore()
    if (
        restage and snap.texts.get(str(pointer)) is not None
    ):  # dvc add staged the new pointer: stage the old one
        subprocess.run(["git", "add", "--", str(pointer)], cwd=root, capture_output=True)
    # outputs of stages that did run back to what the restored dvc.lock says (from the DVC cache)
    rc, out = run_logged(dvc("checkout", "-q"), root, logger)
    if rc != 0:
        logger.warning(
            "dvc checkout after the failed run did not finish (exit %d); "
            "`dvc status` shows what differs:\n%s",
            rc,
            out,
        )
    snap.discard()
    logger.warning(
        "run failed: restored %s, %s, dvc.lock and %s",
        snap.papers.relative_to(root),
        pointer.relative_to(root),
        snap.reports.relative_to(root),
    )


def recover(root: Path, keep: Path, logger: Any) -> None:
    """Roll back a run that died without cleaning up (its snapshot is still there)."""
    shutil.rmtree(keep.with_name(keep.name + ".part"), ignore_errors=True)
    snap = Snapshot.load(keep)
    if snap is None:
        shutil.rmtree(keep, ignore_errors=True)
        return
    logger.warning(
        "the previous ingest run stopped half-way: rolling back its changes; "
        "its papers are still in the inbox and are tried again now"
    )
    papers = snap.papers
    _rollback(root, snap, papers.with_name(papers.name + ".dvc"), autostage(root), logger)


# ---------------------------------------------------------------- CLI


def _api_url_for_serving() -> str:
    from flows.server import healthy, recorded_server

    url = os.environ.get("PREFECT_API_URL")
    if url and healthy(url):
        return url
    url = recorded_server()
    if url:
        return url
    raise InputError(
        "no Prefect server answers: start one with `make server` (or `python -m flows.server start`) "
        "and/or export PREFECT_API_URL=http://HOST:PORT/api"
    )


def cmd_run(args: argparse.Namespace) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.server import ensure_server, stop_pid

    url, started = ensure_server()  # reuse PREFECT_API_URL / the recorded server, else start one
    os.environ["PREFECT_API_URL"] = url  # for the dvc stages' flows
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                summary = ingest(inbox=args.inbox, params_path=args.params, commit=args.commit, push=args.push)
            finally:
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=10)  # send the run's logs while the server is still up
        print(json.dumps(summary, indent=2))
    finally:
        if started:
            stop_pid(started)


def cmd_serve(args: argparse.Namespace) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    p: IngestParams = load_params(IngestParams, "ingest", args.params)
    cron = args.cron or p.cron
    if len(cron.split()) != 5:
        raise InputError(f"--cron '{cron}' must have 5 fields, e.g. '*/30 * * * *'")
    url = _api_url_for_serving()
    os.environ["PREFECT_API_URL"] = url
    # flow runs execute in subprocesses started from here: they must import flows.* and stages.*
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))
    parameters = {
        k: v
        for k, v in {"inbox": args.inbox, "params_path": args.params, "repo": str(Path.cwd())}.items()
        if v
    }
    log.info("serving deployment ingest/%s (cron '%s') against %s", args.name or p.deployment, cron, url)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        ingest.serve(
            name=args.name or p.deployment,
            cron=cron,
            parameters=parameters,
            limit=1,
            description="New PDFs from the inbox -> corpus -> dvc repro -> reports/diff.md",
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run_p = sub.add_parser("run", help="ingest the inbox once")
    run_p.add_argument("--inbox", help="inbox folder (default: ingest.inbox)")
    run_p.add_argument(
        "--commit", action=argparse.BooleanOptionalAction, default=None, help="git commit the result"
    )
    run_p.add_argument(
        "--push", action=argparse.BooleanOptionalAction, default=None, help="dvc push the result"
    )
    serve_p = sub.add_parser("serve", help="serve the ingest deployment on a cron schedule")
    serve_p.add_argument("--cron", help="cron schedule (default: ingest.cron)")
    serve_p.add_argument("--name", help="deployment name (default: ingest.deployment)")
    serve_p.add_argument("--inbox", help="inbox folder (default: ingest.inbox)")
    args = parser.parse_args(argv)
    if args.inbox:  # relative to where the command runs, like any path argument
        args.inbox = str(Path(args.inbox).resolve())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cmd_run(args) if args.cmd == "run" else cmd_serve(args)
    except (ParamsError, InputError, IngestError) as exc:
        print(f"relmine: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

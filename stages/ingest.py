"""The plain logic of ingesting new papers (the ``ingest`` flow in flows/ingest.py drives it).

Per inbox file: PDF signature (``%PDF-`` at byte 0, ``%%EOF`` near the end), size limit,
PDFium opens it (an encrypted, password-protected PDF passes the signature checks but
cannot be mined), duplicate by SHA-256 content hash against the corpus (and the other
files of the batch). Files are opened without following symbolic links, and a paper is
copied from an open descriptor and its hash compared with the checked one, so a file
swapped for a link or another file after its check is refused, not copied. Names are
sanitised (only the base name survives, restricted to ``[A-Za-z0-9._-]``).

``Snapshot`` keeps ``data/papers``, its pointer, ``dvc.lock`` and ``reports/`` as they were
before a run, so a failed ``dvc add``/``dvc repro`` (or a run killed half-way, found by the
next one) is rolled back; ``InboxLock`` keeps two runs from working one inbox at once.
"""
from __future__ import annotations

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

from .records import atomic_write_text

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
    log.warning("rejected %s", reason.splitlines()[0])
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


def resolve_inbox(root: Path, inbox: str) -> Path:
    path = Path(inbox)
    return (path if path.is_absolute() else root / path).resolve()


def rollback(root: Path, snap: Snapshot, pointer: Path, restage: bool, logger: Any) -> None:
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
    rollback(root, snap, papers.with_name(papers.name + ".dvc"), autostage(root), logger)


# ---------------------------------------------------------------- CLI



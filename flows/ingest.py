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
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import PARAMS_FILE, load_params
from flows.diff import DiffError, metrics_markdown
from stages.errors import InputError
from stages.ingest import (
    SNAPSHOT_DIR,
    Candidate,
    InboxLock,
    IngestError,
    IngestParams,
    Snapshot,
    autostage,
    check_file,
    copy_checked,
    corpus_digests,
    dvc,
    inbox_files,
    inside,
    move_to,
    nested_pdfs,
    recover,
    reject,
    resolve_inbox,
    rollback,
    run_logged,
    safe_name,
    sha256,
)
from stages.params import ParamsError
from stages.records import atomic_write_text

log = logging.getLogger("relmine.ingest")

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
                rollback(root, snap, pointer, restage, logger)
                logger.info("no new paper in %s (%d rejected)", inbox_dir, len(summary["rejected"]))
                return summary
            summary["stages"] = add_and_repro(str(root), p.papers_dir, accepted, p.repro_targets)
        except IngestError as exc:  # the run failed: its papers go to failed/ with the reason
            rollback(root, snap, pointer, restage, logger)
            for c in accepted:
                reject(c.path, inbox_dir, f"{c.path.name}: {exc}")
            raise
        except (
            BaseException
        ):  # interrupted (Ctrl-C, cancelled run) or a bug: the papers stay for the next run
            rollback(root, snap, pointer, restage, logger)
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

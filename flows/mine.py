"""Prefect flow ``mine``: data/papers/*.pdf -> data/mined/<doc_id>.jsonl + reports/mine.json.

Each paper's result is cached under ``run.cache_dir/mine`` keyed by the PDF's
content hash, the mining params and the code version of ``stages.mine``, so a
rerun mines only new or changed papers. The output folder is rebuilt from the
cache into a temp folder and swapped in, so removed papers disappear.

A paper's doc_id is its file name without ``.pdf``, and it names every output
downstream (data/mined/<doc_id>.jsonl, then entities, relations, example ids). So the
doc_id written is always the current file's, also when the cache entry was filled
under another name (a renamed paper, a copy); two files whose doc_ids differ only by
case (``X.PDF`` and ``X.pdf``, ``Peng.pdf`` and ``peng.pdf``) would write the same
output on a case-insensitive file system: the second is reported as failed with the
fix (rename it) and the others are mined. Files with the same content under two names
are both mined and listed in the report's ``same_content``.

    python -m flows.mine [--params params.yaml]
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

import stages.mine as mine_mod
from flows.common import cli_args, load_params, load_run_params, make_task_runner, run_main
from stages.errors import InputError
from stages.mine import MineParams
from stages.mine_cache import mine_caches, mine_one, paper_key, sentences_for, sentences_text_for
from stages.params import RunParams
from stages.records import Sentence, atomic_write_json

log = logging.getLogger("relmine.mine")


@task(name="mine-paper", retries=0)
def mine_paper_task(pdf: str, params: dict[str, Any], cache_dir: str, key: str) -> dict[str, Any]:
    return mine_one(pdf, MineParams(**params), cache_dir, key)


def list_papers(papers_dir: str | Path, patterns: list[str] | tuple[str, ...] = ("*.pdf",)) -> list[Path]:
    """The PDFs in ``papers_dir`` whose names match one of ``patterns`` (fnmatch, any case)."""
    from fnmatch import fnmatch

    d = Path(papers_dir)
    if not d.is_dir():
        raise InputError(f"{d}: papers folder not found; run `dvc pull data/papers.dvc` or set mine.papers_dir")
    return sorted(p for p in d.iterdir() if p.suffix.lower() == ".pdf" and p.is_file()
                  and any(fnmatch(p.name.lower(), pat.lower()) for pat in patterns))


def doc_id_clashes(pdfs: list[Path]) -> dict[str, str]:
    """file -> why it is not mined, for each file whose doc_id equals an earlier file's up
    to case (the first in sorted order keeps it)."""
    first: dict[str, Path] = {}
    clashes: dict[str, str] = {}
    for p in pdfs:
        other = first.setdefault(p.stem.casefold(), p)
        if other is not p:
            clashes[str(p)] = (f"doc_id {p.stem!r} clashes with {other.name} (names that differ only by case or "
                               f"the .pdf/.PDF suffix write the same output); fix: rename {p.name}")
    return clashes


def same_content(pdfs: list[Path], keys: dict[str, str]) -> list[dict[str, str]]:
    """Files whose content (cache key) equals an earlier file's: both are mined under their own
    doc_id, but a copy counts its sentences twice (and may put them in train and test)."""
    first: dict[str, Path] = {}
    out = []
    for p in pdfs:
        other = first.setdefault(keys[str(p)], p)
        if other is not p:
            out.append({"file": str(p), "same_as": str(other)})
    return out


def _plan(pdfs: list[Path], params: MineParams, cache_dir: str) -> tuple[dict[str, str], list[Path]]:
    """Cache key per paper, and the papers that are not cached yet."""
    sent_cache, stats_cache = mine_caches(cache_dir)
    keys = {str(p): paper_key(p, params) for p in pdfs}
    todo = [p for p in pdfs if not (sent_cache.get(keys[str(p)]) and stats_cache.get(keys[str(p)]))]
    return keys, todo


def _swap_in(out_dir: Path, pdfs: list[Path], keys: dict[str, str], cache_dir: str, failed: set[str]) -> None:
    """Rebuild out_dir from the cache in a temp folder, then swap it in (``failed``: the
    files that get no output). Each file's sentences carry its own doc_id."""
    sent_cache, _ = mine_caches(cache_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for p in pdfs:
            src = sent_cache.get(keys[str(p)])
            if src is not None and str(p) not in failed:
                (tmp / f"{p.stem}.jsonl").write_text(sentences_text_for(src, p.stem), encoding="utf-8")
        old = out_dir.with_name(f".{out_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_report(pdfs: list[Path], keys: dict[str, str], cache_dir: str, fresh: dict[str, dict[str, Any]],
                 seconds: float, mined_seconds: float, clashes: dict[str, str] | None = None) -> dict[str, Any]:
    _, stats_cache = mine_caches(cache_dir)
    clashes = clashes or {}
    per_paper: dict[str, Any] = {}
    failures, skipped, ocr = [], [], []
    pages = sentences = characters = fresh_pages = 0
    for p in pdfs:
        if str(p) in clashes:
            failures.append({"doc_id": p.stem, "file": str(p), "reason": clashes[str(p)]})
            continue
        st = fresh.get(str(p))
        cached = st is None
        if st is None:
            path = stats_cache.get(keys[str(p)])
            st = json.loads(path.read_text()) if path else {"error": "no result", "doc_id": p.stem}
        doc_id = p.stem
        if st.get("error"):
            failures.append({"doc_id": doc_id, "file": str(p), "reason": st["error"]})
            per_paper[doc_id] = {"cached": cached, "error": st["error"]}
            continue
        pages += st.get("pages", 0)
        if not cached:
            fresh_pages += st.get("pages", 0)
        sentences += st.get("sentences", 0)
        characters += st.get("characters", 0)
        skipped += [{"doc_id": doc_id, **s} for s in st.get("skipped_pages", [])]
        ocr += [{"doc_id": doc_id, **s} for s in st.get("ocr_pages", [])]
        per_paper[doc_id] = {
            "cached": cached, "pages": st.get("pages", 0), "sentences": st.get("sentences", 0),
            "characters": st.get("characters", 0), "seconds": st.get("seconds"),
            "sections": st.get("sections", []),
        }
    n_fresh = len(fresh)
    return {
        "papers": len(pdfs),
        "mined": n_fresh,
        "cached": len(pdfs) - n_fresh,
        "failed": len(failures),
        "pages": pages,
        "sentences": sentences,
        "characters": characters,
        "seconds": round(seconds, 3),
        # throughput of this run's mining (cached papers cost nothing)
        "pages_per_second": round(fresh_pages / mined_seconds, 2) if fresh_pages and mined_seconds > 0 else None,
        "ocr_pages": ocr,
        "skipped_pages": skipped,
        "failures": failures,
        "same_content": same_content([p for p in pdfs if str(p) not in clashes], keys),
        "per_paper": per_paper,
    }


def _run_mine(params: MineParams, run: RunParams, map_papers) -> dict[str, Any]:
    t0 = time.monotonic()
    pdfs = list_papers(params.papers_dir, params.papers)
    if not pdfs:
        raise InputError(f"{params.papers_dir}: no .pdf files; run `dvc pull data/papers.dvc`")
    clashes = doc_id_clashes(pdfs)
    keys, todo = _plan(pdfs, params, run.cache_dir)
    todo = [p for p in todo if str(p) not in clashes]
    t1 = time.monotonic()
    fresh = map_papers(todo, keys) if todo else {}
    mined_seconds = time.monotonic() - t1
    report = build_report(pdfs, keys, run.cache_dir, fresh, time.monotonic() - t0, mined_seconds, clashes)
    _swap_in(Path(params.out_dir), pdfs, keys, run.cache_dir, {f["file"] for f in report["failures"]})
    atomic_write_json(params.report, report)
    return report


def _check(report: dict[str, Any], params: MineParams) -> None:
    ok = report["papers"] - report["failed"]
    if ok == 0:
        reasons = "; ".join(f"{f['file']}: {f['reason']}" for f in report["failures"][:5])
        raise InputError(f"no paper could be mined ({reasons}); check the PDFs in {params.papers_dir}")
    if params.strict and report["failed"]:
        reasons = "; ".join(f"{f['file']}: {f['reason']}" for f in report["failures"])
        raise InputError(f"mine.strict is true and {report['failed']} paper(s) failed: {reasons}; "
                         "fix or remove them, or set mine.strict: false")


@flow(name="mine")
def mine_flow(params_file: str | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    params: MineParams = load_params(MineParams, "mine", params_file)
    run = load_run_params(params_file)

    def map_papers(todo: list[Path], keys: dict[str, str]) -> dict[str, dict[str, Any]]:
        logger.info("mining %d paper(s) (%s runner)", len(todo), run.task_runner)
        futures = [
            mine_paper_task.submit(str(p), asdict(params), run.cache_dir, keys[str(p)]) for p in todo
        ]
        out: dict[str, dict[str, Any]] = {}
        for i, (p, fut) in enumerate(zip(todo, futures), 1):
            st = fut.result()
            out[str(p)] = st
            status = f"failed: {st['error']}" if st.get("error") else f"{st.get('pages', 0)} pages, {st.get('sentences', 0)} sentences"
            logger.info("mined %d/%d papers (%s: %s)", i, len(todo), p.name, status)
        return out

    try:
        report = _run_mine(params, run, map_papers)
    finally:
        mine_mod.close_workers()
    logger.info(
        "mine: %d papers (%d mined, %d cached, %d failed), %d pages, %d sentences, %s pages/s",
        report["papers"], report["mined"], report["cached"], report["failed"], report["pages"],
        report["sentences"], report["pages_per_second"],
    )
    for f in report["failures"]:
        logger.warning("not mined: %s: %s", f["file"], f["reason"])
    for d in report["same_content"]:
        logger.warning("%s has the same content as %s: both are mined, each under its own doc_id; fix: remove one "
                       "if it is a copy (its sentences would count twice)", d["file"], d["same_as"])
    _check(report, params)
    return report


def run_mine_flow(params_file: str | None = None) -> dict[str, Any]:
    """Run the flow with the task runner the ``run`` params choose."""
    run = load_run_params(params_file)
    return mine_flow.with_options(task_runner=make_task_runner(run))(params_file)


def mine_pdfs(paths: list[str | Path], params: MineParams | None = None, cache_dir: str | None = None,
              workers: int = 2) -> tuple[list[Sentence], list[dict[str, Any]]]:
    """Mine PDF files into sentences without Prefect (for `extract` and scripts):
    uses the same per-paper cache when cache_dir is given. Returns (sentences in
    file order, failures)."""
    from concurrent.futures import ThreadPoolExecutor

    params = params or MineParams()
    cache_dir = cache_dir or tempfile.mkdtemp(prefix="relmine-mine-")
    pdfs = [Path(p) for p in paths]
    keys, todo = _plan(pdfs, params, cache_dir)
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
            fresh = dict(zip(map(str, todo), ex.map(lambda p: mine_one(str(p), params, cache_dir, keys[str(p)]), todo)))
    finally:
        mine_mod.close_workers()
    sent_cache, stats_cache = mine_caches(cache_dir)
    sentences: list[Sentence] = []
    failures = []
    for p in pdfs:
        st = fresh.get(str(p))
        if st is None:
            sp = stats_cache.get(keys[str(p)])
            st = json.loads(sp.read_text()) if sp else {"error": "no result"}
        if st.get("error"):
            failures.append({"file": str(p), "reason": st["error"]})
            continue
        sentences.extend(sentences_for(sent_cache.path(keys[str(p)]), p.stem))
    return sentences, failures


def main() -> None:
    args = cli_args("Mine PDFs into sentences (data/mined) and write reports/mine.json")
    run_main(run_mine_flow, args.params)


if __name__ == "__main__":
    main()

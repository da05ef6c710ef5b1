"""Prefect flow `extract`: relations from new papers, one row per relation per paper.

    python -m flows.extract PATH... --out FILE [--model DIR] [--min-confidence X]
                            [--calibration FILE] [--params params.yaml]

PATH: PDF files or folders of PDFs. FILE: ``.csv`` or ``.jsonl``. Per paper (mapped
tasks): mine it with the ``mine`` code (same params and per-paper cache as the
pipeline), find entities with the ``entities`` code (with ``entities.tagger`` on, also
the learned tagger the ``entities`` stage trained on the whole corpus), form the candidate pairs and
their pattern labels with the ``relations`` code. Then the trained model classifies
every candidate; the schema's type constraints, the calibrated temperature and the
per-relation thresholds (``<model>.calibration.json`` beside the model folder or
``calibration.json`` inside it; ``--min-confidence`` overrides the thresholds) decide
the relation; rows are de-duplicated per paper (count and pages) and written
atomically. A paper that cannot be read is reported and skipped.

The ``paper`` column is the paper's id, unique in the run: the file name without .pdf
(a PDF in a folder argument: its path relative to that folder), or, when two papers
would get the same id (``a/paper.pdf`` and ``b/paper.pdf`` given as files, ``X.PDF``
and ``X.pdf``), each one's path as given. It comes from the file, never from the
mine cache, which is keyed by content and so shared by copies under other names.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from flows.common import cli_args, load_params, load_run_params, make_task_runner, run_main
from stages.errors import InputError
from stages.extract import ExtractParams
from stages.records import AnnotatedSentence, Example, to_dict


def collect_pdfs(paths: list[str]) -> tuple[list[tuple[Path, str]], list[dict[str, str]]]:
    """PDF files from files and folders (folders: their *.pdf, recursively, sorted), each
    with its paper id (``paper_ids``); a path that is missing or not a PDF is a failure,
    not an error."""
    found_in: dict[Path, Path | None] = {}  # pdf -> the folder argument it was found in
    failures = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() == ".pdf")
            if not found:
                failures.append({"file": str(p), "reason": "folder holds no .pdf file"})
            for q in found:
                found_in.setdefault(q, p)
        elif p.is_file() and p.suffix.lower() == ".pdf":
            found_in.setdefault(p, None)
        elif p.exists():
            failures.append({"file": str(p), "reason": "not a .pdf file"})
        else:
            failures.append({"file": str(p), "reason": "no such file or folder"})
    return paper_ids(found_in), failures


def paper_ids(found_in: dict[Path, Path | None]) -> list[tuple[Path, str]]:
    """A paper id per PDF, unique in the run: the file name without .pdf for a file
    argument, the path relative to the folder argument (without .pdf) for a PDF found in
    a folder; papers whose ids would be equal (compared case-folded) all get their path as
    given instead. It is the ``paper`` column: rows of two papers never merge."""
    base = {pdf: pdf.relative_to(folder).with_suffix("").as_posix() if folder is not None else pdf.stem
            for pdf, folder in found_in.items()}
    n = Counter(b.casefold() for b in base.values())
    return [(pdf, b if n[b.casefold()] == 1 else pdf.as_posix()) for pdf, b in base.items()]


def confidence_arg(value: str) -> float:
    """``--min-confidence``: a number in [0, 1] (argparse turns the error into a usage message)."""
    import argparse

    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number; fix: give a confidence between 0 and 1, "
                                         "e.g. --min-confidence 0.5") from None
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]; fix: give a confidence between 0 and 1, "
                                         "e.g. --min-confidence 0.5")
    return x


def _annotator(entity_patterns: str, timeout_s: float):
    from stages.cache import file_digest
    from stages.entities import get_annotator

    return get_annotator(entity_patterns, file_digest(entity_patterns), timeout_s)


def _relation_spec(relation_patterns: str, entity_patterns: str):
    from stages.cache import file_digest
    from stages.patterns import load_entity_types
    from stages.relations import get_spec

    return get_spec(relation_patterns, file_digest(relation_patterns), sorted(load_entity_types(entity_patterns)))


def paper_candidates(pdf: str, mine_params: dict[str, Any], cache_dir: str, p: ExtractParams,
                     doc_id: str | None = None, tagger: tuple[str, Any] | None = None) -> dict[str, Any]:
    """Mine one paper (cached), annotate it and form its candidate pairs with their
    pattern labels; never raises for a bad paper (``error`` says why). ``doc_id``: the
    paper's id in the run (default: the file name without .pdf). ``tagger``:
    (``entities.tagger_dir``, its TaggerParams) when ``entities.tagger`` is on: the tagger
    trained on the corpus adds its mentions to the patterns' (stages/tagger.py ``union``)."""
    from stages.mine import MineParams
    from stages.mine_cache import cached_mine, sentences_for
    from stages.relations import RelationLabeller

    t0 = time.perf_counter()
    doc_id = doc_id or Path(pdf).stem
    params = MineParams(**mine_params)
    try:
        stats, sentences_file, cached = cached_mine(pdf, params, cache_dir)
        if stats.get("error"):
            return {"doc_id": doc_id, "file": pdf, "error": stats["error"]}
        sentences = sentences_for(sentences_file, doc_id)
    except (OSError, ValueError) as exc:
        return {"doc_id": doc_id, "file": pdf, "error": f"{type(exc).__name__}: {exc}"}
    t1 = time.perf_counter()
    annotated: list[AnnotatedSentence] = _annotator(p.entity_patterns, p.regex_timeout_s).annotate(
        sentences, p.skip_sections)
    tagged = 0
    if tagger is not None:
        from stages import tagger as tagger_mod

        tagged = tagger_mod.tag_sentences(tagger_mod.corpus_tagger(*tagger), annotated, p.skip_sections,
                                          _annotator(p.entity_patterns, p.regex_timeout_s).keeps)
    labeller = RelationLabeller(_relation_spec(p.relation_patterns, p.entity_patterns), p.regex_timeout_s)
    candidates = [ex for s in annotated for ex in labeller.label_sentence(s)]
    norm_of = {(s.sent_id, m.start, m.end): m.norm for s in annotated for m in s.mentions if m.norm}
    norms = [(norm_of.get((e.sent_id, e.subj.start, e.subj.end)), norm_of.get((e.sent_id, e.obj.start, e.obj.end)))
             for e in candidates]
    return {"doc_id": doc_id, "file": pdf, "error": None, "mine_cached": cached, "sentences": len(sentences),
            "mentions": sum(len(a.mentions) for a in annotated), "tagger_mentions": tagged,
            "candidates": [to_dict(e) for e in candidates], "norms": norms,
            "mine_seconds": round(t1 - t0, 3), "annotate_seconds": round(time.perf_counter() - t1, 3)}


@task(name="extract-paper", cache_policy=NO_CACHE, persist_result=False)
def paper_task(pdf: str, mine_params: dict[str, Any], cache_dir: str, p: ExtractParams, doc_id: str,
               tagger: tuple[str, Any] | None = None) -> dict[str, Any]:
    return paper_candidates(pdf, mine_params, cache_dir, p, doc_id, tagger)


def entity_tagger(params_path: str | None, logger) -> tuple[str, Any] | None:
    """(``entities.tagger_dir``, the tagger params) when ``entities.tagger`` is on, its model
    loaded once to check it (InputError naming the file and the fix when it is missing); else None."""
    from stages import tagger as tagger_mod
    from stages.entities import EntitiesParams

    ep: EntitiesParams = load_params(EntitiesParams, "entities", params_path)
    if not ep.tagger:
        return None
    tp = ep.tagger_params()
    tagger_mod.corpus_tagger(ep.tagger_dir, tp)
    logger.info("entity tagger: %s (types: %s)", Path(ep.tagger_dir) / tagger_mod.CORPUS_MODEL,
                ", ".join(tp.types) or "all")
    return ep.tagger_dir, tp


def resolve_calibration(p: ExtractParams, model, logger):
    """The calibration to use, or None (T = 1, argmax) with a warning saying why."""
    from stages.calibrate import resolve_calibration as resolve

    return resolve(p.model_dir, model.labels, logger, p.calibration)


def _classify_paper(i: int, n: int, res: dict[str, Any], decider, failures: list, rows: list, per_paper: list,
                    logger) -> None:
    """Classify one paper's candidates into rows (``decider``: a stages.extract.Decider), or record
    why the paper was skipped."""
    from stages.extract import classified_rows

    if res["error"]:
        failures.append({"file": res["file"], "reason": res["error"]})
        logger.warning("extract %d/%d papers: %s could not be read, skipped: %s", i, n, res["file"], res["error"])
        return
    examples = [Example.from_dict(d) for d in res["candidates"]]
    t0 = time.perf_counter()
    decision = decider.detail(examples)
    relations, conf = decision.labels, decision.confidence
    classify_s = time.perf_counter() - t0
    paper_rows = classified_rows(examples, relations, conf, norms=[tuple(n) for n in res["norms"]])
    rows += paper_rows
    per_paper.append({"doc_id": res["doc_id"], "sentences": res["sentences"], "mentions": res["mentions"],
                      "tagger_mentions": res["tagger_mentions"],
                      "candidates": len(examples), "relations": len(paper_rows), "mine_cached": res["mine_cached"],
                      "mine_seconds": res["mine_seconds"], "annotate_seconds": res["annotate_seconds"],
                      "vetoed": decision.vetoed, "classify_seconds": round(classify_s, 4)})
    logger.info("extract %d/%d papers: %s: %d sentences, %d mentions, %d candidates, %d relations", i, n,
                res["doc_id"], res["sentences"], res["mentions"], len(examples), len(paper_rows))


@flow(name="extract")
def extract_flow(paths: list[str], out: str, model_dir: str | None = None, min_confidence: float | None = None,
                 calibration: str | None = None, params_path: str | None = None) -> dict[str, Any]:
    from stages.extract import dedupe, output_format, write_rows
    from stages.mine import MineParams

    logger = get_run_logger()
    t_wall = time.perf_counter()
    p: ExtractParams = load_params(ExtractParams, "extract", params_path)
    if model_dir:
        p.model_dir = model_dir
    if calibration:
        p.calibration = calibration
    if min_confidence is not None:
        p.min_confidence = min_confidence
        try:
            p.check()
        except ValueError as exc:
            raise InputError(f"--min-confidence {min_confidence}: {exc}; "
                             "fix: give a confidence between 0 and 1") from exc
    output_format(out)  # a bad extension fails before any work
    mine_p: MineParams = load_params(MineParams, "mine", params_path)
    tagger = entity_tagger(params_path, logger)  # a missing tagger model fails before any work
    run = load_run_params(params_path)
    from stages.model import load_trained_model
    from stages.patterns import schema_args

    allowed = schema_args(p.relation_patterns, p.entity_patterns)  # validates the pattern files
    pdfs, failures = collect_pdfs(paths)
    for f in failures:
        logger.warning("skipped %s: %s", f["file"], f["reason"])
    if not pdfs:
        raise InputError(f"no PDF to extract from in {', '.join(paths)}; fix: give PDF files or folders of PDFs")
    model = load_trained_model(p.model_dir, p.dtype)
    cal, cal_path = resolve_calibration(p, model, logger)
    from stages.extract import Decider, decision_veto

    decider = Decider(model, cal, allowed, p.batch_size, decision_veto(cal, p.relation_patterns, p.entity_patterns),
                      p.min_confidence)
    logger.info("extracting from %d paper(s) with %s (calibration: %s; thresholds: %s; decision: %s)", len(pdfs),
                p.model_dir, cal_path or "none", f"min confidence {p.min_confidence}" if p.min_confidence is not None
                else (cal.thresholds if cal else "argmax"), decider.name)

    futures = paper_task.map([str(x) for x, _ in pdfs], unmapped(asdict(mine_p)), unmapped(run.cache_dir), unmapped(p),
                             [d for _, d in pdfs], unmapped(tagger))
    rows = []
    per_paper = []
    try:
        # classify each paper as soon as it is mined and annotated (progress per paper)
        results = (fut.result() for fut in futures)
        for i, res in enumerate(results, 1):
            _classify_paper(i, len(pdfs), res, decider, failures, rows, per_paper, logger)
    finally:
        from stages import mine as mine_mod

        mine_mod.close_workers()  # the mining worker processes are not needed any more
    n_candidates = sum(pp["candidates"] for pp in per_paper)
    classify_s = sum(pp["classify_seconds"] for pp in per_paper)
    if not per_paper:
        raise InputError("no paper could be read (" + "; ".join(f"{f['file']}: {f['reason']}" for f in failures[:5])
                         + "); fix: check the PDFs")
    table = dedupe(rows)
    write_rows(out, table)
    summary = {
        "out": out, "papers": len(pdfs), "extracted": len(per_paper), "failed": failures,
        "candidates": n_candidates, "relations": len(rows), "rows": len(table),
        "classify_seconds": round(classify_s, 3),
        "pairs_per_s": round(n_candidates / classify_s, 1) if classify_s > 0 else None,
        "wall_seconds": round(time.perf_counter() - t_wall, 3),
        "calibration": str(cal_path) if cal_path else None, "per_paper": per_paper,
    }
    logger.info("extract: %d rows (%d relations in %d candidates) from %d/%d papers -> %s; %d skipped", len(table),
                len(rows), n_candidates, len(per_paper), len(pdfs), out, len(failures))
    return summary


def run_extract(paths: list[str], out: str, model_dir: str | None = None, min_confidence: float | None = None,
                calibration: str | None = None, params_path: str | None = None) -> dict[str, Any]:
    run = load_run_params(params_path)
    return extract_flow.with_options(task_runner=make_task_runner(run))(
        paths, out, model_dir, min_confidence, calibration, params_path)


def main() -> None:
    args = cli_args(
        "Extract relations from PDFs (files or folders) into a CSV or JSONL table.",
        [(["paths"], {"nargs": "+", "metavar": "PATH", "help": "PDF files or folders of PDFs"}),
         (["--out"], {"required": True, "help": "output file, .csv or .jsonl"}),
         (["--model"], {"default": None, "help": "trained model folder (default: extract.model_dir)"}),
         (["--min-confidence"], {"type": confidence_arg, "default": None,
                                 "help": "one threshold for every relation, replacing the calibrated ones"}),
         (["--calibration"], {"default": None, "help": "calibration file (default: found with the model)"})],
    )
    run_main(run_extract, args.paths, args.out, args.model, args.min_confidence, args.calibration, args.params)


if __name__ == "__main__":
    main()

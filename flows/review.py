"""Prefect flows `review-export` / `review-import`: the human review loop toward data/gold.

    python -m flows.review export --out DIR [--per-class N] [--seed S] [--model DIR] [EXAMPLES...]
    python -m flows.review import FILE --batch NAME

export: scores the weakly labelled examples (``review.examples``: JSONL files or
folders, default data/relations) with the trained model (calibrated; without a model
only the label-source conflicts and samples are exported) and writes to DIR, per class, the
least confident predictions, the predictions the label model disagrees with, the pairs whose
label sources conflict, and a seeded random sample of labelled examples, leaving out
examples already in the gold set:
  DIR/tasks.json         Label Studio import (Projects -> Import); pre-annotated
  DIR/label_config.xml   its labelling config (Settings -> Labeling Interface -> Code)
  DIR/batch.csv          the same batch for a spreadsheet: fill in ``reviewer_label``
  DIR/manifest.json      what was selected, from what, with which model and seed

import: reads a finished batch, the filled batch.csv or a Label Studio JSON export
(Export -> JSON or JSON-MIN), and writes data/gold/<NAME>.jsonl (Example records, origin
"gold", the reviewer's label). ``evaluate`` then scores on data/gold
(reports/metrics_gold.json) and ``split.train_on_gold`` decides whether gold joins training.
Examples already gold in another batch file are left out (all of them: the import is
refused), so a batch imported twice under two names is not counted twice; importing
again under the same name replaces that batch (to relabel). A row whose offsets no
longer match its exported span texts stops the import (stages/review.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import PARAMS_FILE, load_params, run_main
from stages.errors import InputError
from stages.records import (
    Example,
    atomic_write_json,
    atomic_write_text,
    iter_jsonl,
    read_examples,
    write_jsonl,
)
from stages.review import ReviewParams


def read_example_sources(sources: list[str]) -> list[Example]:
    """Examples from JSONL files and folders of them, unique by id (first kept)."""
    files: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            files += sorted(p.glob("*.jsonl"))
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"{p}: not found; fix: set review.examples to JSONL files or folders of Example records "
                             "(e.g. data/relations, after `dvc repro relations`)")
    seen: dict[str, Example] = {}
    for f in files:
        for ex in read_examples(str(f), "relations"):
            seen.setdefault(ex.id, ex)
    return list(seen.values())


def gold_files_of(gold_dir: str, exclude: Path | None = None) -> dict[str, str]:
    """example id -> the gold file holding it, over <gold_dir>/*.jsonl except ``exclude``
    (the batch being re-imported replaces its own file)."""
    d = Path(gold_dir)
    if not d.is_dir():
        return {}
    out: dict[str, str] = {}
    for f in sorted(d.glob("*.jsonl")):
        if exclude is None or f.resolve() != exclude.resolve():
            for r in iter_jsonl(f):
                if "id" in r:
                    out.setdefault(r["id"], str(f))
    return out


def gold_ids(gold_dir: str) -> set[str]:
    d = Path(gold_dir)
    return {r["id"] for f in sorted(d.glob("*.jsonl")) for r in iter_jsonl(f) if "id" in r} if d.is_dir() else set()


@task(name="review-score", cache_policy=NO_CACHE, persist_result=False)
def score_task(p: ReviewParams, examples: list[Example], allowed: dict) -> tuple[list[str] | None, list[float] | None, str | None]:
    """Calibrated predictions, or (None, None, reason) when there is no trained model."""
    log = get_run_logger()
    from stages.calibrate import resolve_calibration
    from stages.extract import Decider, decision_veto
    from stages.model import META_FILE, load_trained_model

    if not (Path(p.model_dir) / META_FILE).exists():
        return None, None, f"no trained model in {p.model_dir}"
    model = load_trained_model(p.model_dir, p.dtype)
    cal, _ = resolve_calibration(p.model_dir, model.labels, log, p.calibration)
    veto = decision_veto(cal, p.relation_patterns, p.entity_patterns)
    labels, conf = Decider(model, cal, allowed, p.batch_size, veto)(examples)
    return labels, conf, None


@flow(name="review-export")
def export_flow(out_dir: str, per_class: int | None = None, seed: int | None = None, model_dir: str | None = None,
                examples: list[str] | None = None, params_path: str | None = None) -> dict[str, Any]:
    log = get_run_logger()
    from stages.patterns import schema_args
    from stages.review import label_config, label_studio_tasks, review_csv, select_batch, source_conflicts

    p: ReviewParams = load_params(ReviewParams, "review", params_path)
    p.per_class = per_class or p.per_class
    p.seed = p.seed if seed is None else seed
    p.model_dir = model_dir or p.model_dir
    p.examples = examples or p.examples
    p.check()
    allowed = schema_args(p.relation_patterns, p.entity_patterns)
    from stages.patterns import load_entity_types

    types = sorted(load_entity_types(p.entity_patterns))
    pool = read_example_sources(p.examples)
    if not pool:
        raise InputError(f"no examples in {', '.join(p.examples)}; fix: run `dvc repro relations` or pass files")
    predicted, conf, why = score_task(p, pool, allowed)
    if why:
        log.warning("%s: exporting pattern samples only (no least-confident predictions)", why)
    classes = [*allowed, "NO_RELATION"]
    conflicts = source_conflicts(pool, p.relation_patterns, p.entity_patterns)
    items = select_batch(pool, predicted, conf, classes, p.per_class, p.seed, allowed, gold_ids(p.gold_dir),
                         conflicts)
    out = Path(out_dir)
    atomic_write_json(out / "tasks.json", label_studio_tasks(items))
    atomic_write_text(out / "label_config.xml", label_config(types, list(allowed)))
    atomic_write_text(out / "batch.csv", review_csv(items))
    counts: dict[str, dict[str, int]] = {}
    for it in items:
        cls = it.predicted if it.reason in ("least_confident", "label_model_disagrees") else it.pattern_label
        counts.setdefault(cls, {}).setdefault(it.reason, 0)
        counts[cls][it.reason] += 1
    manifest = {"items": len(items), "per_class": p.per_class, "seed": p.seed, "examples": p.examples,
                "pool": len(pool), "model_dir": None if why else p.model_dir, "note": why, "by_class": counts,
                "files": ["tasks.json", "label_config.xml", "batch.csv"]}
    atomic_write_json(out / "manifest.json", manifest)
    log.info("review batch: %d items from %d examples -> %s (%s)", len(items), len(pool), out,
             ", ".join(f"{c}: {sum(v.values())}" for c, v in counts.items()))
    return manifest


@flow(name="review-import")
def import_flow(batch_file: str, batch: str, params_path: str | None = None) -> dict[str, Any]:
    log = get_run_logger()
    from stages.patterns import schema_args
    from stages.review import check_batch_name, import_batch

    p: ReviewParams = load_params(ReviewParams, "review", params_path)
    name = check_batch_name(batch)
    allowed = schema_args(p.relation_patterns, p.entity_patterns)
    res = import_batch(batch_file, allowed)
    if not res.examples:
        raise InputError(f"{batch_file}: no reviewed row (reviewer_label / relation choice empty in all "
                         f"{len(res.skipped)}); fix: label some rows and import again")
    dest = Path(p.gold_dir) / f"{name}.jsonl"
    elsewhere = gold_files_of(p.gold_dir, exclude=dest)
    again = {ex.id: elsewhere[ex.id] for ex in res.examples if ex.id in elsewhere}
    if again:
        files = sorted(set(again.values()))
        names = ", ".join(f"{f} ({sum(v == f for v in again.values())})" for f in files)
        if len(again) == len(res.examples):
            raise InputError(f"{batch_file}: every reviewed example ({len(again)}) is already gold in {names}: this "
                             "batch was imported before under another name; nothing written; fix: to relabel, import "
                             f"it again under that name (--batch {Path(files[0]).stem}), or delete that file first")
        log.warning("%d example(s) of %s are already gold in %s: skipped (a gold example is counted once); fix: "
                    "to relabel them, import them under that batch name", len(again), batch_file, names)
        res.examples = [ex for ex in res.examples if ex.id not in again]
    write_jsonl(dest, res.examples)
    by_label: dict[str, int] = {}
    for ex in res.examples:
        by_label[ex.label] = by_label.get(ex.label, 0) + 1
    log.info("imported %d reviewed examples into %s (%s); %d rows without a label skipped%s", len(res.examples), dest,
             ", ".join(f"{k} {v}" for k, v in sorted(by_label.items())), len(res.skipped),
             f"; {res.duplicates} duplicate ids (last kept)" if res.duplicates else "")
    return {"out": str(dest), "examples": len(res.examples), "skipped": len(res.skipped),
            "duplicates": res.duplicates, "already_gold": len(again), "by_label": by_label}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export a review batch, or import a reviewed one into data/gold.")
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write a review batch (Label Studio tasks + CSV) to a folder")
    ex.add_argument("--out", required=True, help="output folder")
    ex.add_argument("--per-class", type=int, default=None, help="items per class and reason (default: review.per_class)")
    ex.add_argument("--seed", type=int, default=None, help="sampling seed (default: review.seed)")
    ex.add_argument("--model", default=None, help="trained model folder (default: review.model_dir)")
    ex.add_argument("examples", nargs="*", help="Example JSONL files or folders (default: review.examples)")
    im = sub.add_parser("import", help="read a finished batch into data/gold/<batch>.jsonl")
    im.add_argument("file", help="the filled batch.csv or a Label Studio JSON export")
    im.add_argument("--batch", required=True, help="batch name: writes data/gold/<batch>.jsonl")
    args = parser.parse_args(argv)
    if args.cmd == "export":
        run_main(export_flow, args.out, args.per_class, args.seed, args.model, args.examples or None, args.params)
    else:
        run_main(import_flow, args.file, args.batch, args.params)


if __name__ == "__main__":
    main(sys.argv[1:])

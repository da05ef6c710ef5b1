"""Prefect flow `evaluate`: models/relmine + data/split/test.jsonl (+ data/gold/*.jsonl) ->
reports/metrics.json, confusion.csv/png, errors.jsonl, metrics_gold.json.

    python -m flows.evaluate [--params params.yaml]
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.common import cli_args, load_params, run_main
from stages.records import atomic_write_json, atomic_write_text, read_examples

log = logging.getLogger("relmine.evaluate")


def make_decider(model: Any, params: Any):
    """The decision `extract` makes (calibrated thresholds, type constraints, the label model's
    veto), or None for argmax when calibration is off or the calibrate stage has not run."""
    from stages.calibrate import resolve_calibration

    if not params.calibrated:
        return None
    cal, _ = resolve_calibration(params.model_dir, model.labels, log, params.calibration, required=False)
    if cal is None:
        return None
    from stages.extract import Decider, decision_veto
    from stages.patterns import schema_args

    allowed = schema_args(params.relation_patterns, params.entity_patterns)
    return Decider(model, cal, allowed, params.batch_size,
                   decision_veto(cal, params.relation_patterns, params.entity_patterns))


def gold_table(model: Any, decide: Any, params: Any, reports: Path) -> dict:
    """Every gold set scored by the patterns, the label model, co-occurrence and the model
    (stages/gold.py), with per-pair predictions in reports/gold_predictions/<name>.jsonl
    (``records``: those of data/gold, the set named "gold")."""
    from stages import gold as G
    from stages.evaluate import predict, relation_scores
    from stages.records import write_jsonl

    rules = G.load_rule_labellers(params.relation_patterns, params.entity_patterns, params.label_model)
    seen: set[str] | None = None
    missing_train: list[str] = []
    if Path(params.train_data).exists():
        seen = {e.text for e in read_examples(params.train_data, "augment")}
    else:
        missing_train.append(f"{params.train_data}: not found; the unseen-sentence subset is left out")
    decide_fn = decide or (lambda examples: predict(model, examples, params.batch_size))
    results, set_notes = G.score_gold_sets({"gold": params.gold_dir, **params.gold_sets}, rules, decide_fn,
                                       relation_scores, params.bootstrap, params.seed, seen,
                                       decide.name if decide else "argmax")
    notes = rules.notes + missing_train + set_notes
    out: dict[str, Any] = {}
    own: list[dict] = []
    for r in results:
        for msg in r.bad:
            log.error("%s", msg)
        if not r.result:
            continue
        out[r.name] = r.result
        if r.name == "gold":
            own = r.records
        write_jsonl(reports / "gold_predictions" / f"{r.name}.jsonl", r.records)
        atomic_write_text(reports / "gold_predictions" / f"{r.name}.txt", r.table + "\n")
        log.info("%s", r.table)
    for n in set_notes:
        log.warning("%s", n)
    # the declared output exists even when no gold set was found
    atomic_write_json(reports / "gold_predictions" / "index.json",
                      {"sets": {k: f"{k}.jsonl" for k in out}, "notes": notes})
    return {"sets": out, "notes": notes, "records": own}


@task(name="evaluate-model")
def evaluate_task(params: Any) -> dict:
    from stages.evaluate import score, write_reports
    from stages.model import load_trained_model

    model = load_trained_model(params.model_dir, params.dtype)
    test = read_examples(params.test, "split")
    reports = Path(params.reports_dir)
    decide = make_decider(model, params)
    metrics = write_reports(reports, model, test, params, decide)
    log.info("test: n=%d accuracy %.4f micro-F1 %.4f macro-F1 %.4f", metrics.get("n", 0),
             metrics.get("accuracy", 0), metrics.get("micro_f1", 0), metrics.get("macro_f1", 0))

    table = gold_table(model, decide, params, reports)
    # data/gold's own block reuses the table's model column (the same decision, scored once)
    own, records = table["sets"].get("gold"), table.pop("records")
    if own:
        gold_metrics = score([r["label"] for r in records], [r["model"] for r in records],
                             params.bootstrap, params.seed)
        gold_metrics["files"] = own["files"]
        log.info("gold: n=%d macro-F1 %.4f", gold_metrics["n"], gold_metrics["macro_f1"])
    else:
        # DVC needs the declared output even when no human-labelled data exists yet
        gold_metrics = {"n": 0, "note": f"no human-labelled examples in {params.gold_dir}/*.jsonl"}
    gold_metrics.update(table)
    atomic_write_json(reports / "metrics_gold.json", gold_metrics)
    return metrics


@flow(name="evaluate")
def evaluate_flow(params_path: str | None = None) -> dict:
    from stages.evaluate import EvalParams

    params = load_params(EvalParams, "evaluate", params_path)
    return evaluate_task(params)


def main() -> None:
    args = cli_args("Score the trained classifier on the test split (and data/gold).")
    run_main(evaluate_flow, args.params)


if __name__ == "__main__":
    main()

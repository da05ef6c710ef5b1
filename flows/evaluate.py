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
from stages.records import atomic_write_json, read_examples

log = logging.getLogger("relmine.evaluate")


def make_decider(model: Any, params: Any):
    """The decision `extract` makes (calibrated thresholds, type constraints), or None for argmax
    when calibration is off or the calibrate stage has not run."""
    from stages.calibrate import resolve_calibration

    if not params.calibrated:
        return None
    if params.calibration and not Path(params.calibration).exists():
        log.warning("%s: no calibration (dvc repro calibrate): scoring the plain argmax", params.calibration)
        return None
    cal, _ = resolve_calibration(params.model_dir, model.labels, log, params.calibration)
    if cal is None:
        return None
    from stages.extract import classify
    from stages.patterns import schema_args

    allowed = schema_args(params.relation_patterns, params.entity_patterns)
    return lambda examples: classify(model, examples, cal, allowed, batch_size=params.batch_size)


@task(name="evaluate-model")
def evaluate_task(params: Any) -> dict:
    from stages.evaluate import score, predict, write_reports
    from stages.model import load_trained_model

    model = load_trained_model(params.model_dir, params.dtype)
    test = read_examples(params.test, "split")
    reports = Path(params.reports_dir)
    decide = make_decider(model, params)
    metrics = write_reports(reports, model, test, params, decide)
    log.info("test: n=%d accuracy %.4f micro-F1 %.4f macro-F1 %.4f", metrics.get("n", 0),
             metrics.get("accuracy", 0), metrics.get("micro_f1", 0), metrics.get("macro_f1", 0))

    gold_files = sorted(Path(params.gold_dir).glob("*.jsonl")) if Path(params.gold_dir).is_dir() else []
    gold = [ex for f in gold_files for ex in read_examples(str(f), "gold import")]
    if gold:
        predicted, _ = decide(gold) if decide else predict(model, gold, params.batch_size)
        gold_metrics = score([e.label for e in gold], predicted, params.bootstrap, params.seed)
        gold_metrics["files"] = [str(f) for f in gold_files]
        log.info("gold: n=%d macro-F1 %.4f", len(gold), gold_metrics["macro_f1"])
    else:
        # DVC needs the declared output even when no human-labelled data exists yet
        gold_metrics = {"n": 0, "note": f"no human-labelled examples in {params.gold_dir}/*.jsonl"}
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

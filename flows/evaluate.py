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
    """The decision `extract` makes (calibrated thresholds, type constraints), or None for argmax
    when calibration is off or the calibrate stage has not run."""
    from stages.calibrate import resolve_calibration

    if not params.calibrated:
        return None
    cal, _ = resolve_calibration(params.model_dir, model.labels, log, params.calibration, required=False)
    if cal is None:
        return None
    from stages.extract import classify
    from stages.patterns import schema_args

    allowed = schema_args(params.relation_patterns, params.entity_patterns)
    return lambda examples: classify(model, examples, cal, allowed, batch_size=params.batch_size)


def gold_table(model: Any, decide: Any, params: Any, reports: Path) -> dict:
    """Every gold set scored by the patterns, the label model, co-occurrence and the model,
    with per-pair predictions in reports/gold_predictions/<name>.jsonl."""
    from stages import gold as G
    from stages import weak as W
    from stages.evaluate import predict, relation_scores
    from stages.patterns import load_entity_types, load_relations_spec
    from stages.records import write_jsonl
    from stages.relations import RelationLabeller, count_beyond

    from stages.errors import InputError

    notes: list[str] = []
    spec = labeller = fitted = sources = None
    try:
        spec = load_relations_spec(params.relation_patterns, load_entity_types(params.entity_patterns))
        labeller = RelationLabeller(spec)
    except InputError as exc:
        notes.append(f"{exc}; the patterns, label model and co-occurrence columns are left out")
    if spec is not None and Path(params.label_model).exists():
        fitted = W.load_fitted(params.label_model)
        sources = W.sources_for(fitted, spec)
    elif spec is not None:
        notes.append(f"{params.label_model}: no label model (label_model.enabled false?); its column is left out")
    seen: set[str] | None = None
    if Path(params.train_data).exists():
        seen = {e.text for e in read_examples(params.train_data, "augment")}
    else:
        notes.append(f"{params.train_data}: not found; the unseen-sentence subset is left out")
    sets = {"gold": params.gold_dir, **params.gold_sets}
    out: dict[str, Any] = {}
    for name, path in sets.items():
        if not Path(path).exists():
            notes.append(f"gold set {name}: {path} not found, skipped")
            log.warning("gold set %s: %s not found, skipped", name, path)
            continue
        gold, files, bad = G.read_gold_set(path)
        for msg in bad:
            log.error("%s", msg)
        if not gold:
            notes.append(f"gold set {name}: no valid records in {path}")
            continue
        preds: dict[str, list[str]] = {}
        extra: dict[str, list[Any]] = {}
        if spec is not None:
            view = G.pattern_view(gold, labeller)
            if far := count_beyond(labeller, gold):  # the patterns, unlike the model, cannot label these
                msg = (f"gold set {name}: {sum(far.values())} pairs lie farther apart than max_distance "
                       f"({', '.join(f'{k} {v}' for k, v in far.items())}): the relations stage makes no "
                       "candidate of them, so the patterns leave them NO_RELATION")
                notes.append(msg)
                log.warning("%s", msg)
            preds["patterns"] = [v.label for v in view]
            extra["rules"] = [v.rules for v in view]
            if fitted is not None:
                post = W.posteriors(fitted, sources, view)
                preds["label_model"] = [max(p, key=p.get) for p in post]
                extra["label_model_probs"] = post
            relation_args = {n: list(rel.args) for n, rel in spec.relations.items()}
            preds["cooccurrence"] = [G.cooccurrence_label(g, relation_args) for g in gold]
        labels, conf = decide(gold) if decide else predict(model, gold, params.batch_size)
        preds["model"] = list(labels)
        extra["model_confidence"] = [round(float(c), 4) for c in conf]
        res = G.score_gold_set(gold, preds, relation_scores, params.bootstrap, params.seed, seen)
        res["files"] = files
        res["decision"] = "calibrated thresholds + type constraints" if decide else "argmax"
        out[name] = res
        write_jsonl(reports / "gold_predictions" / f"{name}.jsonl", G.prediction_records(gold, preds, extra, seen))
        atomic_write_text(reports / "gold_predictions" / f"{name}.txt", G.markdown_table(name, res) + "\n")
        log.info("%s", G.markdown_table(name, res))
    # the declared output exists even when no gold set was found
    atomic_write_json(reports / "gold_predictions" / "index.json",
                      {"sets": {k: f"{k}.jsonl" for k in out}, "notes": notes})
    return {"sets": out, "notes": notes}


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

    from stages import gold as G

    gold, gold_files, bad = G.read_gold_set(params.gold_dir) if Path(params.gold_dir).is_dir() else ([], [], [])
    for msg in bad:
        log.error("%s", msg)
    if gold:
        predicted, _ = decide(gold) if decide else predict(model, gold, params.batch_size)
        gold_metrics = score([e.label for e in gold], predicted, params.bootstrap, params.seed)
        gold_metrics["files"] = gold_files
        log.info("gold: n=%d macro-F1 %.4f", len(gold), gold_metrics["macro_f1"])
    else:
        # DVC needs the declared output even when no human-labelled data exists yet
        gold_metrics = {"n": 0, "note": f"no human-labelled examples in {params.gold_dir}/*.jsonl"}
    gold_metrics.update(gold_table(model, decide, params, reports))
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

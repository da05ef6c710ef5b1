"""Prefect flow `calibrate`: fit the temperature and per-relation thresholds on the dev split.

    python -m flows.calibrate [--params params.yaml]

Reads the trained model (``calibrate.model_dir``) and data/split/dev.jsonl; scores the
dev examples once, applies the schema's type constraints (relations.yaml args), fits
the temperature (NLL) and each relation's F1-maximising threshold, and writes

* ``calibrate.out`` (default ``models/relmine.calibration.json``, beside the model
  folder: a DVC stage may not write into the train stage's output folder; ``extract``
  finds it there, or as ``calibration.json`` inside a model folder);
* ``reports/calibration.json``: T, ECE and NLL before/after, thresholds, dev F1 per
  relation at the chosen thresholds, reliability bins.

With ``calibrate.veto_no_relation`` set, the calibration also carries a copy of the relations
stage's label model (``calibrate.label_model``): every decision (evaluate, extract, review) then
makes NO_RELATION of the candidates the label model is sure are unrelated (stages.weak.LabelModelVeto).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import cli_args, load_params, run_main
from stages.calibrate import (
    CalibrateParams,
    Calibration,
    fit_calibration,
    model_fingerprint,
    save_calibration,
)
from stages.errors import InputError
from stages.patterns import schema_args
from stages.records import atomic_write_json, read_examples


def calibration_examples(p: CalibrateParams, log: Any) -> list:
    """The gold pairs of ``gold_dir`` (a folder of JSONL files, or one JSONL file) when it holds any,
    else the dev split. Thresholds tuned on a pattern-labelled dev split learn agreement with the
    patterns; gold pairs teach the real thing."""
    from stages.records import read_gold_set

    where = Path(p.gold_dir) if p.gold_dir else None
    if where is not None and (where.is_dir() or where.is_file()):
        gold, _, bad = read_gold_set(where)
        for msg in bad:
            log.error("%s", msg)
        if gold:
            log.info("calibrating on %d gold pairs of %s (not the dev split)", len(gold), p.gold_dir)
            return gold
        log.warning("calibrate.gold_dir %s holds no gold pairs; calibrating on the dev split %s", p.gold_dir, p.dev)
    return read_examples(p.dev, "split")


@task(name="calibrate-model", cache_policy=NO_CACHE, persist_result=False)
def calibrate_task(p: CalibrateParams) -> Calibration:
    log = get_run_logger()
    from stages.model import load_trained_model

    allowed = schema_args(p.relation_patterns, p.entity_patterns)
    dev = calibration_examples(p, log)
    model = load_trained_model(p.model_dir, p.dtype)
    if not dev:
        log.warning("%s: no dev examples; calibration is the identity (T = 1, thresholds %s)", p.dev, 0.5)
    t0 = time.perf_counter()
    logits = model.logits(dev, p.batch_size).numpy() if dev else None
    log.info("scored %d dev examples in %.1f s", len(dev), time.perf_counter() - t0)
    import numpy as np

    if logits is None:
        logits = np.zeros((0, len(model.labels)))
    return fit_calibration(logits, [e.label for e in dev], model.labels, [e.subj.type for e in dev],
                           [e.obj.type for e in dev], allowed, p.bins, model_fingerprint(p.model_dir),
                           p.cross_fit_repeats, p.seed, p.min_dev_support)


def with_label_model_veto(cal: Calibration, p: CalibrateParams, log: Any) -> Calibration:
    """``cal`` with the label model's veto, or unchanged (and a warning) when there is no label model."""
    path = Path(p.label_model)
    if not path.exists():
        log.warning("calibrate.label_model %s not found (label_model.enabled false?): no veto, the model decides "
                    "alone; fix: run the relations stage with the label model, or set calibrate.veto_no_relation: null",
                    path)
        return cal
    try:
        fitted = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}: not a label model file ({exc}); fix: rerun the relations stage "
                         "(dvc repro relations)") from exc
    missing = [k for k in ("classes", "sources", "source_class", "beta", "pi") if not isinstance(fitted, dict)
               or k not in fitted]
    if missing:
        raise InputError(f"{path}: not a label model file (no {', '.join(missing)}); fix: rerun the relations "
                         "stage (dvc repro relations)")
    log.info("decision veto: NO_RELATION where the label model of %s gives it >= %.2f", path, p.veto_no_relation)
    return dataclasses.replace(cal, veto_no_relation=p.veto_no_relation, label_model=fitted)


@flow(name="calibrate")
def calibrate_flow(params_path: str | None = None) -> dict[str, Any]:
    log = get_run_logger()
    p: CalibrateParams = load_params(CalibrateParams, "calibrate", params_path)
    cal = calibrate_task(p)
    if p.veto_no_relation is not None:
        cal = with_label_model_veto(cal, p, log)
    save_calibration(p.out, cal)
    report = {"model_dir": p.model_dir, "dev": p.dev, "gold_dir": p.gold_dir, "calibration_file": p.out, **cal.report}
    for w in cal.report.get("warnings", []):
        log.warning("calibration: %s", w)
    atomic_write_json(p.report, report)
    log.info("calibrated on %d dev examples: T = %.3f, ECE %.4f -> %.4f, NLL %.4f -> %.4f", report["n_dev"],
             report["temperature"], report["ece_before"], report["ece_after"], report["nll_before"],
             report["nll_after"])
    if report["temperature_at_bound"]:
        log.warning("T = %.3f is at the edge of the search range: the dev scores are barely informative "
                    "(train longer or check the dev split)", report["temperature"])
    for rel, v in report["per_relation"].items():
        chosen = "argmax" if v["threshold"] is None else f"threshold {v['threshold']:.3f}"
        held = (f", cross-fitted {v['cross_fitted_f1_threshold']:.3f} tuned vs {v['cross_fitted_f1_argmax']:.3f} argmax"
                if "cross_fitted_f1_threshold" in v else "")
        log.info("  %-14s %-15s dev F1 %.3f (argmax %.3f, support %d%s)", rel, chosen, v["f1"], v["f1_argmax"],
                 v["support"], held)
    return report


def main() -> None:
    args = cli_args("Fit temperature scaling and per-relation thresholds on the dev split.")
    run_main(calibrate_flow, args.params)


if __name__ == "__main__":
    main()

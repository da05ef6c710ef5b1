"""Prefect flow `augment`: data/split/train.jsonl -> data/augmented/train.jsonl (originals + kept
paraphrases) and reports/augment.json.

    python -m flows.augment [--params params.yaml] [--backend apertium|marian|synonym|none]

Translation batches (about ``augment.batch_size`` sentences, formed by
``stages.augment.content_batches``) are mapped as tasks over the runner of the ``run`` section;
batches already in ``<run.cache_dir>/translations`` are not sent.
For an on/off comparison, call ``run_augment(backend=..., out=..., report=...)``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from prefect import flow, task, unmapped

from flows.common import cli_args, load_params, load_run_params, make_task_runner, run_main
from stages.augment import AugmentParams, TranslationCache, augment_examples, check_backend, get_backend
from stages.errors import InputError
from stages.params import RunParams
from stages.records import Example, atomic_write_json, read_records, write_jsonl

log = logging.getLogger("relmine.augment")

@task(retries=1, retry_delay_seconds=2)
def round_trip_batch(params: AugmentParams, cache_dir: str, texts: list[str]) -> list[str]:
    """One batch through the backend (the backend is built once per process)."""
    return get_backend(params, cache_dir).round_trip(texts)


@flow(name="augment")
def augment_flow(
    params_path: str | None = None,
    backend: str | None = None,
    out: str | None = None,
    report_path: str | None = None,
    overrides: dict | None = None,
) -> dict:
    params: AugmentParams = load_params(AugmentParams, "augment", params_path)
    changes = dict(overrides or {})
    if backend:
        changes["backend"] = backend
    if out:
        changes["out"] = out
    if changes:
        params = dataclasses.replace(params, **changes)
        params.check()
    run: RunParams = load_run_params(params_path)

    train_path = Path(params.train)
    if not train_path.exists():
        raise InputError(f"{train_path}: not found; run the split stage first (dvc repro split)")
    try:
        train = read_records(train_path, Example)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{train_path}: not a valid example file ({exc}); rerun the split stage") from exc
    check_backend(params)  # stop early, saying what to install

    cache = TranslationCache(run.cache_dir) if params.backend != "none" else None

    def translate(batches: list[list[str]]) -> list[list[str]]:
        futures = round_trip_batch.map(unmapped(params), unmapped(run.cache_dir), batches)
        outs: list[list[str]] = []
        for i, fut in enumerate(futures, 1):
            outs.append(fut.result())
            log.info("translated batch %d/%d (%d sentences)", i, len(batches), len(batches[i - 1]))
        return outs

    result = augment_examples(train, params, translate, cache)
    report = dict(result.report)
    write_jsonl(params.out, result.examples)
    atomic_write_json(report_path or params.report, report)
    log.info(
        "augment (%s): %d originals + %d paraphrases -> %s; dropped %s",
        params.backend, len(result.examples) - len(result.added), len(result.added), params.out,
        {k: v for k, v in report["dropped"].items() if v},
    )
    return report


def run_augment(
    params_path: str | None = None,
    backend: str | None = None,
    out: str | None = None,
    report_path: str | None = None,
    **overrides,
) -> dict:
    """Run the augment flow with the runner from params; ``backend``/``out`` override params.

    For an augmentation on/off comparison (benchmarks/augment_effect.py), e.g.
    ``run_augment(backend="none", out="data/augmented/train_off.jsonl", report_path="reports/augment_off.json")``.
    Other ``augment`` keys can be overridden as keywords (``target_share=1.0``)."""
    run = load_run_params(params_path)
    return augment_flow.with_options(task_runner=make_task_runner(run))(
        params_path=params_path, backend=backend, out=out, report_path=report_path, overrides=overrides or None
    )


def main() -> None:
    args = cli_args(
        "Augment rare relation classes of the train split by back-translation.",
        [(["--backend"], {"choices": ["apertium", "marian", "synonym", "none"], "help": "override augment.backend"}),
         (["--out"], {"help": "override augment.out"}),
         (["--report"], {"default": None, "help": "report path (default augment.report)"})],
    )
    run_main(run_augment, args.params, backend=args.backend, out=args.out, report_path=args.report)


if __name__ == "__main__":
    main()

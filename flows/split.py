"""Prefect flow `split`: data/relations/*.jsonl (+ data/gold/*.jsonl) -> data/split/{train,dev,test,gold}.jsonl
and reports/split.json.

    python -m flows.split [--params params.yaml]
"""
from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow, task

from flows.common import cli_args, load_params, load_run_params, make_task_runner, run_main
from stages.errors import InputError
from stages.patterns import load_relation_names
from stages.records import Example, atomic_write_json, drop_repeated, scan_examples, write_jsonl
from stages.split import SplitParams, split_counts, split_examples, unexampled_relations

log = logging.getLogger("relmine.split")

@task
def read_examples(path: str, origin: str | None) -> tuple[list[Example], list[str]]:
    """Read one JSONL file; bad records are skipped and described (file:line and the fix)."""
    return scan_examples(path, origin)


def _input_files(params: SplitParams) -> list[tuple[str, str | None]]:
    rel_dir = Path(params.relations_dir)
    if not rel_dir.is_dir():
        raise InputError(f"{rel_dir}: not found; run the relations stage first (dvc repro relations)")
    files: list[tuple[str, str | None]] = [(str(p), None) for p in sorted(rel_dir.glob("*.jsonl"))]
    if not files:
        raise InputError(f"{rel_dir}: no *.jsonl files; run the relations stage first (dvc repro relations)")
    gold_dir = Path(params.gold_dir)
    if gold_dir.is_dir():
        # everything in data/gold is human-labelled, whatever its origin field says
        files += [(str(p), "gold") for p in sorted(gold_dir.glob("*.jsonl"))]
    return files


def schema_relations(path: str | None) -> list[str]:
    """Relation names declared in the relation pattern file (the relations stage validates it)."""
    if path is None:
        return []
    if not Path(path).is_file():
        log.warning("%s: not found, so relations of the schema without examples are not checked; fix: set "
                    "split.relation_patterns to the relations pattern file (or null)", path)
        return []
    return load_relation_names(path)


@flow(name="split")
def split_flow(params_path: str | None = None, report_path: str | None = None) -> dict:
    params = load_params(SplitParams, "split", params_path)
    files = _input_files(params)
    futures = read_examples.map([f for f, _ in files], [o for _, o in files])
    examples: list[Example] = []
    skipped: list[str] = []
    repeated: list[str] = []
    seen_gold: dict[str, str] = {}
    for i, ((path, origin), fut) in enumerate(zip(files, futures), 1):
        good, bad = fut.result()
        if origin == "gold":
            good, msg = drop_repeated(good, path, seen_gold)
            if msg:
                log.warning(msg)
                repeated.append(msg)
        examples += good
        skipped += bad
        if i % 20 == 0 or i == len(files):
            log.info("read %d/%d example files", i, len(files))
    for msg in skipped:
        log.error(msg)
    if not any(e.origin != "gold" for e in examples):
        raise InputError(f"{params.relations_dir}: no valid examples; check the relations stage output")

    result = split_examples(examples, params)
    for msg in unexampled_relations(result, schema_relations(params.relation_patterns)):
        log.warning(msg)
        result.warnings.append(msg)
    out = Path(params.out_dir)
    for name, exs in result.as_dict().items():
        write_jsonl(out / f"{name}.jsonl", exs)
    report = split_counts(result)
    report["group_by"] = params.group_by
    report["skipped_records"] = skipped
    report["repeated_gold"] = repeated
    atomic_write_json(report_path or params.report, report)
    log.info(
        "split %d examples: train %d, dev %d, test %d, gold %d",
        len(examples), len(result.train), len(result.dev), len(result.test), len(result.gold),
    )
    return report


def main() -> None:
    args = cli_args("Split labelled examples into train/dev/test (stratified, groups whole).")
    run_main(run_split, args.params)


def run_split(params_path: str | None = None, report_path: str | None = None) -> dict:
    """Run the flow with the task runner named in the run section of params."""
    run = load_run_params(params_path)
    return split_flow.with_options(task_runner=make_task_runner(run))(params_path=params_path, report_path=report_path)


if __name__ == "__main__":
    main()

"""Prefect flow `train`: data/augmented/train.jsonl + data/split/dev.jsonl -> models/relmine,
reports/train.json and DVCLive curves in dvclive/.

    python -m flows.train [--params params.yaml]

Multi-GPU: ``accelerate launch -m flows.train`` (one process per GPU; see stages/train.py).
"""
from __future__ import annotations

import logging
import os
from typing import Any

from prefect import flow, task

from flows.common import cli_args, load_params, run_main
from stages.records import atomic_write_json, read_examples

log = logging.getLogger("relmine.train")

def is_main_process() -> bool:
    """Under `accelerate launch` / torchrun every process runs this flow; rank 0 writes the outputs."""
    return int(os.environ.get("RANK", "0")) == 0


@task(name="train-model")
def train_task(params: Any, live_dir: str) -> dict:
    from dvclive import Live

    from stages.train import result_report, train_model

    train = read_examples(params.train, "augment")
    dev = read_examples(params.dev, "split")
    if not is_main_process():  # a second DVCLive writer would clobber rank 0's curves
        return result_report(train_model(params, train, dev), params)
    # DVCLive writes the curves (dvclive/plots/metrics) that dvc.yaml declares as plots
    with Live(dir=live_dir, save_dvc_exp=False, dvcyaml=None, report=None) as live:
        def log_fn(step: int, metrics: dict[str, float]) -> None:
            live.step = step
            for k, v in metrics.items():
                live.log_metric(k, v)

        result = train_model(params, train, dev, log_fn=log_fn)
    return result_report(result, params)


@flow(name="train")
def train_flow(params_path: str | None = None, live_dir: str | None = None) -> dict:
    from stages.train import TrainParams

    params = load_params(TrainParams, "train", params_path)
    report = train_task(params, live_dir or params.live_dir)
    if not is_main_process():
        return report
    atomic_write_json(params.report, report)
    log.info("trained in %.0f s: %.1f samples/s, %d epochs, best dev macro-F1 %.4f -> %s",
             report["wall_seconds"], report["samples_per_s"], report["epochs_run"], report["best_dev_macro_f1"],
             params.out_dir)
    return report


def main() -> None:
    args = cli_args("Train the relation classifier (LoRA + typed entity markers).")
    run_main(train_flow, args.params)


if __name__ == "__main__":
    main()

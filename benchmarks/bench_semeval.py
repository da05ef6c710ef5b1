"""SemEval-2010 Task 8 benchmark: relmine's train and evaluate code on human labels.

    python -m benchmarks.bench_semeval                      # full: 8000 train (10% held out as dev), 2717 test
    python -m benchmarks.bench_semeval --train-size 2000 --test-size 1000 --epochs 2   # a small version
    python -m benchmarks.bench_semeval --pipeline-recipe    # params.yaml's train section as it is (LoRA)

Imports ../shared/gold/semeval2010_task8 with benchmarks/semeval.py, trains with the ``train``
section of params.yaml under the benchmark's recipe (SEMEVAL_RECIPE: the default encoder
fully fine-tuned; flags override epochs, sizes, LoRA/full, lr, imbalance), predicts the test
sentences with ``load_model`` and writes the official score (macro-F1 over the nine
relations, direction-aware, Other excluded: the v1.2 scorer's definition) with relmine's
own metrics, the wall time, the params and, for a subset run, the time extrapolated to the
full data, to reports/bench/semeval.json.
Published anchor: R-BERT 89.25 (BERT-large). Goal: >= 83 with the default small encoder on
2 CPU cores in under an hour.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import train_params, write  # noqa: E402
from stages.evaluate import score  # noqa: E402
from stages.model import load_model  # noqa: E402
from benchmarks.semeval import load_semeval, official_score  # noqa: E402
from stages.train import train_model  # noqa: E402

SEMEVAL = ROOT.parent / "shared" / "gold" / "semeval2010_task8"
FULL_TRAIN = 8000
# What meets the goal on 2 CPU cores (84.8 in 14 min): full fine-tuning of the default encoder
# at a lower lr, 5 epochs, no imbalance handling (Other is a real class here, not "no relation").
# The pipeline's LoRA recipe, tuned for small noisy corpora, gave 75.2 on a 2,400-sentence subset.
# The epoch is picked by macro-F1 over the positive relations (the official score leaves Other out),
# as in the measured run, whatever the pipeline's default.
SEMEVAL_RECIPE = {"lora": False, "lr": 1e-4, "epochs": 5, "imbalance": "none", "select_by": "positive_macro_f1"}


def run(quick: bool = False, train_size: int = 0, test_size: int = 0, epochs: int | None = None,
        dev_fraction: float = 0.1, params_path: str = "params.yaml", overrides: dict | None = None,
        folder: Path = SEMEVAL, name: str = "semeval", relmine_metrics: bool = True) -> dict:
    """Train + score; quick: 800 train / 500 test sentences, one epoch (a smoke figure, minutes).
    relmine_metrics False leaves out the evaluate module's figures (the official score is plain
    Python): for a machine where `evaluate` cannot be imported (bench_cuda)."""
    if quick:
        train_size, test_size, epochs = train_size or 800, test_size or 500, epochs or 1
    t_wall = time.perf_counter()
    train_all, test = load_semeval(folder)
    p = train_params({**(overrides or {}), **({} if epochs is None else {"epochs": epochs})}, params_path)
    rng = random.Random(p.seed)
    train_all = train_all[:]
    rng.shuffle(train_all)
    n_dev = int(len(train_all) * dev_fraction)
    dev, train = train_all[:n_dev], train_all[n_dev:]
    if train_size:
        train = train[:train_size]
        dev = dev[: max(200, int(train_size * dev_fraction))]
    if test_size:
        test = test[:test_size]
    with tempfile.TemporaryDirectory() as tmp:
        p = dataclasses.replace(p, out_dir=str(Path(tmp) / "model"), max_train_examples=0)
        result = train_model(p, train, dev)
        model = load_model(p.out_dir)
        t0 = time.perf_counter()
        probs = model.predict_proba(test, p.eval_batch_size)
        infer_s = time.perf_counter() - t0
    pred = [model.labels[i] for i in probs.argmax(-1).tolist()]
    gold = [e.label for e in test]
    official = official_score(gold, pred)
    ours = score(gold, pred, bootstrap=200, seed=p.seed) if relmine_metrics else None
    wall = time.perf_counter() - t_wall
    per_sample = result.train_seconds / max(result.train_samples, 1)
    full_train_samples = int(FULL_TRAIN * (1 - dev_fraction)) * result.epochs_run
    figures = {
        "official_macro_f1": round(official["official_macro_f1"], 2),
        "official_micro_f1": round(official["micro_f1"], 2),
        "per_relation_f1": {r: round(v["f1"], 2) for r, v in official["per_relation"].items()},
        "relmine_metrics": ours and {k: ours[k] for k in ("accuracy", "micro_f1", "macro_f1", "macro_f1_all", "ci95")},
        "goal": ">= 83 official macro-F1, < 3600 s on 2 CPU cores",
        "anchor": "R-BERT (BERT-large) 89.25",
        "n_train": len(train), "n_dev": len(dev), "n_test": len(test),
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "best_dev_macro_f1": round(result.best_dev_macro_f1, 4),
        "train_samples_per_s": round(result.samples_per_s, 2),
        "infer_pairs_per_s": round(len(test) / infer_s, 1),
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "subset": bool(train_size or test_size),
        "extrapolated_full_wall_seconds": round(
            per_sample * full_train_samples                       # training on all 7200
            + (result.wall_seconds - result.train_seconds) * (FULL_TRAIN / max(len(train), 1))  # dev scoring etc.
            + infer_s * 2717 / max(len(test), 1), 0),
        "params": {k: v for k, v in dataclasses.asdict(p).items() if k not in ("out_dir", "train", "dev", "report")},
        "device": result.device,
    }
    write(name, figures)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="800 train / 500 test sentences, one epoch")
    ap.add_argument("--train-size", type=int, default=0, help="train sentences (0: all 7200 after the dev hold-out)")
    ap.add_argument("--test-size", type=int, default=0, help="test sentences (0: all 2717)")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--dev-fraction", type=float, default=0.1)
    ap.add_argument("--pipeline-recipe", action="store_true",
                    help="train with params.yaml's train section as it is, not SEMEVAL_RECIPE")
    ap.add_argument("--full-finetune", action="store_true", help="train.lora = false")
    ap.add_argument("--lr", type=float, default=None, help="override train.lr")
    ap.add_argument("--imbalance", default=None, choices=["none", "class_weights", "focal", "resample"],
                    help="override train.imbalance (SemEval's Other is a real class: none may score higher)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default=str(SEMEVAL), help="the SemEval-2010 Task 8 folder")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    over: dict = {} if a.pipeline_recipe else dict(SEMEVAL_RECIPE)
    if a.full_finetune:
        over["lora"] = False
    if a.lr is not None:
        over["lr"] = a.lr
    if a.imbalance is not None:
        over["imbalance"] = a.imbalance
    fig = run(a.quick, a.train_size, a.test_size, a.epochs, a.dev_fraction, a.params, over, Path(a.data))
    print(f"official macro-F1 {fig['official_macro_f1']:.2f} on {fig['n_test']} test sentences; "
          f"{fig['wall_seconds']:.0f} s (full run extrapolated: {fig['extrapolated_full_wall_seconds']:.0f} s); "
          f"{fig['train_samples_per_s']:.1f} train samples/s, {fig['infer_pairs_per_s']:.0f} pairs/s")


if __name__ == "__main__":
    main()

"""Does augmentation help? Train twice with the same params and seed, on the train split with and
without the back-translated examples, and score both on the test split.

    python -m benchmarks.augment_effect [--epochs N]

Reads the pipeline's outputs (run `make run` first): data/split/train.jsonl (augmentation off),
data/augmented/train.jsonl (on), data/split/dev.jsonl, data/split/test.jsonl. Writes
reports/augment_effect.json: macro-F1 over the positive relations (the headline), micro-F1, per-class
F1 and the train counts, for each arm. The decision is the plain argmax, so the figure measures the
training data, not the calibration.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.common import load_params  # noqa: E402
from stages.records import read_examples  # noqa: E402
from stages.records import atomic_write_json  # noqa: E402


def run(epochs: int | None = None, params_path: str | None = None) -> dict:
    from stages.evaluate import predict, score
    from stages.model import load_model
    from stages.train import TrainParams, train_model

    p = load_params(TrainParams, "train", params_path)
    if epochs:
        p = dataclasses.replace(p, epochs=epochs)
    dev = read_examples(str(ROOT / "data/split/dev.jsonl"), "split")
    test = read_examples(str(ROOT / "data/split/test.jsonl"), "split")
    arms = {"off": ROOT / "data/split/train.jsonl", "on": ROOT / "data/augmented/train.jsonl"}
    result: dict = {"params": dataclasses.asdict(p), "test_examples": len(test),
                    "test_by_label": dict(Counter(e.label for e in test)), "decision": "argmax"}
    with tempfile.TemporaryDirectory(prefix="relmine-augeffect-") as tmp:
        for arm, path in arms.items():
            train = read_examples(str(path), "augment")
            t0 = time.perf_counter()
            train_model(p, train, dev, out_dir=Path(tmp) / arm)
            model = load_model(Path(tmp) / arm)
            predicted, _ = predict(model, test, p.eval_batch_size)
            s = score([e.label for e in test], predicted)
            result[arm] = {
                "train_examples": len(train),
                "train_by_label": dict(Counter(e.label for e in train)),
                "macro_f1_positive": s["macro_f1"],
                "micro_f1_positive": s["micro_f1"],
                "accuracy": s["accuracy"],
                "per_class_f1": {k: v["f1"] for k, v in s["per_class"].items()},
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(f"augmentation {arm}: macro-F1 (positive relations) {s['macro_f1']:.4f}", flush=True)
    result["macro_f1_gain"] = round(result["on"]["macro_f1_positive"] - result["off"]["macro_f1_positive"], 4)
    atomic_write_json(ROOT / "reports" / "augment_effect.json", result)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs for both arms")
    ap.add_argument("--params", default=None)
    args = ap.parse_args()
    r = run(args.epochs, args.params)
    print(f"gain from augmentation: {r['macro_f1_gain']:+.4f} macro-F1")


if __name__ == "__main__":
    main()

"""Score a trained classifier on the test split (and on gold data when present).

Metrics come from the ``evaluate`` library with the metric module kept in the repo
(``metrics/relation_f1``, loaded by path: the hub is unreachable). Bootstrap intervals
resample the test examples and recompute the headline figures with the same module's
``relation_scores`` function.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from .params import INFER_BATCH_SIZE, check_inference_dtype
from .records import Example, atomic_write_text, write_jsonl

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
METRIC_DIR = ROOT / "metrics" / "relation_f1"
HEADLINE = ("accuracy", "micro_f1", "micro_f1_with_no_relation", "macro_f1", "macro_f1_all", "weighted_f1")


@dataclass
class EvalParams:
    model_dir: str = "models/relmine"
    test: str = "data/split/test.jsonl"
    gold_dir: str = "data/gold"
    calibration: str | None = "models/relmine.calibration.json"  # calibrate.out (None: found beside model_dir)
    reports_dir: str = "reports"
    bootstrap: int = 1000          # resamples for the 95% intervals (0: none)
    batch_size: int = INFER_BATCH_SIZE
    dtype: str = "auto"            # auto (bf16 where the CPU/GPU has it) | float32 | bfloat16
    seed: int = 13
    # score what `extract` outputs: calibrated per-relation thresholds + the schema's type
    # constraints (from the calibrate stage); false: the model's plain argmax
    calibrated: bool = True
    relation_patterns: str = "data/patterns/relations.yaml"
    entity_patterns: str = "data/patterns/entities.yaml"
    # gold sets scored side by side (patterns, label model, co-occurrence, model): name -> folder
    # of *.jsonl or a file; gold_dir is always scored too, as "gold". A missing folder is skipped
    # with a note.
    gold_sets: dict[str, str] = field(default_factory=lambda: {
        "paleo_dev": "../shared/gold/paleo_relations_dev",
        "curator_holdout": "tests/data/relations_curator_holdout.jsonl"})
    label_model: str = "data/label_model.json"   # the relations stage's fitted label model
    train_data: str = "data/augmented/train.jsonl"  # the model's training data (for the unseen-sentence subset)

    def check(self) -> None:
        for name in self.gold_sets:
            if not isinstance(name, str) or not name or "/" in name:
                raise ValueError(f"evaluate.gold_sets: name {name!r} must be a plain word (it names "
                                 "reports/gold_predictions/<name>.jsonl); rename it")
        if self.bootstrap < 0:
            raise ValueError("bootstrap must be >= 0")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        check_inference_dtype(self.dtype)


# --- the metric module ----------------------------------------------------------------


def load_metric(metric_dir: str | Path = METRIC_DIR) -> Any:
    """The evaluate metric, loaded from the repo folder (never from the hub)."""
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    import evaluate

    return evaluate.load(str(metric_dir))


@lru_cache(maxsize=None)
def relation_scores_fn(metric_dir: str = str(METRIC_DIR)) -> Callable[..., dict]:
    """The metric's pure ``relation_scores`` (scores.py beside the evaluate module): fast enough
    for bootstrap resamples, and loaded without `evaluate` and `datasets` (training's dev F1)."""
    path = Path(metric_dir) / "scores.py"
    spec = importlib.util.spec_from_file_location(f"relmine_metric_{Path(metric_dir).name}", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.relation_scores


def relation_scores(references: Sequence[str], predictions: Sequence[str], **kw: Any) -> dict:
    return relation_scores_fn()(references, predictions, **kw)


def bootstrap_intervals(references: Sequence[str], predictions: Sequence[str], n: int, seed: int,
                        keys: Sequence[str] = HEADLINE, level: float = 0.95) -> dict[str, dict[str, float]]:
    """Percentile bootstrap over examples: {metric: {low, high}}."""
    if n <= 0 or not references:
        return {}
    fn = relation_scores_fn()
    rng = random.Random(seed)
    size = len(references)
    draws: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n):
        idx = [rng.randrange(size) for _ in range(size)]
        s = fn([references[i] for i in idx], [predictions[i] for i in idx])
        for k in keys:
            draws[k].append(s[k])
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    out = {}
    for k, vals in draws.items():
        vals.sort()
        out[k] = {"low": vals[int(lo_q * (n - 1))], "high": vals[int(round(hi_q * (n - 1)))]}
    return out


# --- scoring ---------------------------------------------------------------------------


def score(references: Sequence[str], predictions: Sequence[str], bootstrap: int = 0, seed: int = 13,
          labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics through the evaluate module, plus bootstrap 95% intervals for the headline figures."""
    if not references:
        return {"n": 0}
    metric = load_metric()
    res = metric.compute(predictions=list(predictions), references=list(references), labels=labels)
    res = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}
    res["per_class"] = {c: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}
                        for c, d in res["per_class"].items()}
    if bootstrap:
        res["ci95"] = {k: {b: round(v, 4) for b, v in d.items()}
                       for k, d in bootstrap_intervals(references, predictions, bootstrap, seed).items()}
        res["bootstrap_resamples"] = bootstrap
    return res


def predict(model: Any, examples: Sequence[Example], batch_size: int) -> tuple[list[str], list[float]]:
    probs = model.predict_proba(examples, batch_size)
    conf, idx = probs.max(dim=-1)
    return [model.labels[i] for i in idx.tolist()], [round(c, 4) for c in conf.tolist()]


def error_records(examples: Sequence[Example], predicted: Sequence[str], confidence: Sequence[float]) -> list[dict]:
    """Misclassified examples with the rules that labelled them (to judge rule vs model)."""
    out = []
    for ex, p, c in zip(examples, predicted, confidence):
        if ex.label != p:
            out.append({
                "id": ex.id, "doc_id": ex.doc_id, "sent_id": ex.sent_id, "page": ex.page, "section": ex.section,
                "text": ex.text, "subj": ex.subj.__dict__, "obj": ex.obj.__dict__, "label": ex.label,
                "predicted": p, "confidence": c, "rules": ex.rules, "origin": ex.origin,
            })
    return out


def write_confusion(path_csv: Path, path_png: Path, references: Sequence[str], predictions: Sequence[str],
                    labels: Sequence[str]) -> None:
    """actual,predicted rows (DVC's confusion template) and a matplotlib heat map."""
    lines = ["actual,predicted"] + [f"{_csv(a)},{_csv(p)}" for a, p in zip(references, predictions)]
    atomic_write_text(path_csv, "\n".join(lines) + "\n")
    plot_confusion(path_png, references, predictions, labels)


def _csv(s: str) -> str:
    return f'"{s}"' if ("," in s or '"' in s) else s


def plot_confusion(path: Path, references: Sequence[str], predictions: Sequence[str], labels: Sequence[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(dict.fromkeys([*labels, *sorted(set(references) | set(predictions))]))
    pos = {c: i for i, c in enumerate(classes)}
    mat = [[0] * len(classes) for _ in classes]
    for a, p in zip(references, predictions):
        mat[pos[a]][pos[p]] += 1
    size = max(4.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(mat, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    top = max((max(r) for r in mat), default=0)
    for i, row in enumerate(mat):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if v > top / 2 else "black")
    ax.set_title(f"confusion on {len(references)} test examples")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


Decider = Callable[[Sequence[Example]], tuple[list[str], list[float]]]


def evaluate_split(model: Any, examples: Sequence[Example], p: EvalParams,
                   decide: Decider | None = None) -> tuple[dict, list[str], list[float]]:
    """Score ``examples``; ``decide`` (examples -> labels, confidences) replaces the argmax."""
    predicted, confidence = decide(examples) if decide else predict(model, examples, p.batch_size)
    refs = [e.label for e in examples]
    res = score(refs, predicted, p.bootstrap, p.seed)
    return res, predicted, confidence


def write_reports(reports: Path, model: Any, test: Sequence[Example], p: EvalParams,
                  decide: Decider | None = None) -> dict[str, Any]:
    """metrics.json, confusion.csv/png and errors.jsonl for the test split."""
    metrics, predicted, confidence = evaluate_split(model, test, p, decide)
    metrics["decision"] = getattr(decide, "name", "calibrated thresholds + type constraints") if decide else "argmax"
    metrics["model"] = p.model_dir
    metrics["test"] = p.test
    from .records import atomic_write_json

    atomic_write_json(reports / "metrics.json", metrics)
    write_confusion(reports / "confusion.csv", reports / "confusion.png", [e.label for e in test], predicted,
                    model.labels)
    write_jsonl(reports / "errors.jsonl", error_records(test, predicted, confidence))
    return metrics

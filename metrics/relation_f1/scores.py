"""The pure scoring behind the relation_f1 metric: standard library only.

relation_f1.py wraps it as an evaluate metric. Callers that need no evaluate machinery load
this file alone (stages/evaluate.py relation_scores_fn): training's dev F1 and the bootstrap
resamples, which would otherwise import `datasets` (about 5 s, and it needs a recent pyarrow).
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def relation_scores(references: Sequence[str], predictions: Sequence[str], no_relation: str = "NO_RELATION",
                    labels: Sequence[str] | None = None) -> dict:
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    n = len(references)
    gold = Counter(references)
    pred = Counter(predictions)
    hit = Counter(r for r, p in zip(references, predictions) if r == p)
    classes = list(labels) if labels is not None else sorted(set(gold) | set(pred))
    per_class = {}
    for c in classes:
        p = hit[c] / pred[c] if pred[c] else 0.0
        r = hit[c] / gold[c] if gold[c] else 0.0
        per_class[c] = {"precision": p, "recall": r, "f1": _f1(p, r), "support": gold[c]}
    positive = [c for c in classes if c != no_relation]
    tp = sum(hit[c] for c in positive)
    n_pred = sum(pred[c] for c in positive)
    n_gold = sum(gold[c] for c in positive)
    micro_p = tp / n_pred if n_pred else 0.0
    micro_r = tp / n_gold if n_gold else 0.0
    accuracy = sum(hit.values()) / n if n else 0.0
    support = sum(gold[c] for c in classes)
    return {
        "n": n,
        "accuracy": accuracy,
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": _f1(micro_p, micro_r),
        "micro_f1_with_no_relation": accuracy,
        "macro_f1": sum(per_class[c]["f1"] for c in positive) / len(positive) if positive else 0.0,
        "macro_f1_all": sum(v["f1"] for v in per_class.values()) / len(classes) if classes else 0.0,
        "weighted_f1": sum(v["f1"] * v["support"] for v in per_class.values()) / support if support else 0.0,
        "per_class": per_class,
    }

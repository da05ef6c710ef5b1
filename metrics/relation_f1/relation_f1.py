"""relation_f1: scores for relation classification, with NO_RELATION treated as "no relation".

Load by path (the hub is unreachable): ``evaluate.load("metrics/relation_f1")``.

Returns accuracy; micro-F1 over positive relations (NO_RELATION excluded, the relation
extraction convention: a NO_RELATION prediction is never a hit, a wrong positive is a false
positive); micro-F1 with NO_RELATION as a class (equal to accuracy for single-label data);
macro-F1 over positive relations and over all classes; support-weighted F1; and precision,
recall, F1 and support per class. Classes are those seen in references or predictions,
unless ``labels`` is given.

The pure function ``relation_scores`` does the work, so callers that need thousands of
resamples (bootstrap) can use it without the evaluate machinery.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

try:  # the evaluate machinery; relation_scores alone needs neither (training's dev F1, the
    # bootstrap), so a machine where `datasets` does not import (an old pyarrow) still trains
    import datasets
    import evaluate
except ImportError:
    evaluate = None

_DESCRIPTION = __doc__
_CITATION = ""
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted label names.
    references: list of gold label names.
    no_relation: the label meaning "no relation" (default "NO_RELATION").
    labels: optional list of classes to report (default: those seen).
Returns:
    accuracy, micro_f1, micro_precision, micro_recall, micro_f1_with_no_relation,
    macro_f1, macro_f1_all, weighted_f1, per_class {label: {precision, recall, f1, support}}.
"""


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


if evaluate is not None:
    @evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
    class RelationF1(evaluate.Metric):
        def _info(self) -> evaluate.MetricInfo:
            return evaluate.MetricInfo(
                description=_DESCRIPTION,
                citation=_CITATION,
                inputs_description=_KWARGS_DESCRIPTION,
                features=datasets.Features({"predictions": datasets.Value("string"),
                                            "references": datasets.Value("string")}),
            )

        def _compute(self, predictions, references, no_relation: str = "NO_RELATION", labels=None):
            return relation_scores(references, predictions, no_relation=no_relation, labels=labels)

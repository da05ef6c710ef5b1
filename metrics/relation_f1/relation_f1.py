"""relation_f1: scores for relation classification, with NO_RELATION treated as "no relation".

Load by path (the hub is unreachable): ``evaluate.load("metrics/relation_f1")``.

Returns accuracy; micro-F1 over positive relations (NO_RELATION excluded, the relation
extraction convention: a NO_RELATION prediction is never a hit, a wrong positive is a false
positive); micro-F1 with NO_RELATION as a class (equal to accuracy for single-label data);
macro-F1 over positive relations and over all classes; support-weighted F1; and precision,
recall, F1 and support per class. Classes are those seen in references or predictions,
unless ``labels`` is given.

The pure function ``relation_scores`` (scores.py, beside this file) does the work, so callers
that need thousands of resamples (bootstrap) or train can use it without the evaluate machinery.
"""
from __future__ import annotations

import datasets
import evaluate

from .scores import relation_scores

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

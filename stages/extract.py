"""From classified candidate pairs to the relation table users read.

One row per relation stated in a paper:

    subject, subject_type, relation, object, object_type, confidence, paper, page,
    section, sentence, pattern_agreed, count, pages

* A classified candidate is an ``Example`` (the pair, with the pattern label the
  relation templates gave it and the rules that fired) plus the model's decision
  (relation and calibrated confidence). NO_RELATION decisions make no row.
* ``pattern_agreed``: a template labelled the pair with the same relation.
* De-duplication: the same (subject, relation, object) in one paper (names compared
  with case and spacing folded) is one row with ``count`` occurrences and the sorted
  ``pages`` they are on; the row shows the most confident occurrence (its sentence,
  page, section), its confidence, and ``pattern_agreed`` if any occurrence agreed.
* ``write_rows`` writes CSV or JSONL by the file's extension, atomically. In CSV, a
  cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
  leading apostrophe, so a spreadsheet shows it as text instead of running it as a
  formula (the OWASP advice on CSV injection: mined sentences and names come from
  untrusted PDFs); ``read_rows`` takes the apostrophe off again.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .errors import InputError
from .params import INFER_BATCH_SIZE, check_inference_dtype
from .records import NO_RELATION, Example, atomic_write_text

COLUMNS = ("subject", "subject_type", "relation", "object", "object_type", "confidence", "paper", "page",
           "section", "sentence", "pattern_agreed", "count", "pages", "subject_norm", "object_norm")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
_SPACE = re.compile(r"\s+")


@dataclass
class RelationRow:
    subject: str
    subject_type: str
    relation: str
    object: str
    object_type: str
    confidence: float
    paper: str
    page: int
    section: str
    sentence: str
    pattern_agreed: bool
    count: int = 1
    pages: list[int] = field(default_factory=list)
    subject_norm: str = ""  # the full name an abbreviated subject stands for ("P. atavus" -> "Ptychagnostus atavus")
    object_norm: str = ""


def norm_name(text: str) -> str:
    """Key form of an entity name: spacing and case folded ("Wheeler  formation")."""
    return _SPACE.sub(" ", text).strip().casefold()


def classified_rows(examples: Sequence[Example], relations: Sequence[str], confidences: Sequence[float],
                    pattern_labels: Sequence[str] | None = None,
                    norms: Sequence[tuple[str | None, str | None]] | None = None) -> list[RelationRow]:
    """One row per positive decision, in input order. ``pattern_labels`` defaults to each
    example's label (what the templates said when the candidate was formed); ``norms`` gives
    each pair's (subject, object) normalised names where the entities stage found one."""
    if not (len(examples) == len(relations) == len(confidences)):
        raise ValueError("examples, relations and confidences must have the same length")
    pattern_labels = pattern_labels if pattern_labels is not None else [e.label for e in examples]
    norms = norms if norms is not None else [(None, None)] * len(examples)
    rows = []
    for ex, rel, conf, pat, (sn, on) in zip(examples, relations, confidences, pattern_labels, norms):
        if rel == NO_RELATION:
            continue
        rows.append(RelationRow(
            subject=ex.subj.text, subject_type=ex.subj.type, relation=rel, object=ex.obj.text,
            object_type=ex.obj.type, confidence=round(float(conf), 4), paper=ex.doc_id, page=ex.page,
            section=ex.section, sentence=ex.text, pattern_agreed=(pat == rel), count=1, pages=[ex.page],
            subject_norm=sn or "", object_norm=on or "",
        ))
    return rows


def dedupe(rows: Iterable[RelationRow]) -> list[RelationRow]:
    """Merge rows stating the same (subject, relation, object) in the same paper; an abbreviated
    name counts as the full name it stands for (``subject_norm`` / ``object_norm``)."""
    groups: dict[tuple, list[RelationRow]] = {}
    for r in rows:
        key = (r.paper, norm_name(r.subject_norm or r.subject), r.subject_type, r.relation,
               norm_name(r.object_norm or r.object), r.object_type)
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        best = max(members, key=lambda r: r.confidence)  # max() keeps the first among ties
        pages = sorted({p for r in members for p in (r.pages or [r.page])})
        full = {k: next((getattr(r, k) for r in members if getattr(r, k)), "") for k in ("subject_norm", "object_norm")}
        out.append(RelationRow(**{**asdict(best), "count": sum(r.count for r in members), "pages": pages,
                                  "pattern_agreed": any(r.pattern_agreed for r in members), **full}))
    # papers in input order, then most confident first
    paper_order = {p: i for i, p in enumerate(dict.fromkeys(r.paper for r in out))}
    out.sort(key=lambda r: (paper_order[r.paper], -r.confidence, r.subject, r.relation, r.object))
    return out


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown output format {suffix or '(no extension)'!r}; "
                         "fix: name the file .csv or .jsonl")
    return FORMATS[suffix]


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def guard_cell(value: str) -> str:
    """A text cell a spreadsheet will not run: an apostrophe before a formula start (also
    before apostrophes already in front of one, so ``unguard_cell`` restores any value)."""
    return "'" + value if value.lstrip("'").startswith(FORMULA_START) else value


def unguard_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and value.lstrip("'").startswith(FORMULA_START) else value


def rows_to_csv(rows: Sequence[RelationRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        d = asdict(r)
        d["pages"] = ";".join(str(p) for p in r.pages)
        d["pattern_agreed"] = "true" if r.pattern_agreed else "false"
        w.writerow([guard_cell(d[c]) if isinstance(d[c], str) else d[c] for c in COLUMNS])
    return buf.getvalue()


def write_rows(path: str | Path, rows: Sequence[RelationRow]) -> int:
    """CSV (pages joined by ';') or JSONL (pages as a list), by extension; atomic."""
    fmt = output_format(path)
    if fmt == "csv":
        atomic_write_text(path, rows_to_csv(rows))
    else:
        atomic_write_text(path, "".join(json.dumps({c: asdict(r)[c] for c in COLUMNS}, ensure_ascii=False) + "\n"
                                        for r in rows))
    return len(rows)


def read_rows(path: str | Path) -> list[RelationRow]:
    """Read back a file written by ``write_rows`` (tests, downstream scripts)."""
    fmt = output_format(path)
    text = Path(path).read_text(encoding="utf-8")
    out = []
    if fmt == "csv":
        for d in csv.DictReader(io.StringIO(text)):
            d = {k: unguard_cell(v) for k, v in d.items()}
            out.append(RelationRow(
                subject=d["subject"], subject_type=d["subject_type"], relation=d["relation"], object=d["object"],
                object_type=d["object_type"], confidence=float(d["confidence"]), paper=d["paper"],
                page=int(d["page"]), section=d["section"], sentence=d["sentence"],
                pattern_agreed=d["pattern_agreed"] == "true", count=int(d["count"]),
                pages=[int(p) for p in d["pages"].split(";") if p], subject_norm=d.get("subject_norm", ""),
                object_norm=d.get("object_norm", "")))
    else:
        for line in text.splitlines():
            if line.strip():
                out.append(RelationRow(**json.loads(line)))
    return out


@dataclass
class Decision:
    labels: list[str]            # the decision: the model's, then the label model's veto
    confidence: list[float]
    model_labels: list[str]      # the model's calibrated decision before the veto
    vetoed: int = 0              # candidates the veto made NO_RELATION


def classify_pairs(model, examples: Sequence[Example], calibration, allowed, min_confidence: float | None = None,
                   batch_size: int = INFER_BATCH_SIZE, veto=None) -> Decision:
    """Decide a relation per candidate: the model's logits, the schema's type constraint,
    the calibration's temperature and per-relation thresholds (``min_confidence``, when
    given, replaces the thresholds), then ``veto`` (a ``stages.weak.LabelModelVeto``: the
    candidates the label model is sure are unrelated become NO_RELATION). ``calibration``
    None: T = 1 and the argmax (or ``min_confidence``). ``model`` needs ``labels`` and
    ``logits(examples, batch_size)``; ``examples`` need the ``rules`` that fired (the veto reads them)."""
    from .calibrate import Calibration

    if not examples:
        return Decision([], [], [])
    logits = model.logits(examples, batch_size)
    logits = logits.numpy() if hasattr(logits, "numpy") else logits
    cal = calibration or Calibration(labels=list(model.labels))
    probs = cal.proba(logits, [e.subj.type for e in examples], [e.obj.type for e in examples], allowed)
    labels, conf = cal.decide(probs, min_confidence)
    model_labels, conf = list(labels), [float(c) for c in conf]
    if veto is None:
        return Decision(model_labels, conf, model_labels)
    labels, conf = veto.apply(examples, model_labels, conf)
    return Decision(labels, conf, model_labels, sum(a != b for a, b in zip(labels, model_labels)))


def classify(model, examples: Sequence[Example], calibration, allowed, min_confidence: float | None = None,
             batch_size: int = INFER_BATCH_SIZE, veto=None) -> tuple[list[str], list[float]]:
    """``classify_pairs``' labels and confidences."""
    d = classify_pairs(model, examples, calibration, allowed, min_confidence, batch_size, veto)
    return d.labels, d.confidence


class Decider:
    """The decision extract, evaluate and review make, as one callable: ``decider(examples)`` gives
    (labels, confidences), ``decider.detail(examples)`` the ``Decision`` with the model's own labels."""

    def __init__(self, model, calibration, allowed, batch_size: int = INFER_BATCH_SIZE, veto=None,
                 min_confidence: float | None = None):
        self.model, self.calibration, self.allowed = model, calibration, allowed
        self.batch_size, self.veto, self.min_confidence = batch_size, veto, min_confidence

    def detail(self, examples: Sequence[Example]) -> Decision:
        return classify_pairs(self.model, examples, self.calibration, self.allowed, self.min_confidence,
                              self.batch_size, self.veto)

    def __call__(self, examples: Sequence[Example]) -> tuple[list[str], list[float]]:
        d = self.detail(examples)
        return d.labels, d.confidence

    @property
    def name(self) -> str:
        """What decides, for the reports."""
        out = "calibrated thresholds + type constraints" if self.calibration is not None else "argmax + type constraints"
        if self.veto is not None:
            out += f" + label-model veto (NO_RELATION >= {self.veto.threshold})"
        return out


def decision_veto(calibration, relation_patterns: str | Path, entity_patterns: str | Path):
    """The calibration's label-model veto over the rules of the pattern files, or None (no
    calibration, or one without a veto: the pattern files are then not read)."""
    if calibration is None or calibration.veto_no_relation is None or not calibration.label_model:
        return None
    from .patterns import load_entity_types, load_relations_spec
    from .weak import LabelModelVeto

    spec = load_relations_spec(relation_patterns, load_entity_types(entity_patterns))
    return LabelModelVeto(calibration.label_model, spec, calibration.veto_no_relation)


@dataclass
class ExtractParams:
    model_dir: str = "models/relmine"
    calibration: str | None = None  # None: <model_dir>/calibration.json or <model_dir>.calibration.json
    entity_patterns: str = "data/patterns/entities.yaml"
    relation_patterns: str = "data/patterns/relations.yaml"
    skip_sections: list[str] = field(default_factory=lambda: ["references"])
    regex_timeout_s: float = 1.0
    min_confidence: float | None = None  # set: replaces every per-relation threshold
    batch_size: int = INFER_BATCH_SIZE
    dtype: str = "auto"

    def check(self) -> None:
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise ValueError("min_confidence must be in [0, 1] (or null)")
        if self.batch_size < 1 or self.regex_timeout_s <= 0:
            raise ValueError("batch_size must be >= 1 and regex_timeout_s > 0")
        check_inference_dtype(self.dtype)

"""The review loop toward a gold set: export a batch for people, import their labels.

Export (``select_batch`` + writers): per class, the ``per_class`` least confident
predictions of the model (examples it predicted as that class, lowest calibrated
confidence first: where it is most likely wrong), the ``per_class`` pairs the model gives
that class while the label model (``Example.probs``) gives another (the label model most
against it first: one of the two is wrong, and a person's label settles which teaches), the
``per_class`` pairs of that label-model class on which the label sources conflict (a template
and a veto both fired: the label model's least sure pairs first), and a seeded random sample of
``per_class`` examples labelled with that class (to measure how good the weak labels are).
Examples already in the gold set are left out. Written as

* ``tasks.json``: a Label Studio import file; each task's ``data`` holds the sentence
  (``text``) and the example's fields, and a pre-annotation marks the subject and the
  object (labels ``SUBJ-<TYPE>`` / ``OBJ-<TYPE>``) and proposes a relation choice;
* ``label_config.xml``: the matching Label Studio labelling config;
* ``batch.csv``: the same items for a spreadsheet: the sentence with ``[[subject]]``
  and ``<<object>>`` marked, the labels to compare, and an empty ``reviewer_label``.

Import (``import_batch``) reads a finished batch: a Label Studio export (JSON, full or
JSON-MIN) or the filled CSV, into ``Example`` records with origin "gold" and the
reviewer's label. Rows left without a label are skipped (and counted); a label that is
not a relation of the schema, or that the schema does not allow for the pair's types,
stops the import with a message naming the row and the allowed labels.

The spans are re-sliced from the row's ``text`` and offsets, so an edited sentence or a
shifted offset would import a wrong gold span ("s Pojetaia runnega") without a word:
each slice is checked against the span text exported beside it (the CSV's ``subject`` /
``object`` columns, the task's ``subj_text`` / ``obj_text``, a Label Studio span's own
``text``) and the import stops naming every misaligned row and the fix. A task missing a
field is named too.
"""
from __future__ import annotations

import csv
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from xml.sax.saxutils import quoteattr

from .errors import InputError
from .params import INFER_BATCH_SIZE, check_inference_dtype
from .records import NO_RELATION, Example, Span

CSV_COLUMNS = ("id", "doc_id", "page", "section", "sentence", "subject", "subject_type", "object", "object_type",
               "predicted", "confidence", "pattern_label", "label_model", "label_model_p", "reason", "allowed_labels", "reviewer_label", "notes",
               "sent_id", "text", "subj_start", "subj_end", "obj_start", "obj_end", "rules")
# what a task's data must hold to rebuild its example (written by ``_task_data``)
TASK_FIELDS = ("subj_start", "subj_end", "subj_type", "obj_start", "obj_end", "obj_type")
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
REASON_LEAST_CONFIDENT = "least_confident"
REASON_PATTERN_SAMPLE = "pattern_sample"
REASON_LM_DISAGREES = "label_model_disagrees"
REASON_SOURCES_CONFLICT = "sources_conflict"


@dataclass
class ReviewItem:
    example: Example
    reason: str  # least_confident | pattern_sample
    predicted: str | None = None  # model's decision (None: no model)
    confidence: float | None = None
    allowed_labels: list[str] = field(default_factory=list)

    @property
    def pattern_label(self) -> str:
        return self.example.label

    @property
    def label_model(self) -> tuple[str | None, float | None]:
        return label_model_choice(self.example)


def label_model_choice(ex: Example) -> tuple[str | None, float | None]:
    """The label model's most probable class for an example and its probability (None without probs)."""
    from .weak import most_probable

    if not ex.probs:
        return None, None
    best = most_probable(ex.probs)
    return best, float(ex.probs[best])


def source_conflicts(examples: Sequence[Example], relation_patterns: str | Path, entity_patterns: str | Path) -> list[bool]:
    """Per example: do its label sources vote for different classes (a template and a veto, or
    two relations)? Votes as the label model sees them, each veto apart (stages/weak.py)."""
    from .patterns import load_entity_types, load_relations_spec
    from .weak import Sources

    spec = load_relations_spec(relation_patterns, load_entity_types(entity_patterns))
    sources = Sources(spec, {}, consistency=True, combine_vetoes=False)
    consistent = sources.templated_pairs(examples)
    return [len(set(sources.votes(e, consistent).values())) > 1 for e in examples]


def allowed_labels_for(subj_type: str, obj_type: str, allowed: Mapping[str, Iterable[Sequence[str]]]) -> list[str]:
    """The relations the schema allows for a (subject type, object type) pair, then NO_RELATION."""
    return [rel for rel, args in allowed.items() if (subj_type, obj_type) in {tuple(a) for a in args}] + [NO_RELATION]


# --- selecting a batch --------------------------------------------------------------------


def select_batch(examples: Sequence[Example], predicted: Sequence[str] | None, confidence: Sequence[float] | None,
                 classes: Sequence[str], per_class: int, seed: int, allowed: Mapping[str, Iterable[Sequence[str]]],
                 exclude_ids: Iterable[str] = (), conflicts: Sequence[bool] | None = None) -> list[ReviewItem]:
    """Per class: the least confident predictions, the predictions the label model disagrees
    with (examples with ``probs``), the pairs whose label sources conflict (``conflicts``), then a
    seeded sample of labelled examples not already chosen. The same inputs and seed give the
    same batch."""
    skip = set(exclude_ids)
    pool = [i for i, e in enumerate(examples) if e.id not in skip]
    chosen: dict[int, ReviewItem] = {}

    def item(i: int, reason: str) -> ReviewItem:
        e = examples[i]
        return ReviewItem(e, reason, predicted[i] if predicted is not None else None,
                          round(float(confidence[i]), 4) if confidence is not None else None,
                          allowed_labels_for(e.subj.type, e.obj.type, allowed))

    for cls in classes:
        if predicted is not None and confidence is not None:
            mine = sorted((i for i in pool if predicted[i] == cls and i not in chosen),
                          key=lambda i: (confidence[i], examples[i].id))
            for i in mine[:per_class]:
                chosen[i] = item(i, REASON_LEAST_CONFIDENT)
            # the model says cls, the label model says otherwise: the label model's P(cls) lowest first
            against = sorted((i for i in pool if predicted[i] == cls and i not in chosen and examples[i].probs
                              and label_model_choice(examples[i])[0] != cls),
                             key=lambda i: (examples[i].probs.get(cls, 0.0), examples[i].id))
            for i in against[:per_class]:
                chosen[i] = item(i, REASON_LM_DISAGREES)
        if conflicts is not None:
            # the sources disagree on a pair the label model gives cls: its least sure first
            torn = sorted((i for i in pool if conflicts[i] and i not in chosen and examples[i].label == cls),
                          key=lambda i: (label_model_choice(examples[i])[1] or 0.0, examples[i].id))
            for i in torn[:per_class]:
                chosen[i] = item(i, REASON_SOURCES_CONFLICT)
        labelled = sorted((i for i in pool if examples[i].label == cls and i not in chosen),
                          key=lambda i: examples[i].id)  # sorted first: the sample ignores input order
        rng = random.Random(f"{seed}:{cls}")
        for i in rng.sample(labelled, min(per_class, len(labelled))):
            chosen[i] = item(i, REASON_PATTERN_SAMPLE)
    return list(chosen.values())


# --- export formats -------------------------------------------------------------------------


def marked_sentence(ex: Example) -> str:
    """The sentence with [[subject]] and <<object>> marked."""
    marks = sorted([(ex.subj.start, ex.subj.end, "[[", "]]"), (ex.obj.start, ex.obj.end, "<<", ">>")], reverse=True)
    text = ex.text
    for s, e, left, right in marks:
        text = text[:s] + left + text[s:e] + right + text[e:]
    return text


def entity_label(role: str, etype: str) -> str:
    return f"{'SUBJ' if role == 'subj' else 'OBJ'}-{etype}"


def label_config(entity_types: Sequence[str], relations: Sequence[str]) -> str:
    """Label Studio labelling config: the sentence, role+type span labels, one relation choice."""
    labels = "\n".join(f"    <Label value={quoteattr(entity_label(r, t))}/>" for r in ("subj", "obj") for t in entity_types)
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in [*relations, NO_RELATION])
    return f"""<View>
  <Header value="Which relation does the sentence state between the subject (SUBJ) and the object (OBJ)?"/>
  <Text name="pair" value="$pair"/>
  <Labels name="entity" toName="text">
{labels}
  </Labels>
  <Text name="text" value="$text"/>
  <Choices name="relation" toName="text" choice="single" showInline="true" required="true">
{choices}
  </Choices>
  <TextArea name="notes" toName="text" placeholder="notes (optional)" maxSubmissions="1"/>
</View>
"""


def _task_data(it: ReviewItem) -> dict[str, Any]:
    e = it.example
    return {
        "text": e.text,
        "pair": f"SUBJ {e.subj.text} ({e.subj.type}) -> OBJ {e.obj.text} ({e.obj.type}); "
                f"model: {it.predicted or '-'}; patterns: {it.pattern_label}",
        "example_id": e.id, "doc_id": e.doc_id, "sent_id": e.sent_id, "page": e.page, "section": e.section,
        "subj_start": e.subj.start, "subj_end": e.subj.end, "subj_type": e.subj.type, "subj_text": e.subj.text,
        "obj_start": e.obj.start, "obj_end": e.obj.end, "obj_type": e.obj.type, "obj_text": e.obj.text,
        "pattern_label": it.pattern_label, "predicted": it.predicted, "confidence": it.confidence,
        "label_model": it.label_model[0], "label_model_p": it.label_model[1], "reason": it.reason, "rules": list(e.rules), "allowed_labels": list(it.allowed_labels),
    }


def label_studio_tasks(items: Sequence[ReviewItem], model_version: str = "relmine") -> list[dict[str, Any]]:
    tasks = []
    for it in items:
        e = it.example
        proposed = it.predicted or it.pattern_label
        result = [
            {"id": "subj", "from_name": "entity", "to_name": "text", "type": "labels",
             "value": {"start": e.subj.start, "end": e.subj.end, "text": e.subj.text,
                       "labels": [entity_label("subj", e.subj.type)]}},
            {"id": "obj", "from_name": "entity", "to_name": "text", "type": "labels",
             "value": {"start": e.obj.start, "end": e.obj.end, "text": e.obj.text,
                       "labels": [entity_label("obj", e.obj.type)]}},
            {"id": "rel", "from_name": "relation", "to_name": "text", "type": "choices",
             "value": {"choices": [proposed]}},
        ]
        pred: dict[str, Any] = {"model_version": model_version if it.predicted else "patterns", "result": result}
        if it.confidence is not None:
            pred["score"] = it.confidence
        tasks.append({"data": _task_data(it), "predictions": [pred]})
    return tasks


def review_csv(items: Sequence[ReviewItem]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for it in items:
        e = it.example
        w.writerow({
            "id": e.id, "doc_id": e.doc_id, "page": e.page, "section": e.section, "sentence": marked_sentence(e),
            "subject": e.subj.text, "subject_type": e.subj.type, "object": e.obj.text, "object_type": e.obj.type,
            "predicted": it.predicted or "", "confidence": "" if it.confidence is None else it.confidence,
            "pattern_label": it.pattern_label, "label_model": it.label_model[0] or "",
            "label_model_p": "" if it.label_model[1] is None else round(it.label_model[1], 4),
            "reason": it.reason, "allowed_labels": " | ".join(it.allowed_labels),
            "reviewer_label": "", "notes": "", "sent_id": e.sent_id, "text": e.text,
            "subj_start": e.subj.start, "subj_end": e.subj.end, "obj_start": e.obj.start, "obj_end": e.obj.end,
            "rules": " ".join(e.rules),
        })
    return buf.getvalue()


# --- import ---------------------------------------------------------------------------------


@dataclass
class ImportResult:
    examples: list[Example]
    skipped: list[str]  # rows/tasks without a reviewer label
    duplicates: int = 0


class LabelChecker:
    """Turns a reviewer's label into a schema label, or an InputError naming the row."""

    def __init__(self, allowed: Mapping[str, Iterable[Sequence[str]]], source: str):
        self.allowed = {rel: {tuple(a) for a in args} for rel, args in allowed.items()}
        self.names = [*self.allowed, NO_RELATION]
        self.by_fold = {n.casefold(): n for n in self.names}
        self.source = source

    def __call__(self, raw: str, where: str, subj_type: str, obj_type: str) -> str:
        label = self.by_fold.get(raw.strip().casefold())
        if label is None:
            raise InputError(f"{self.source}: {where}: unknown label {raw.strip()!r}; allowed labels: "
                             f"{', '.join(self.names)}; fix the label and import again")
        if label != NO_RELATION and (subj_type, obj_type) not in self.allowed[label]:
            ok = [r for r in self.names if r == NO_RELATION or (subj_type, obj_type) in self.allowed[r]]
            raise InputError(f"{self.source}: {where}: label {label!r} does not take a {subj_type} subject and a "
                             f"{obj_type} object; allowed labels for this pair: {', '.join(ok)}; "
                             "fix the label and import again")
        return label


def _gold(ex_id: str, doc_id: str, sent_id: int, text: str, subj: Span, obj: Span, label: str, rules: list[str],
          page: int, section: str, source: str, where: str) -> Example:
    ex = Example(id=ex_id, doc_id=doc_id, sent_id=sent_id, text=text, subj=subj, obj=obj, label=label,
                 rules=rules, origin="gold", page=page, section=section)
    try:
        ex.validate()
    except ValueError as exc:
        raise InputError(f"{source}: {where}: {exc}; fix the row's spans or export the batch again") from exc
    return ex


def _int(v: Any, source: str, where: str, name: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: {where}: column {name!r} = {v!r} is not a number; "
                         "fix: keep the exported columns unchanged") from exc


def _misaligned(where: str, text: str, spans: Iterable[tuple[str, int, int, str | None]]) -> str | None:
    """Why a row's offsets don't point at its exported span texts, or None."""
    for role, start, end, expected in spans:
        got = text[start:end] if 0 <= start < end <= len(text) else None
        if expected is not None and got != expected:
            shown = f"reads {got!r}" if got is not None else f"is outside the {len(text)}-character text"
            return (f"{where}: the {role} span {start}:{end} of the text {shown}, but the {role} is {expected!r} "
                    "(the text or the offsets were edited)")
    return None


def _refuse_misaligned(path: Path, misaligned: list[str], fix: str) -> None:
    if misaligned:
        shown = "; ".join(misaligned[:10]) + (f"; and {len(misaligned) - 10} more" if len(misaligned) > 10 else "")
        raise InputError(f"{path}: {len(misaligned)} row(s) whose spans no longer match: {shown}; nothing was "
                         f"imported; fix: {fix}")


def read_review_csv(path: str | Path, allowed: Mapping[str, Iterable[Sequence[str]]]) -> ImportResult:
    path = Path(path)
    check = LabelChecker(allowed, str(path))
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets often add a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc}); fix: save the sheet as UTF-8 CSV") from exc
    reader = csv.DictReader(io.StringIO(text))
    need = {"id", "reviewer_label", "text", "subj_start", "subj_end", "obj_start", "obj_end", "subject_type",
            "object_type"}
    missing = sorted(need - set(reader.fieldnames or []))
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; fix: fill in the batch.csv written by "
                         "`python -m flows.review export` without removing columns")
    out, skipped, misaligned = [], [], []
    for lineno, row in enumerate(reader, 2):  # line 1 is the header
        where = f"line {lineno} (id {row.get('id')})"
        raw = (row.get("reviewer_label") or "").strip()
        if not raw:
            skipped.append(row.get("id") or where)
            continue
        st, ot = row["subject_type"], row["object_type"]
        label = check(raw, where, st, ot)
        t = row["text"]
        ss, se = _int(row["subj_start"], str(path), where, "subj_start"), _int(row["subj_end"], str(path), where, "subj_end")
        os_, oe = _int(row["obj_start"], str(path), where, "obj_start"), _int(row["obj_end"], str(path), where, "obj_end")
        bad = _misaligned(where, t, (("subject", ss, se, row.get("subject")), ("object", os_, oe, row.get("object"))))
        if bad:
            misaligned.append(bad)
            continue
        out.append(_gold(row["id"], row.get("doc_id", ""), _int(row.get("sent_id") or 0, str(path), where, "sent_id"), t,
                         Span(ss, se, st, t[ss:se]), Span(os_, oe, ot, t[os_:oe]), label,
                         (row.get("rules") or "").split(), _int(row.get("page") or 0, str(path), where, "page"),
                         row.get("section", ""), str(path), where))
    _refuse_misaligned(path, misaligned, "restore the text, subject, object and *_start/*_end columns as exported "
                       "(fill in only reviewer_label and notes), or export the batch again")
    return ImportResult(out, skipped)


def _latest_annotation(task: dict) -> dict | None:
    anns = [a for a in task.get("annotations") or task.get("completions") or []
            if not a.get("was_cancelled") and a.get("result")]
    if not anns:
        return None
    return max(anns, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def read_label_studio(path: str | Path, allowed: Mapping[str, Iterable[Sequence[str]]]) -> ImportResult:
    """A Label Studio JSON export (tasks with ``annotations``) or a JSON-MIN export (flat
    records with ``relation``). Reviewer span corrections (SUBJ-/OBJ- labels) are kept."""
    path = Path(path)
    check = LabelChecker(allowed, str(path))
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON export ({exc}); fix: export the project as JSON "
                         "from Label Studio") from exc
    if isinstance(tasks, dict):
        tasks = [tasks]
    out, skipped, misaligned = [], [], []
    for n, task in enumerate(tasks, 1):
        data = task.get("data", task)  # JSON-MIN puts the data fields at the top level
        where = f"task {n} (id {task.get('id', '-')}, example {data.get('example_id', '-')})"
        if "example_id" not in data or "text" not in data:
            raise InputError(f"{path}: {where}: no example_id/text in the task data; fix: import the tasks.json "
                             "written by `python -m flows.review export` into Label Studio and export that project")
        missing = [k for k in TASK_FIELDS if k not in data]
        if missing:
            raise InputError(f"{path}: {where}: field(s) {', '.join(missing)} missing from the task data; fix: "
                             "import the tasks.json written by `python -m flows.review export` unchanged into Label "
                             "Studio and export that project again (or restore the fields in this task)")
        text = data["text"]
        num = {k: _int(data[k], str(path), where, k) for k in ("subj_start", "subj_end", "obj_start", "obj_end")}
        subj = Span(num["subj_start"], num["subj_end"], data["subj_type"], text[num["subj_start"]:num["subj_end"]])
        obj = Span(num["obj_start"], num["obj_end"], data["obj_type"], text[num["obj_start"]:num["obj_end"]])
        checks = [("subject", subj.start, subj.end, data.get("subj_text")),
                  ("object", obj.start, obj.end, data.get("obj_text"))]
        raw = None
        if "annotations" in task or "completions" in task:
            ann = _latest_annotation(task)
            for r in (ann or {}).get("result", []):
                v = r.get("value", {})
                if r.get("type") == "choices" and v.get("choices"):
                    raw = v["choices"][0]
                elif r.get("type") == "labels" and v.get("labels"):
                    lab = v["labels"][0]
                    role, _, etype = lab.partition("-")
                    a, b = _int(v.get("start"), str(path), where, "start"), _int(v.get("end"), str(path), where, "end")
                    span = Span(a, b, etype, text[a:b])
                    if role == "SUBJ":
                        subj = span
                        checks[0] = ("subject", a, b, v.get("text"))
                    elif role == "OBJ":
                        obj = span
                        checks[1] = ("object", a, b, v.get("text"))
        else:
            rel = data.get("relation")
            raw = rel[0] if isinstance(rel, list) and rel else (rel if isinstance(rel, str) else None)
        if not raw or not str(raw).strip():
            skipped.append(str(data.get("example_id")))
            continue
        label = check(str(raw), where, subj.type, obj.type)
        bad = _misaligned(where, text, checks)
        if bad:
            misaligned.append(bad)
            continue
        out.append(_gold(data["example_id"], data.get("doc_id", ""), _int(data.get("sent_id") or 0, str(path), where,
                         "sent_id"), text, subj, obj, label, list(data.get("rules") or []),
                         _int(data.get("page") or 0, str(path), where, "page"), data.get("section", ""),
                         str(path), where))
    _refuse_misaligned(path, misaligned, "export the tasks from Label Studio again without editing the JSON")
    return ImportResult(out, skipped)


def import_batch(path: str | Path, allowed: Mapping[str, Iterable[Sequence[str]]]) -> ImportResult:
    """Read a finished batch by its extension (.csv, or .json from Label Studio); a
    duplicated example id keeps its last label."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; fix: give the filled batch.csv or the Label Studio JSON export")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        res = read_review_csv(path, allowed)
    elif suffix == ".json":
        res = read_label_studio(path, allowed)
    else:
        raise InputError(f"{path}: unknown batch format {suffix!r}; fix: give a .csv (filled batch.csv) or a "
                         ".json (Label Studio export)")
    by_id: dict[str, Example] = {}
    for ex in res.examples:
        by_id[ex.id] = ex
    res.duplicates = len(res.examples) - len(by_id)
    res.examples = list(by_id.values())
    return res


def check_batch_name(name: str) -> str:
    if not BATCH_NAME.match(name):
        raise InputError(f"batch name {name!r}: use letters, digits, '_', '-' or '.' (it names "
                         "data/gold/<batch>.jsonl); fix: e.g. --batch review-001")
    return name


@dataclass
class ReviewParams:
    examples: list[str] = field(default_factory=lambda: ["data/relations"])  # JSONL files or folders
    model_dir: str = "models/relmine"
    calibration: str | None = None  # None: found with the model
    gold_dir: str = "data/gold"
    entity_patterns: str = "data/patterns/entities.yaml"
    relation_patterns: str = "data/patterns/relations.yaml"
    per_class: int = 10
    seed: int = 13
    batch_size: int = INFER_BATCH_SIZE
    dtype: str = "auto"

    def check(self) -> None:
        if self.per_class < 1:
            raise ValueError("per_class must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        check_inference_dtype(self.dtype)

"""SemEval-2010 Task 8 -> Example records, and the task's official score.

File format (TRAIN_FILE.TXT, TEST_FILE_FULL.TXT): blocks of four lines,
    8001<TAB>"The most common <e1>audits</e1> were about <e2>waste</e2> and recycling."
    Message-Topic(e1,e2)
    Comment: ...
    <blank>
Labels keep their direction (``Cause-Effect(e2,e1)``); ``Other`` becomes NO_RELATION so
relmine's metrics treat it as "no relation". The subject (E1 marker) is always <e1>, the
object <e2>; the data has no entity types, so both get the type ``ENT``.

The official score (semeval2010_task8_scorer-v1.2.pl, "(9+1)-way evaluation with
directionality taken into account") is the macro-average over the nine relations (Other
excluded) of per-relation F1, where a prediction of the right relation in the wrong
direction counts as wrong, and as a prediction of that relation for precision.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Sequence

from stages.errors import InputError
from stages.records import NO_RELATION, Example, Span

OTHER = "Other"
ENTITY_TYPE = "ENT"
TRAIN_FILE = "TRAIN_FILE.TXT"
TEST_FILE = "TEST_FILE_FULL.TXT"

_HEAD = re.compile(r'^(\d+)\t"(.*)"\s*$')
_LABEL = re.compile(r"^(Other|[A-Za-z]+-[A-Za-z]+\(e[12],e[12]\))$")
_TAG = re.compile(r"</?e[12]>")


def parse_tagged(sentence: str) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """Strip <e1>/<e2> tags; return the plain text and the two character spans."""
    spans: dict[str, list[int]] = {}
    out: list[str] = []
    pos, length = 0, 0
    for m in _TAG.finditer(sentence):
        chunk = sentence[pos:m.start()]
        out.append(chunk)
        length += len(chunk)
        tag = m.group(0)
        name = tag.strip("</>")
        spans.setdefault(name, []).append(length)
        pos = m.end()
    out.append(sentence[pos:])
    text = "".join(out)
    if sorted(spans) != ["e1", "e2"] or any(len(v) != 2 for v in spans.values()):
        raise ValueError("needs exactly one <e1>...</e1> and one <e2>...</e2>")
    return text, (spans["e1"][0], spans["e1"][1]), (spans["e2"][0], spans["e2"][1])


def read_semeval(path: str | Path, split: str | None = None) -> list[Example]:
    """Read a SemEval-2010 Task 8 file (with labels) into Examples."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; point to the SemEval-2010 Task 8 folder (../shared/gold/semeval2010_task8)")
    split = split or path.stem.lower()
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        m = _HEAD.match(lines[i].strip("\r\ufeff"))
        if not m:
            i += 1
            continue
        sid, raw = m.group(1), m.group(2)
        label = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not _LABEL.match(label):
            raise InputError(f"{path}:{i + 2}: expected a relation label after sentence {sid}, got {label!r}")
        try:
            text, (s1, e1), (s2, e2) = parse_tagged(raw)
        except ValueError as exc:
            raise InputError(f"{path}:{i + 1}: sentence {sid}: {exc}") from exc
        ex = Example(
            id=f"semeval-{sid}", doc_id=f"semeval-{split}", sent_id=int(sid), text=text,
            subj=Span(s1, e1, ENTITY_TYPE, text[s1:e1]), obj=Span(s2, e2, ENTITY_TYPE, text[s2:e2]),
            label=NO_RELATION if label == OTHER else label, rules=[], origin="gold",
        )
        ex.validate()
        examples.append(ex)
        i += 2
    return examples


def load_semeval(folder: str | Path) -> tuple[list[Example], list[Example]]:
    folder = Path(folder)
    return read_semeval(folder / TRAIN_FILE, "train"), read_semeval(folder / TEST_FILE, "test")


def _relation(label: str) -> str:
    """'Cause-Effect(e2,e1)' -> 'Cause-Effect'; NO_RELATION/Other -> 'Other'."""
    return OTHER if label in (NO_RELATION, OTHER) else label.split("(", 1)[0]


def official_score(gold: Sequence[str], pred: Sequence[str]) -> dict:
    """The official (9+1)-way, direction-aware, macro-F1 excluding Other, as in the v1.2 scorer.

    For relation R: correct = gold and prediction equal including direction; P = correct /
    (predictions of R in either direction); R = correct / gold of R; F1 per relation, then
    averaged over the relations present in the gold labels (Other excluded). Returned as
    percentages, like the scorer prints them.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    correct: Counter[str] = Counter()
    proposed: Counter[str] = Counter()  # predictions of R (either direction)
    proposed_exact: Counter[str] = Counter()  # ... excluding wrong-direction ones (scorer's P=0 guard)
    actual: Counter[str] = Counter()
    for g, p in zip(gold, pred):
        rg, rp = _relation(g), _relation(p)
        actual[rg] += 1
        proposed[rp] += 1
        wrong_dir = rg == rp and rg != OTHER and g != p
        if not wrong_dir:
            proposed_exact[rp] += 1
        if g == p or (rg == rp == OTHER):
            correct[rg] += 1
    per = {}
    for r in sorted(actual):
        prec = 100.0 * correct[r] / proposed[r] if proposed_exact[r] else 0.0
        rec = 100.0 * correct[r] / actual[r] if actual[r] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[r] = {"precision": prec, "recall": rec, "f1": f1, "support": actual[r]}
    rels = [r for r in per if r != OTHER]
    micro_c = sum(correct[r] for r in rels)
    micro_p_den = sum(proposed[r] for r in rels)
    micro_r_den = sum(actual[r] for r in rels)
    mp = 100.0 * micro_c / micro_p_den if micro_p_den else 0.0
    mr = 100.0 * micro_c / micro_r_den if micro_r_den else 0.0
    return {
        "official_macro_f1": sum(per[r]["f1"] for r in rels) / len(rels) if rels else 0.0,
        "macro_precision": sum(per[r]["precision"] for r in rels) / len(rels) if rels else 0.0,
        "macro_recall": sum(per[r]["recall"] for r in rels) / len(rels) if rels else 0.0,
        "micro_f1": 2 * mp * mr / (mp + mr) if mp + mr else 0.0,
        "per_relation": per,
    }

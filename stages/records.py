"""Typed records passed between stages, and their JSONL form.

Every stage reads and writes JSON Lines, one record per line. The schemas:

Sentence  (mine -> data/mined/<doc_id>.jsonl)
    doc_id, sent_id, page (1-based), section (lower-case name, e.g. "abstract",
    "methods", "references"), text, kind ("body" | "caption" | "table" | "heading").

Mention   (entities -> data/entities/<doc_id>.jsonl, nested in AnnotatedSentence)
    start, end (character offsets into the sentence text, end exclusive), text,
    type (an entity type of the schema), source (pattern id or "gazetteer:<name>"),
    norm (optional: the name the mention stands for when the text abbreviates it, e.g.
    "Ptychagnostus atavus" for "P. atavus" written after it in the same paper; else None).

AnnotatedSentence
    a Sentence plus ``mentions``: list[Mention].

Span      (subject / object of an Example)
    start, end, type, text.

Example   (relations -> data/relations/<doc_id>.jsonl, then split/augment)
    id, doc_id, sent_id, text, subj: Span, obj: Span, label (relation name or
    NO_RELATION), rules (every rule id that fired on the pair), origin
    ("auto" | "gold" | "augmented"), source_id (for augmented examples: the id of
    the example it was made from), page, section, and optionally probs (the label
    model's probability per class; label is then its most probable class).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

NO_RELATION = "NO_RELATION"
ORIGINS = ("auto", "gold", "augmented")

T = TypeVar("T")


@dataclass
class Sentence:
    doc_id: str
    sent_id: int
    page: int
    section: str
    text: str
    kind: str = "body"


@dataclass
class Mention:
    start: int
    end: int
    text: str
    type: str
    source: str
    norm: str | None = None


@dataclass
class AnnotatedSentence:
    doc_id: str
    sent_id: int
    page: int
    section: str
    text: str
    kind: str = "body"
    mentions: list[Mention] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnnotatedSentence:
        d = dict(d)
        d["mentions"] = [Mention(**m) for m in d.get("mentions", [])]
        return cls(**_known(cls, d))


@dataclass
class Span:
    start: int
    end: int
    type: str
    text: str


@dataclass
class Example:
    id: str
    doc_id: str
    sent_id: int
    text: str
    subj: Span
    obj: Span
    label: str
    rules: list[str] = field(default_factory=list)
    origin: str = "auto"
    source_id: str | None = None
    page: int = 0
    section: str = ""
    # the label model's class probabilities (optional): training on soft labels reads them
    probs: dict[str, float] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        d = dict(d)
        d["subj"] = Span(**d["subj"])
        d["obj"] = Span(**d["obj"])
        return cls(**_known(cls, d))

    def validate(self) -> None:
        """Raise ValueError when spans don't point at their text in the sentence."""
        for role, sp in (("subj", self.subj), ("obj", self.obj)):
            if not (0 <= sp.start < sp.end <= len(self.text)):
                raise ValueError(f"example {self.id}: {role} span {sp.start}:{sp.end} outside text")
            if self.text[sp.start:sp.end] != sp.text:
                raise ValueError(
                    f"example {self.id}: {role} span text {self.text[sp.start:sp.end]!r} != {sp.text!r}"
                )
        if self.origin not in ORIGINS:
            raise ValueError(f"example {self.id}: origin {self.origin!r} not one of {ORIGINS}")


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def to_dict(record: Any) -> dict[str, Any]:
    return asdict(record)


def from_dict(cls: type[T], d: dict[str, Any]) -> T:
    if hasattr(cls, "from_dict"):
        return cls.from_dict(d)  # type: ignore[attr-defined]
    return cls(**_known(cls, d))


# --- JSONL I/O -------------------------------------------------------------


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc


def read_records(path: str | Path, cls: type[T]) -> list[T]:
    return [from_dict(cls, d) for d in iter_jsonl(path)]


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should read like any file
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Atomically write records (dataclasses or dicts) as JSONL; returns the count."""
    lines = []
    for r in records:
        d = r if isinstance(r, dict) else asdict(r)
        lines.append(json.dumps(d, ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def _parse_examples(path: str | Path, origin: str | None, good: list[Example], bad: list[str]) -> None:
    for lineno, d in enumerate(iter_jsonl(path), 1):
        try:
            ex = Example.from_dict(d)
            if origin:
                ex.origin = origin
            ex.validate()
            good.append(ex)
        except (KeyError, TypeError, ValueError) as exc:
            bad.append(f"{path}: record {lineno} skipped: {exc}; fix or remove it (schema: stages/records.py Example)")


def scan_examples(path: str | Path, origin: str | None = None) -> tuple[list[Example], list[str]]:
    """Valid Examples of one JSONL file, and a message (file:record and the fix) for each bad
    record, which is skipped; an unreadable file is one message. ``origin`` overrides the
    records' own origin (gold imports)."""
    good: list[Example] = []
    bad: list[str] = []
    try:
        _parse_examples(path, origin, good, bad)
    except (OSError, ValueError) as exc:
        bad.append(f"{path}: {exc}; fix the file or remove it")
    return good, bad


def read_examples(path: str | Path, stage: str) -> list[Example]:
    """Valid Examples of a JSONL file written by ``stage``; bad records are logged and skipped.
    A missing file names the stage that writes it."""
    p = Path(path)
    if not p.exists():
        from .errors import InputError

        raise InputError(f"{p}: not found; run the {stage} stage first (dvc repro {stage})")
    good: list[Example] = []
    bad: list[str] = []
    _parse_examples(p, None, good, bad)
    for msg in bad:
        logging.getLogger("relmine.records").error("%s", msg)
    return good


def drop_repeated(good: list[Example], path: str | Path, first: dict[str, str]) -> tuple[list[Example], str | None]:
    """The examples of ``path`` whose id no earlier file had (``first``: id -> that file, updated),
    and a message naming the files when some were repeats: a review batch imported twice under two
    names must count once, in split and in evaluate alike."""
    fresh = [e for e in good if e.id not in first]
    again = [e for e in good if e.id in first]
    first.update({e.id: str(path) for e in fresh})
    if not again:
        return fresh, None
    others = sorted({first[e.id] for e in again})
    return fresh, (f"{path}: {len(again)} gold example(s) already in {', '.join(others)} (the same batch imported "
                   "twice under two names?) counted once; fix: delete the repeated file")


def read_gold_set(path: str | Path) -> tuple[list[Example], list[str], list[str]]:
    """Examples of a gold folder (*.jsonl) or file, the files read, and one message per bad record.
    An example id already read from another file is counted once (a review batch imported twice
    under two names would otherwise weigh double), with a message naming both files."""
    p = Path(path)
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    out: list[Example] = []
    bad: list[str] = []
    first: dict[str, str] = {}
    for f in files:
        good, msgs = scan_examples(f, "gold")
        fresh, repeated = drop_repeated(good, f, first)
        out += fresh
        bad += msgs + ([repeated] if repeated else [])
    return out, [str(f) for f in files], bad

"""Importers for corpora whose mentions (and relations) are already marked.

Not every corpus starts as PDFs: a biomedical corpus comes as sentences with the drug
mentions marked, a curated corpus as BRAT standoff or BioC. This module reads those
formats into relmine's own records, so the rest of the pipeline runs unchanged:

* ``AnnotatedSentence`` per sentence (the ``entities`` stage's output format), with each
  mention's ``source`` set to ``given:<format>``, for ``relations`` to label;
* ``Example`` per candidate pair with its human label (``origin: gold``), for
  ``data/gold/`` (scored by ``evaluate``, trained on only when ``split.train_on_gold``).

Formats (``importer.format``):

``jsonl``  one sentence per line: ``{"doc_id", "text", "entities": [{"id", "start",
           "end", "type"}], "relations": [{"subj": id, "obj": id, "label"}]}``; ``doc_id``,
           ``sent_id``, ``page``, ``section`` and an entity's ``id`` are optional (an id
           defaults to the entity's position in the list).
``brat``   a folder of ``<doc>.txt`` + ``<doc>.ann`` pairs (BRAT standoff: ``T`` lines are
           mentions, ``R`` lines relations ``Arg1`` -> ``Arg2``); sentences are the text's
           lines (BRAT corpora are usually one sentence per line).
``bioc``   BioC JSON (one file or a folder of ``*.json``): documents -> passages ->
           sentences (when given, else the passage's lines), annotations with
           document-level ``locations``, relations whose ``nodes`` name their roles
           (the first node is the subject unless roles say ``subject``/``object`` or
           ``Arg1``/``Arg2``).

A mention that crosses a sentence boundary, or whose offsets do not point at its text,
is dropped and counted with the file and line that gave it (a bad record costs only
itself); a relation whose arguments are not in one sentence is counted too. ``type_map``
and ``label_map`` rename the corpus's types and labels to the schema's (a label mapped to
``NO_RELATION`` marks an explicit negative, as in corpora that label every pair).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import InputError
from .records import NO_RELATION, AnnotatedSentence, Example, Mention, Span

FORMATS = ("jsonl", "brat", "bioc")


@dataclass
class GivenMention:
    id: str
    start: int  # offset in its sentence
    end: int
    type: str
    text: str


@dataclass
class GivenSentence:
    doc_id: str
    sent_id: int
    text: str
    page: int = 1
    section: str = "body"
    mentions: list[GivenMention] = field(default_factory=list)
    relations: list[tuple[str, str, str]] = field(default_factory=list)  # (subj id, obj id, label)


@dataclass
class ImportResult:
    sentences: list[GivenSentence]
    problems: Counter = field(default_factory=Counter)  # what was dropped, by reason
    examples_of_problems: dict[str, str] = field(default_factory=dict)  # reason -> first place it happened

    def drop(self, reason: str, where: str) -> None:
        self.problems[reason] += 1
        self.examples_of_problems.setdefault(reason, where)


# --- readers ---------------------------------------------------------------


def _files(path: Path, suffix: str) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob(f"*{suffix}") if p.is_file())
        if not found:
            raise InputError(f"{path}: no *{suffix} file in this folder; fix: point importer.input at the corpus")
        return found
    if path.is_file():
        return [path]
    raise InputError(f"{path}: not found; fix: set importer.input to the corpus file or folder")


def _doc_id(path: Path, root: Path) -> str:
    """Unique within a corpus: the path below the input folder, without suffix, '/' as '__'."""
    rel = path.relative_to(root) if root.is_dir() else Path(path.name)
    return "__".join(rel.with_suffix("").parts)


def read_jsonl(path: str | Path) -> ImportResult:
    root = Path(path)
    res = ImportResult([])
    per_doc: Counter = Counter()
    for f in _files(root, ".jsonl"):
        with open(f, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{f}:{lineno}"
                try:
                    d = json.loads(line)
                    text = d["text"]
                    if not isinstance(text, str):
                        raise TypeError("text is not a string")
                except (ValueError, KeyError, TypeError) as exc:
                    res.drop(f"unreadable record ({type(exc).__name__}: {exc}); fix: one JSON object with a "
                             "'text' per line", where)
                    continue
                doc_id = str(d.get("doc_id") or _doc_id(f, root))
                sent_id = int(d["sent_id"]) if "sent_id" in d else per_doc[doc_id]
                per_doc[doc_id] = max(per_doc[doc_id], sent_id) + 1
                s = GivenSentence(doc_id, sent_id, text, int(d.get("page", 1)), str(d.get("section", "body")))
                for i, e in enumerate(d.get("entities") or d.get("mentions") or []):
                    try:
                        start, end, etype = int(e["start"]), int(e["end"]), str(e["type"])
                    except (KeyError, TypeError, ValueError):
                        res.drop("entity without integer start/end and a type", where)
                        continue
                    if "text" in e and text[start:end] != e["text"]:
                        res.drop("entity offsets do not point at its text", where)
                        continue
                    if not 0 <= start < end <= len(text):
                        res.drop("entity offsets outside the sentence", where)
                        continue
                    s.mentions.append(GivenMention(str(e.get("id", i)), start, end, etype, text[start:end]))
                for r in d.get("relations") or []:
                    try:
                        s.relations.append((str(r["subj"]), str(r["obj"]), str(r["label"])))
                    except (KeyError, TypeError):
                        res.drop("relation without subj, obj and label", where)
                res.sentences.append(s)
    return res


def _split_lines(text: str) -> list[tuple[int, str]]:
    """(offset, line) of each non-blank line."""
    out, pos = [], 0
    for line in text.split("\n"):
        if line.strip():
            out.append((pos, line))
        pos += len(line) + 1
    return out


def _place(res: ImportResult, units: list[tuple[int, str]], doc_id: str, first_sent: int,
           mentions: Iterable[tuple[str, int, int, str, str | None, str]],
           relations: Iterable[tuple[str, str, str, str]]) -> list[GivenSentence]:
    """Put document-level mentions into their sentence (``units``: offset, text) and keep the
    relations whose two arguments share a sentence."""
    sents = [GivenSentence(doc_id, first_sent + i, text) for i, (_, text) in enumerate(units)]
    where_of: dict[str, int] = {}
    for mid, start, end, etype, given_text, where in mentions:
        k = next((i for i, (off, text) in enumerate(units) if off <= start and end <= off + len(text)), None)
        if k is None:
            res.drop("mention crosses a sentence boundary or lies outside the text", where)
            continue
        off, text = units[k]
        span = text[start - off:end - off]
        if given_text is not None and span != given_text:
            res.drop("mention offsets do not point at its text", where)
            continue
        sents[k].mentions.append(GivenMention(mid, start - off, end - off, etype, span))
        where_of[mid] = k
    for subj, obj, label, where in relations:
        if subj not in where_of or obj not in where_of:
            res.drop("relation argument is a dropped or unknown mention", where)
        elif where_of[subj] != where_of[obj]:
            res.drop("relation arguments in different sentences", where)
        else:
            sents[where_of[subj]].relations.append((subj, obj, label))
    return sents


def read_brat(path: str | Path) -> ImportResult:
    root = Path(path)
    res = ImportResult([])
    for ann in _files(root, ".ann"):
        txt = ann.with_suffix(".txt")
        if not txt.exists():
            raise InputError(f"{ann}: no {txt.name} beside it; fix: BRAT needs <doc>.txt next to <doc>.ann")
        text = txt.read_text(encoding="utf-8")
        mentions, relations = [], []
        for lineno, line in enumerate(ann.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{ann}:{lineno}"
            parts = line.split("\t")
            if not line.strip() or line[0] not in "TR":
                continue  # events, attributes, notes: not used
            try:
                if line[0] == "T":
                    etype, *spans = parts[1].replace(";", " ").split()
                    offsets = [int(x) for x in spans]
                    if len(offsets) != 2:
                        res.drop("discontinuous mention (more than one fragment)", where)
                        continue
                    mentions.append((parts[0], offsets[0], offsets[1], etype, parts[2] if len(parts) > 2 else None,
                                     where))
                else:
                    label, a1, a2 = parts[1].split()
                    relations.append((a1.split(":", 1)[1], a2.split(":", 1)[1], label, where))
            except (IndexError, ValueError):
                res.drop("line is not BRAT standoff (T<n>\\tTYPE start end\\ttext or R<n>\\tLabel Arg1:T Arg2:T)",
                         where)
        res.sentences += _place(res, _split_lines(text), _doc_id(ann, root), 0, mentions, relations)
    return res


def _bioc_roles(nodes: list[dict[str, Any]]) -> tuple[str, str] | None:
    if len(nodes) != 2:
        return None
    roles = [str(n.get("role", "")).lower() for n in nodes]
    if roles[0] in ("object", "arg2") or roles[1] in ("subject", "arg1"):
        nodes = nodes[::-1]
    return str(nodes[0]["refid"]), str(nodes[1]["refid"])


def read_bioc(path: str | Path, type_key: str = "type", label_key: str = "type") -> ImportResult:
    root = Path(path)
    res = ImportResult([])
    for f in _files(root, ".json"):
        try:
            collection = json.loads(f.read_text(encoding="utf-8"))
            documents = collection["documents"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{f}: not a BioC JSON collection ({exc}); fix: a file with a 'documents' list") from exc
        for di, doc in enumerate(documents):
            doc_id = str(doc.get("id") or f"{_doc_id(f, root)}__{di}")
            n_sent = 0
            for pi, passage in enumerate(doc.get("passages", [])):
                where = f"{f}: document {doc_id} passage {pi}"
                given = passage.get("sentences") or []
                if given:
                    units = [(int(x["offset"]), x.get("text", "")) for x in given]
                else:
                    base = int(passage.get("offset", 0))
                    units = [(base + off, line) for off, line in _split_lines(passage.get("text", ""))]
                mentions, relations = [], []
                for h in [passage, *given]:  # annotations sit on the passage or on its sentences
                    for a in h.get("annotations", []):
                        aw = f"{where} annotation {a.get('id')}"
                        locs = a.get("locations") or []
                        if len(locs) != 1:
                            res.drop("annotation with no or several locations", aw)
                            continue
                        start = int(locs[0]["offset"])
                        mentions.append((str(a["id"]), start, start + int(locs[0]["length"]),
                                         str((a.get("infons") or {}).get(type_key)), a.get("text"), aw))
                    for r in h.get("relations", []):
                        ends = _bioc_roles(r.get("nodes") or [])
                        if ends is None:
                            res.drop("relation without exactly two nodes", f"{where} relation {r.get('id')}")
                            continue
                        relations.append((*ends, str((r.get("infons") or {}).get(label_key)),
                                          f"{where} relation {r.get('id')}"))
                placed = _place(res, units, doc_id, n_sent, mentions, relations)
                n_sent += len(placed)
                res.sentences += placed
    return res


def read_corpus(fmt: str, path: str | Path) -> ImportResult:
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "brat":
        return read_brat(path)
    if fmt == "bioc":
        return read_bioc(path)
    raise InputError(f"importer.format {fmt!r} unknown; fix: use one of {', '.join(FORMATS)}")


# --- to relmine records ----------------------------------------------------


def rename(result: ImportResult, type_map: Mapping[str, str], label_map: Mapping[str, str],
           entity_types: set[str], relation_names: set[str]) -> None:
    """Apply the maps, then check every type and label against the schema (an unknown one
    stops the import with the name, where it occurs and the fix)."""
    unknown_types: dict[str, str] = {}
    unknown_labels: dict[str, str] = {}
    for s in result.sentences:
        for m in s.mentions:
            m.type = type_map.get(m.type, m.type)
            if m.type not in entity_types:
                unknown_types.setdefault(m.type, f"{s.doc_id} sentence {s.sent_id}")
        s.relations = [(a, b, label_map.get(lab, lab)) for a, b, lab in s.relations]
        for _, _, lab in s.relations:
            if lab != NO_RELATION and lab not in relation_names:
                unknown_labels.setdefault(lab, f"{s.doc_id} sentence {s.sent_id}")
    if unknown_types:
        t, where = next(iter(unknown_types.items()))
        raise InputError(f"entity type(s) {', '.join(sorted(unknown_types))} (first in {where}) not declared in the "
                         f"entities file; fix: declare them under `types:` or map them with importer.type_map "
                         f"(e.g. {{{t}: {sorted(entity_types)[0]}}})")
    if unknown_labels:
        lab, where = next(iter(unknown_labels.items()))
        raise InputError(f"relation label(s) {', '.join(sorted(unknown_labels))} (first in {where}) not in the "
                         f"relations file; fix: declare the relation there or map it with importer.label_map "
                         f"(e.g. {{{lab}: {NO_RELATION}}} for an explicit negative)")


def annotated_sentences(sentences: Iterable[GivenSentence], fmt: str) -> dict[str, list[AnnotatedSentence]]:
    """doc_id -> its sentences with the given mentions, in the entities stage's format."""
    out: dict[str, list[AnnotatedSentence]] = {}
    for s in sentences:
        mentions = [Mention(m.start, m.end, m.text, m.type, f"given:{fmt}") for m in sorted(
            s.mentions, key=lambda m: (m.start, m.end))]
        out.setdefault(s.doc_id, []).append(
            AnnotatedSentence(s.doc_id, s.sent_id, s.page, s.section, s.text, "body", mentions))
    return out


def gold_examples(sentences: Iterable[GivenSentence], allowed: Mapping[str, list[list[str]]],
                  labelled_only: bool = False) -> list[Example]:
    """One gold Example per candidate pair of a sentence: a pair the corpus labels gets its
    label in the corpus's direction; any other pair of types some relation allows is
    NO_RELATION (the corpus marks every relation it holds), unless ``labelled_only``."""
    from .relations import example_id

    typed = {(a, b) for args in allowed.values() for a, b in args}
    out: list[Example] = []
    for s in sentences:
        by_id = {m.id: m for m in s.mentions}
        labelled: dict[frozenset, tuple[GivenMention, GivenMention, str]] = {}
        for a, b, lab in s.relations:
            if a in by_id and b in by_id and a != b:
                labelled[frozenset((a, b))] = (by_id[a], by_id[b], lab)
        pairs = list(labelled.values())
        if not labelled_only:
            ms = sorted(s.mentions, key=lambda m: (m.start, m.end))
            for i, a in enumerate(ms):
                for b in ms[i + 1:]:
                    if frozenset((a.id, b.id)) in labelled or a.end > b.start:
                        continue
                    if (a.type, b.type) in typed:
                        pairs.append((a, b, NO_RELATION))
                    elif (b.type, a.type) in typed:
                        pairs.append((b, a, NO_RELATION))
        for subj, obj, lab in pairs:
            sp = Span(subj.start, subj.end, subj.type, subj.text)
            op = Span(obj.start, obj.end, obj.type, obj.text)
            out.append(Example(id=example_id(s.doc_id, s.sent_id, sp, op), doc_id=s.doc_id, sent_id=s.sent_id,
                               text=s.text, subj=sp, obj=op, label=lab, rules=[], origin="gold", page=s.page,
                               section=s.section))
    return out


@dataclass
class ImportParams:
    format: str = "jsonl"  # jsonl | brat | bioc
    input: str = ""  # the corpus: a file or a folder
    name: str = "imported"  # gold file name: <gold_dir>/<name>.jsonl
    out_dir: str = "data/imported"  # AnnotatedSentence per document (entities.mined_dir for entities.given)
    gold: bool = True  # write the labelled pairs as gold examples
    gold_dir: str = "data/gold"
    labelled_only: bool = False  # true: only the pairs the corpus labels (no NO_RELATION for the others)
    entity_patterns: str = "data/patterns/entities.yaml"  # where the entity types are declared
    relation_patterns: str = "data/patterns/relations.yaml"
    type_map: dict[str, str] = field(default_factory=dict)  # corpus type -> schema type
    label_map: dict[str, str] = field(default_factory=dict)  # corpus label -> relation (or NO_RELATION)
    report: str = "reports/import.json"

    def check(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if not self.input:
            raise ValueError("input is empty: set it to the corpus file or folder")
        if not self.name or "/" in self.name:
            raise ValueError("name must be a plain file name (the gold file is <gold_dir>/<name>.jsonl)")

"""Knowledge files built from tabular sources (distant supervision for the label model).

A gazetteer row often states a fact: the BGS lexicon lists each formation with its oldest and
youngest age. A knowledge source in params names the file, the subject column, the relation,
the object columns, a regex stripped from the object values ("Kimmeridgian Age" ->
"Kimmeridgian") and the name variants to write ("{name}", "{name} Stage"). The rows go to
``<out_dir>/<name>.csv`` as ``subject,relation,object``, which ``label_model.knowledge`` reads.
Built by a DVC stage from the pulled gazetteers, so third-party data is never committed.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

_SOURCE_KEYS = {"name", "file", "subject", "relation", "objects", "strip", "variants", "delimiter"}


@dataclass
class KnowledgeParams:
    sources: list[dict[str, Any]]  # no default: which gazetteer columns are facts is the domain's (params.yaml)
    out_dir: str = "data/knowledge_built"

    def check(self) -> None:
        seen = set()
        for i, s in enumerate(self.sources):
            where = f"knowledge.sources[{i}]"
            if not isinstance(s, dict):
                raise ValueError(f"{where} must be a mapping with name, file, subject, relation, objects")
            unknown = sorted(set(s) - _SOURCE_KEYS)
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}; use only {sorted(_SOURCE_KEYS)}")
            missing = sorted({"name", "file", "subject", "relation", "objects"} - set(s))
            if missing:
                raise ValueError(f"{where}: missing key(s) {missing}; add them (see params.yaml)")
            if s["name"] in seen or not re.fullmatch(r"[A-Za-z0-9_.-]+", str(s["name"])):
                raise ValueError(f"{where}: name {s['name']!r} must be unique and a plain file name")
            seen.add(s["name"])
            if s.get("strip"):
                try:
                    re.compile(s["strip"])
                except re.error as exc:
                    raise ValueError(f"{where}: strip regex does not compile ({exc}); escape special characters") from exc


def build_rows(source: dict[str, Any]) -> list[tuple[str, str, str]]:
    """subject, relation, object rows of one source (deduplicated, in file order)."""
    path = Path(source["file"])
    if not path.exists():
        raise InputError(f"{path}: knowledge source {source['name']!r} not found; fix: run `dvc pull "
                         "data/gazetteers.dvc` or correct knowledge.sources[].file")
    delim = source.get("delimiter") or ("," if path.suffix.lower() == ".csv" else "\t")
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=delim))
    cols = [source["subject"], *source["objects"]]
    have = set(rows[0]) if rows else set()
    absent = [c for c in cols if c not in have]
    if rows and absent:
        raise InputError(f"{path}: column(s) {absent} not in the header ({', '.join(sorted(have))}); "
                         f"fix: correct knowledge source {source['name']!r}")
    strip = re.compile(source["strip"]) if source.get("strip") else None
    variants = source.get("variants") or ["{name}"]
    out: list[tuple[str, str, str]] = []
    seen = set()
    for row in rows:
        subj = " ".join((row.get(source["subject"]) or "").split())
        if not subj:
            continue
        for col in source["objects"]:
            val = " ".join((row.get(col) or "").split())
            if strip is not None:
                val = strip.sub("", val).strip()
            if not val:
                continue
            for v in variants:
                fact = (subj, source["relation"], v.format(name=val))
                if fact not in seen:
                    seen.add(fact)
                    out.append(fact)
    return out


def to_csv(rows: list[tuple[str, str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["subject", "relation", "object"])
    w.writerows(rows)
    return buf.getvalue()

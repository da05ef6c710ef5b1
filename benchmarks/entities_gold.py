"""Score the entity patterns against human labels: BGS stratigraphic NER (../shared/gold/bgs_geo_ner).

    python -m benchmarks.entities_gold [--params params.yaml] [--gold PATH] [--limit N]

STRAT is scored against LEXICON and CHRONO against CHRONOSTRAT, as span
precision/recall/F1 with exact and partial (overlap) matching, on the gold
sentences (tokens joined by spaces; the file is token<TAB>label lines with IO
tags). A second run without the two BGS gazetteers (`bgs_lexicon`, `bgs_chrono`,
the vocabularies the gold was labelled with) shows what the general patterns and
other lists achieve alone. Writes reports/entities_gold.json.

A measurement only: the gold set never feeds the shipped patterns, so this lives
beside the other benchmarks and not in the entities stage.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Iterable

from flows.common import PARAMS_FILE, load_params
from stages.entities import EntitiesParams, EntityAnnotator
from stages.errors import InputError
from stages.patterns import load_entity_spec
from stages.records import Mention, atomic_write_json

log = logging.getLogger("relmine.entities_gold")

DEFAULT_GOLD = "../shared/gold/bgs_geo_ner/bgs.3class.geo-training-data.txt"
TYPE_MAP = {"STRAT": "LEXICON", "CHRONO": "CHRONOSTRAT"}
ABLATED = ("bgs_lexicon", "bgs_chrono")
REPORT = "reports/entities_gold.json"
GOAL_F1 = 0.75

GoldSpan = tuple[int, int, str]  # token start, token end (exclusive), label


def read_conll_io(path: str | Path) -> list[tuple[list[str], list[str]]]:
    """token<TAB>label lines, blank line between sentences -> [(tokens, labels)]."""
    sents: list[tuple[list[str], list[str]]] = []
    toks: list[str] = []
    labs: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                if toks:
                    sents.append((toks, labs))
                    toks, labs = [], []
                continue
            tok, _, lab = line.rpartition("\t")
            toks.append(tok)
            labs.append(lab or "O")
    if toks:
        sents.append((toks, labs))
    return sents


def io_spans(labels: list[str]) -> list[GoldSpan]:
    """IO tags -> spans (a run of the same label is one span: IO cannot split neighbours)."""
    spans, i = [], 0
    while i < len(labels):
        if labels[i] == "O":
            i += 1
            continue
        j = i
        while j < len(labels) and labels[j] == labels[i]:
            j += 1
        spans.append((i, j, labels[i]))
        i = j
    return spans


def mentions_to_token_spans(tokens: list[str], mentions: list[Mention], type_map: dict[str, str]) -> list[GoldSpan]:
    """Map character mentions on " ".join(tokens) to token spans (tokens they touch)."""
    starts, pos = [], 0
    for t in tokens:
        starts.append(pos)
        pos += len(t) + 1
    out = []
    for m in mentions:
        if m.type not in type_map:
            continue
        toks = [i for i, s in enumerate(starts) if s < m.end and m.start < s + len(tokens[i])]
        if toks:
            out.append((toks[0], toks[-1] + 1, type_map[m.type]))
    return out


def _prf(tp_p: int, n_pred: int, tp_g: int, n_gold: int) -> dict:
    p = tp_p / n_pred if n_pred else 0.0
    r = tp_g / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def score_spans(pairs: list[tuple[list[GoldSpan], list[GoldSpan]]], labels: Iterable[str]) -> dict:
    """Per gold label: exact (same tokens) and partial (any overlap) span P/R/F1.
    Partial precision counts predictions overlapping a gold span; partial recall
    counts gold spans overlapped by a prediction."""
    out = {}
    for lab in labels:
        n_pred = n_gold = exact = pp = pg = 0
        for gold, pred in pairs:
            g = [s for s in gold if s[2] == lab]
            p = [s for s in pred if s[2] == lab]
            n_gold += len(g)
            n_pred += len(p)
            gs = {(a, b) for a, b, _ in g}
            exact += sum((a, b) in gs for a, b, _ in p)
            pp += sum(any(a < gb and ga < b for ga, gb, _ in g) for a, b, _ in p)
            pg += sum(any(a < gb and ga < b for a, b, _ in p) for ga, gb, _ in g)
        out[lab] = {"gold": n_gold, "predicted": n_pred,
                    "exact": _prf(exact, n_pred, exact, n_gold), "partial": _prf(pp, n_pred, pg, n_gold)}
    return out


def score_gold(annotator: EntityAnnotator, gold_path: str | Path, type_map: dict[str, str],
               limit: int | None = None, max_errors: int = 20) -> dict:
    """Run the annotator on the gold sentences (tokens joined by spaces) and score it.
    ``type_map`` maps our types to gold labels, e.g. {"STRAT": "LEXICON", "CHRONO": "CHRONOSTRAT"}."""
    sents = read_conll_io(gold_path)[:limit]
    pairs, errors = [], []
    for toks, labs in sents:
        text = " ".join(toks)
        gold = [s for s in io_spans(labs) if s[2] in type_map.values()]
        pred = mentions_to_token_spans(toks, annotator.find(text), type_map)
        pairs.append((gold, pred))
        if len(errors) < max_errors and set(gold) != set(pred):
            errors.append({"text": text,
                           "missed": [" ".join(toks[a:b]) + f" [{lab}]" for a, b, lab in gold if (a, b, lab) not in pred],
                           "spurious": [" ".join(toks[a:b]) + f" [{lab}]" for a, b, lab in pred if (a, b, lab) not in gold]})
    scores = score_spans(pairs, list(type_map.values()))
    return {"gold_file": str(gold_path), "sentences": len(sents),
            "mapping": {k: v for k, v in type_map.items()}, "scores": scores, "examples_of_errors": errors}


def run(params_path: str = PARAMS_FILE, gold: str = DEFAULT_GOLD, limit: int | None = None,
        report_path: str | Path = REPORT) -> dict:
    p: EntitiesParams = load_params(EntitiesParams, "entities", params_path)
    if not Path(gold).exists():
        raise InputError(f"{gold}: gold file not found; fix: put the shared data at ../shared or pass --gold")
    spec = load_entity_spec(p.patterns)
    t0 = time.perf_counter()
    full = score_gold(EntityAnnotator(spec, p.regex_timeout_s), gold, TYPE_MAP, limit)
    ablated_spec = dataclasses.replace(spec, gazetteers=[g for g in spec.gazetteers if g.id not in ABLATED])
    ablated = score_gold(EntityAnnotator(ablated_spec, p.regex_timeout_s), gold, TYPE_MAP, limit, max_errors=0)
    report = {
        "patterns": p.patterns,
        **full,
        "without_bgs_gazetteers": {"removed": list(ABLATED), "scores": ablated["scores"]},
        "goal_f1": GOAL_F1,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    # the report also holds other benchmarks' keys (the entity dev sets): keep what this one does not write
    previous = json.loads(Path(report_path).read_text()) if Path(report_path).exists() else {}
    atomic_write_json(report_path, {**{k: v for k, v in previous.items() if k not in report}, **report})
    for lab, sc in full["scores"].items():
        log.info("%s: exact F1 %.3f (P %.3f R %.3f), partial F1 %.3f; without BGS lists exact F1 %.3f",
                 lab, sc["exact"]["f1"], sc["exact"]["precision"], sc["exact"]["recall"], sc["partial"]["f1"],
                 ablated["scores"][lab]["exact"]["f1"])
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description="Score entity patterns against the BGS NER gold set.")
    ap.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    ap.add_argument("--gold", default=DEFAULT_GOLD, help="token<TAB>label file (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(args.params, args.gold, args.limit)


if __name__ == "__main__":
    main()

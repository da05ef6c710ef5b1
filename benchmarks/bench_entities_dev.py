"""Score the entity patterns on the hand-marked entity dev set (tests/data/entities_dev*.jsonl).

    python -m benchmarks.bench_entities_dev [--patterns data/patterns/entities.yaml] [--key entities_dev]

The BGS gold set (flows/entities_gold.py) checks STRAT and CHRONO on British survey prose,
the vocabulary the BGS gazetteers were built from. The dev set is the other check: sentences
of four sample palaeontology papers with every TAXON, STRAT, CHRONO and LOC mention marked
by hand (tests/data/entities_dev.README.md), so it measures the two types BGS lacks and the
recall on names no list holds.

Each sentence is annotated the way the `entities` stage does it: when data/mined holds the
sentence's paper, the whole paper is annotated with the sentence in it (so the per-paper
propagation pass sees the paper, not one sentence; a dev sentence the mining now splits
otherwise is added to the paper as one more sentence); otherwise the sentence alone is
annotated (``context`` in the output says which, per paper).
Sections listed in ``entities.skip_sections`` are not skipped: every dev sentence counts.

Per type: precision, recall and F1 with exact spans (same start, end and type) and with
overlap (a prediction counts when it overlaps a gold mention of its type, a gold mention
counts when a prediction of its type overlaps it). Two parts are scored apart: the dev set
(152 sentences, whose baseline errors were seen while the patterns were improved) under the
key (default ``entities_dev``), and its held-out part (96 sentences of five other papers,
marked after the patterns were written) under ``<key>_heldout``, and a second blind part drawn
for STRAT (43 sentences, marked before the rules for the first part's STRAT misses were
written) under ``<key>_heldout2``, and a third (26 sentences, drawn after those rules) under
``<key>_heldout3``, in reports/entities_gold.json; the file's other keys (the BGS figures) are kept. ``--key`` lets
a variant (another pattern file, a tagger) be recorded beside them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.entities_gold import score_spans  # noqa: E402
from stages.entities import EntityAnnotator  # noqa: E402
from stages.errors import InputError  # noqa: E402
from stages.patterns import load_entity_spec  # noqa: E402
from benchmarks.common import merge_report  # noqa: E402
from stages.records import Mention, Sentence, read_records  # noqa: E402

DEV_SET = ROOT / "tests" / "data" / "entities_dev.jsonl"
HELDOUT = ROOT / "tests" / "data" / "entities_dev_heldout.jsonl"
HELDOUT2 = ROOT / "tests" / "data" / "entities_dev_heldout2.jsonl"
HELDOUT3 = ROOT / "tests" / "data" / "entities_dev_heldout3.jsonl"
REPORT = ROOT / "reports" / "entities_gold.json"
TYPES = ("TAXON", "STRAT", "CHRONO", "LOC")
GOALS = {"recall_overlap": {"TAXON": 0.70, "LOC": 0.70, "CHRONO": 0.85, "STRAT": 0.85}, "precision": 0.85}


def read_dev_set(path: str | Path = DEV_SET) -> list[dict]:
    """The dev set's records (doc_id, sent_id, text, mentions), each span checked against its text."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: entity dev set not found; fix: check out tests/data/ from the repository")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            for m in r["mentions"]:
                if r["text"][m["start"]:m["end"]] != m["text"]:
                    raise InputError(f"{path}:{lineno}: mention {m['text']!r} does not match the text at "
                                     f"{m['start']}:{m['end']}; fix: correct its offsets")
            rows.append(r)
    return rows


def annotate_dev(annotator: EntityAnnotator, rows: list[dict], mined_dir: str | Path | None = ROOT / "data" / "mined"
                 ) -> tuple[list[list[Mention]], dict[str, str]]:
    """Predicted mentions per dev row, and per paper the context used. When data/mined holds the
    row's paper, the whole paper is annotated with the row in it, so the per-paper passes
    (propagation, normalisation) see the paper: a row whose text is one of the paper's sentences
    is read from there, any other (the mining has changed since the row was marked) is annotated
    as one more sentence of that paper ("paper" or "paper, N rows added"); without the paper
    each row is annotated alone ("sentence")."""
    preds: dict[tuple[str, int], list[Mention]] = {}
    context: dict[str, str] = {}
    for doc in sorted({r["doc_id"] for r in rows}):
        want = [r for r in rows if r["doc_id"] == doc]
        mined = Path(mined_dir) / f"{doc}.jsonl" if mined_dir is not None else None
        sents = read_records(mined, Sentence) if mined is not None and mined.exists() else []
        if not sents:
            for r in want:
                preds[(doc, r["sent_id"])] = annotator.find(r["text"])
            context[doc] = "sentence"
            continue
        by_text = {s.text: s.sent_id for s in sents}
        extra, where = [], {}
        next_id = max(s.sent_id for s in sents) + 1
        for r in want:
            if r["text"] in by_text:
                where[r["sent_id"]] = by_text[r["text"]]
            else:
                where[r["sent_id"]] = next_id
                extra.append(Sentence(doc, next_id, 0, "body", r["text"]))
                next_id += 1
        got = {a.sent_id: a.mentions for a in annotator.annotate(sents + extra)}
        for r in want:
            preds[(doc, r["sent_id"])] = got[where[r["sent_id"]]]
        context[doc] = "paper" + (f", {len(extra)} rows added" if extra else "")
    return [preds[(r["doc_id"], r["sent_id"])] for r in rows], context


def score_dev(rows: list[dict], predicted: list[list[Mention]], types=TYPES) -> dict:
    """Per type: gold and predicted counts, exact and overlap precision/recall/F1 on character spans."""
    pairs = [([(m["start"], m["end"], m["type"]) for m in r["mentions"]],
              [(m.start, m.end, m.type) for m in pred])
             for r, pred in zip(rows, predicted)]
    scores = score_spans(pairs, types)
    for sc in scores.values():
        sc["overlap"] = sc.pop("partial")
    return scores


def errors(rows: list[dict], predicted: list[list[Mention]], limit: int = 40) -> list[dict]:
    out = []
    for r, pred in zip(rows, predicted):
        gold = {(m["start"], m["end"], m["type"]) for m in r["mentions"]}
        got = {(m.start, m.end, m.type) for m in pred}
        if gold != got:
            t = r["text"]
            out.append({"doc_id": r["doc_id"], "sent_id": r["sent_id"],
                        "missed": [f"{t[a:b]} [{ty}]" for a, b, ty in sorted(gold - got)],
                        "spurious": [f"{t[a:b]} [{ty}]" for a, b, ty in sorted(got - gold)]})
    return out[:limit]


def score_part(annotator: EntityAnnotator, dev_set: Path, mined_dir: str | Path | None, label: str) -> dict:
    rows = read_dev_set(dev_set)
    t0 = time.perf_counter()
    predicted, context = annotate_dev(annotator, rows, mined_dir)
    return {
        "dev_set": str(dev_set.relative_to(ROOT)) if dev_set.is_relative_to(ROOT) else str(dev_set),
        "patterns": label,
        "sentences": len(rows),
        "context": context,
        "scores": score_dev(rows, predicted),
        "goals": GOALS,
        "examples_of_errors": errors(rows, predicted),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def run(patterns: str | Path = ROOT / "data" / "patterns" / "entities.yaml", key: str = "entities_dev",
        report: str | Path = REPORT, mined_dir: str | Path | None = ROOT / "data" / "mined",
        label: str | None = None, parts: dict[str, Path] | None = None) -> dict:
    """Score each part (default: the dev set under ``key``, the held-out part under
    ``key_heldout``, the second and third blind STRAT parts under ``key_heldout2`` and
    ``key_heldout3``), write them into ``report`` and return {key: result}."""
    parts = parts if parts is not None else {key: DEV_SET, f"{key}_heldout": HELDOUT, f"{key}_heldout2": HELDOUT2,
                                             f"{key}_heldout3": HELDOUT3}
    path = Path(patterns).resolve()
    label = label or (str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(patterns))
    annotator = EntityAnnotator(load_entity_spec(patterns, base_dir=ROOT))
    results = {k: score_part(annotator, Path(v), mined_dir, label) for k, v in parts.items()}
    merge_report(report, results)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patterns", default=str(ROOT / "data" / "patterns" / "entities.yaml"))
    ap.add_argument("--key", default="entities_dev", help="key of reports/entities_gold.json to write")
    ap.add_argument("--label", default=None, help="how to name the pattern file in the report (default: its path)")
    args = ap.parse_args()
    for key, res in run(args.patterns, args.key, label=args.label).items():
        print(f"{key} ({res['sentences']} sentences)")
        for ty, sc in res["scores"].items():
            print(f"  {ty:7s} gold {sc['gold']:3d} pred {sc['predicted']:3d}  exact P {sc['exact']['precision']:.2f} "
                  f"R {sc['exact']['recall']:.2f}  overlap P {sc['overlap']['precision']:.2f} "
                  f"R {sc['overlap']['recall']:.2f}")


if __name__ == "__main__":
    main()

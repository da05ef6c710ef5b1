"""The learned entity tagger (stages/tagger.py) on the hand-marked entity dev set.

    python -m benchmarks.bench_entity_tagger [--patterns data/patterns/entities.yaml] [--types TAXON,LOC]

Trains the tagger as the `entities` stage does (on the pattern and gazetteer mentions of the
sample corpus, data/mined, with the shipped `entities.tagger_*` params), except that the
papers of every dev part are left out of its training: the tagger has never seen their
sentences, not even with pattern labels. Then scores, on both parts (benchmarks/bench_entities_dev.py),
the tagger alone and the union with the patterns (every pattern mention, plus each tagger
mention that overlaps none: the patterns win on span boundaries), per type, exact and overlap.
Results go to reports/entities_gold.json under ``tagger_<part>`` and ``union_<part>`` for the
parts ``dev``, ``dev_heldout``, ``dev_heldout2`` and ``dev_heldout3`` (other keys kept), with the training size and time and
the tagger's sentences per second (one process, features and CRF decoding).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_entities_dev import DEV_SET, HELDOUT, HELDOUT2, HELDOUT3, REPORT, annotate_dev, errors, read_dev_set, score_dev  # noqa: E402
from stages import tagger as T  # noqa: E402
from stages.entities import EntitiesParams, EntityAnnotator  # noqa: E402
from stages.errors import InputError  # noqa: E402
from stages.params import load_yaml, parse_params  # noqa: E402
from stages.patterns import load_entity_spec  # noqa: E402
from benchmarks.common import merge_report  # noqa: E402
from stages.records import Sentence, read_records  # noqa: E402


def run(patterns: str | Path = ROOT / "data" / "patterns" / "entities.yaml", types: list[str] | None = None,
        report: str | Path = REPORT, mined_dir: str | Path = ROOT / "data" / "mined",
        params_path: str | Path = ROOT / "params.yaml") -> dict:
    ep = parse_params(EntitiesParams, load_yaml(params_path).get("entities"), "entities")
    tp = ep.tagger_params()
    if types is not None:
        tp.types = list(types)
    files = {"dev": DEV_SET, "dev_heldout": HELDOUT, "dev_heldout2": HELDOUT2, "dev_heldout3": HELDOUT3}
    parts = {part: read_dev_set(path) for part, path in files.items()}
    exclude = {r["doc_id"] for rows in parts.values() for r in rows}
    annotator = EntityAnnotator(load_entity_spec(patterns, base_dir=ROOT))
    papers = sorted(p for p in Path(mined_dir).glob("*.jsonl") if p.stem not in exclude)
    if not papers:
        raise InputError(f"{mined_dir}: no mined papers outside the dev set to train on; fix: run `dvc repro mine`")
    t0 = time.perf_counter()
    corpus = [a for p in papers for a in annotator.annotate(read_records(p, Sentence), ep.skip_sections)]
    seqs = T.training_sequences(corpus, tp, ep.skip_sections)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.crfsuite"
        info = T.train(seqs, tp, model)
        info["train_seconds"] = round(time.perf_counter() - t0, 2)
        tagger = T.EntityTagger(model, tp, annotator.spec.types)
        results, n, secs = {}, 0, 0.0
        for part, rows in parts.items():
            t1 = time.perf_counter()
            tagged = [[m for m in tagger.tag(r["text"]) if annotator.keeps(r["text"], m)] for r in rows]
            secs += time.perf_counter() - t1
            n += len(rows)
            pats, _ = annotate_dev(annotator, rows, mined_dir)
            merged = [T.union(p, t) for p, t in zip(pats, tagged)]
            for name, pred in (("tagger", tagged), ("union", merged)):
                results[f"{name}_{part}"] = {
                    "dev_set": str(files[part].relative_to(ROOT)), "method": name,
                    "sentences": len(rows), "scores": score_dev(rows, pred),
                    "examples_of_errors": errors(rows, pred, limit=25)}
        # the rate on the whole corpus, the work the entities stage does
        t2 = time.perf_counter()
        for a in corpus:
            tagger.tag(a.text)
        corpus_rate = len(corpus) / (time.perf_counter() - t2)
    path = Path(patterns).resolve()
    summary = {"learner": "CRF (python-crfsuite) over word-shape and context features",
               "patterns": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(patterns),
               "params": vars(tp), "train_papers": len(papers), "train_papers_excluded": sorted(exclude),
               **info, "sentences_per_s": round(corpus_rate, 1), "dev_sentences_per_s": round(n / secs, 1)}
    for v in results.values():
        v["tagger"] = summary
    # an earlier tagger's keys (another learner or --types) would read as this one's
    merge_report(report, results, drop_prefixes=("tagger_", "union_"))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patterns", default=str(ROOT / "data" / "patterns" / "entities.yaml"))
    ap.add_argument("--types", default=None, help="types the tagger may add, e.g. TAXON,LOC (default: entities.tagger_types)")
    args = ap.parse_args()
    res = run(args.patterns, args.types.split(",") if args.types else None)
    for key, r in res.items():
        print(f"{key} ({r['sentences']} sentences)")
        for ty, sc in r["scores"].items():
            print(f"  {ty:7s} gold {sc['gold']:3d} pred {sc['predicted']:3d}  exact P {sc['exact']['precision']:.2f} "
                  f"R {sc['exact']['recall']:.2f}  overlap P {sc['overlap']['precision']:.2f} R {sc['overlap']['recall']:.2f}")
    info = next(iter(res.values()))["tagger"]
    print({k: info[k] for k in ("sentences", "train_seconds", "sentences_per_s", "dev_sentences_per_s")})


if __name__ == "__main__":
    main()

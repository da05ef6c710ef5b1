"""Throughput of the weak-supervision engine: sentences/s for `entities` (all
gazetteers loaded) and for `relations`, on one core.

    python -m benchmarks.bench_annotate [--quick]

Input: the mined sample (data/mined/*.jsonl) when the `mine` stage has run, else
sentences extracted here from data/papers/*.pdf with pypdfium2 (``pdf_sentences``).
Each figure is the median of 3 timed passes, with the spread (max - min).
Writes reports/bench/annotate.json. Goal: >= 2000 sentences/s per core for each.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_path  # noqa: E402
from stages.entities import EntityAnnotator  # noqa: E402
from stages.patterns import load_entity_spec, load_relations_spec  # noqa: E402
from stages.records import Sentence, atomic_write_json, read_records  # noqa: E402
from stages.relations import label_sentences  # noqa: E402

REFERENCE_HEADINGS = re.compile(r"(?i)(references|references cited|literature cited|bibliography)")


def pdf_sentences(pdf: str | Path, doc_id: str | None = None) -> list[Sentence]:
    """Rough sentences of a PDF (a stand-in for the `mine` stage in tests and benchmarks):
    page text, de-hyphenated, split into paragraphs then at sentence ends; a
    "References" heading switches the section to "references"."""
    import pypdfium2 as pdfium

    pdf = Path(pdf)
    doc_id = doc_id or pdf.stem
    doc = pdfium.PdfDocument(str(pdf))
    out: list[Sentence] = []
    section = "body"
    try:
        for pno in range(len(doc)):
            page = doc[pno]
            text = page.get_textpage().get_text_range()
            text = text.replace("\ufffe", "").replace("\xad", "")  # pdfium's soft-hyphen marks
            text = re.sub(r"-\r?\n(?=[a-z])", "", text)
            for para in re.split(r"\r?\n\s*\r?\n", text):
                para = re.sub(r"\s+", " ", para).strip()
                if REFERENCE_HEADINGS.fullmatch(para):
                    section = "references"
                    continue
                for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z])", para):
                    if len(sent) >= 20:
                        out.append(Sentence(doc_id, len(out), pno + 1, section, sent))
    finally:
        doc.close()
    return out


def load_sentences(quick: bool) -> tuple[list[Sentence], str]:
    mined = sorted((ROOT / "data" / "mined").glob("*.jsonl"))
    if mined:
        sents = [s for p in mined for s in read_records(p, Sentence)]
        source = "data/mined"
    else:
        pdfs = sorted((ROOT / "data" / "papers").glob("*.pdf"))
        sents = [s for p in pdfs[: 3 if quick else None] for s in pdf_sentences(p)]
        source = "data/papers (pypdfium2 sentences)"
    sents = [s for s in sents if s.section != "references"]
    return (sents[:1500] if quick else sents), source


def _machine() -> dict:
    try:
        from benchmarks.common import machine
        return machine()
    except ImportError:
        return {"cores": os.cpu_count()}


def _timed(fn, repeats: int = 3) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run(quick: bool = False) -> dict:
    """Benchmark entities and relations; write reports/bench/annotate.json and return the figures."""
    cwd = os.getcwd()
    os.chdir(ROOT)  # pattern files name gazetteers relative to the project root
    try:
        sents, source = load_sentences(quick)
        t0 = time.perf_counter()
        spec = load_entity_spec(ROOT / "data/patterns/entities.yaml", base_dir=ROOT)
        annotator = EntityAnnotator(spec)
        load_s = time.perf_counter() - t0
        gaz_names = sum(len(g.names) for g in spec.gazetteers)
        rel_spec = load_relations_spec(ROOT / "data/patterns/relations.yaml", set(spec.types))

        annotated: list = []

        def do_entities() -> None:
            annotated[:] = annotator.annotate(sents)

        ent_med, ent_times = _timed(do_entities)
        rel_med, rel_times = _timed(lambda: label_sentences(annotated, rel_spec))
        n = len(sents)
        result = {
            "input": source,
            "sentences": n,
            "mentions": sum(len(a.mentions) for a in annotated),
            "gazetteer_names": gaz_names,
            "load_seconds": round(load_s, 3),
            "cores": 1,
            "entities": {
                "sentences_per_s": round(n / ent_med, 1),
                "median_s": round(ent_med, 4),
                "spread_s": round(max(ent_times) - min(ent_times), 4),
                "runs_s": [round(t, 4) for t in ent_times],
            },
            "relations": {
                "sentences_per_s": round(n / rel_med, 1),
                "median_s": round(rel_med, 4),
                "spread_s": round(max(rel_times) - min(rel_times), 4),
                "runs_s": [round(t, 4) for t in rel_times],
            },
            "goal_sentences_per_s": 2000,
            "machine": _machine(),
            "quick": quick,
        }
        atomic_write_json(bench_path("annotate"), result)
        return result
    finally:
        os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 papers, at most 1500 sentences")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()

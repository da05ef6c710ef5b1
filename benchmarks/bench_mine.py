"""Benchmark the mine stage: relmine vs pypdfium2's plain text vs pdfplumber, the
incremental path (re-run after adding one paper vs mining that paper alone), and the
sentence check: how many of the sentences in benchmarks/data/mine_sentences.json
(read off the rendered pages, each crossing a line, column, page, figure or footnote
break) come out whole, per cause, and how many running heads/footers leak.

    python -m benchmarks.bench_mine [--quick] [--workers 2] [--out reports/bench/mine.json]
    python -m benchmarks.bench_mine --sentences   # the sentence check alone (seconds)

All three extractors run over the same text-layer PDFs (OCR off, so every engine
reads the same pages) in a pool of ``workers`` processes, warmed up first so
imports are not timed; each figure is the median of 3 repetitions (1 with
--quick, on 2 papers) with the spread (max - min).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_path, machine  # noqa: E402
from stages.records import atomic_write_json  # noqa: E402


def _relmine(path: str) -> tuple[int, int]:
    from stages.mine import MineParams, mine_paper

    res = mine_paper(path, MineParams(ocr=False, isolate=False, paper_timeout_s=600))
    return res.stats.get("pages", 0), sum(len(s.text) for s in res.sentences)


def _pdfium_plain(path: str) -> tuple[int, int]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(path)
    chars = 0
    for i in range(len(doc)):
        page = doc[i]
        chars += len(page.get_textpage().get_text_range())
    n = len(doc)
    doc.close()
    return n, chars


def _pdfplumber(path: str) -> tuple[int, int]:
    import pdfplumber

    chars = 0
    with pdfplumber.open(path) as pdf:
        for page in pdf.pages:
            chars += len(page.extract_text() or "")
            page.close()
        return len(pdf.pages), chars


ENGINES: dict[str, Callable[[str], tuple[int, int]]] = {
    "relmine": _relmine,
    "pypdfium2_plain": _pdfium_plain,
    "pdfplumber": _pdfplumber,
}


def _warm(_: int) -> None:
    import sys as _sys

    _sys.modules.setdefault("torch", None)  # type: ignore[arg-type]  # as in the mine worker
    import pdfplumber  # noqa: F401
    import pypdfium2  # noqa: F401

    from stages.mine import get_nlp

    get_nlp()


def _time_engine(pool: ProcessPoolExecutor, fn, files: list[str]) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    results = list(pool.map(fn, files))
    dt = time.perf_counter() - t0
    return dt, sum(r[0] for r in results), sum(r[1] for r in results)


def bench_engines(files: list[str], workers: int, reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_warm, range(workers * 2)))
        for name, fn in ENGINES.items():
            times, pages, chars = [], 0, 0
            for _ in range(reps):
                dt, pages, chars = _time_engine(pool, fn, files)
                times.append(dt)
            med = statistics.median(times)
            out[name] = {
                "seconds_median": round(med, 3),
                "seconds_spread": round(max(times) - min(times), 3),
                "pages": pages,
                "characters": chars,
                "pages_per_second": round(pages / med, 1),
            }
    r = out["relmine"]["pages_per_second"]
    out["ratios"] = {
        "relmine_vs_pypdfium2_plain": round(r / out["pypdfium2_plain"]["pages_per_second"], 3),
        "relmine_vs_pdfplumber": round(r / out["pdfplumber"]["pages_per_second"], 2),
    }
    return out


def bench_incremental(files: list[Path], workers: int) -> dict[str, Any]:
    """Re-run the mine flow's logic (the flow body without Prefect's server round
    trips) after adding one paper to an already-mined corpus, vs mining that paper
    alone; both go through the same isolated worker processes."""
    from concurrent.futures import ThreadPoolExecutor

    import stages.mine as mine_mod
    from flows.mine import _run_mine
    from stages.mine import MineParams
    from stages.mine_cache import mine_one
    from stages.params import RunParams

    new = files[-1]
    with tempfile.TemporaryDirectory(prefix="relmine-bench-") as tmp:
        tmp_p = Path(tmp)
        papers = tmp_p / "papers"
        papers.mkdir()
        for f in files[:-1]:
            shutil.copy(f, papers / f.name)
        params = MineParams(papers_dir=str(papers), out_dir=str(tmp_p / "mined"), report=str(tmp_p / "mine.json"),
                            ocr=False)
        run = RunParams(cache_dir=str(tmp_p / "cache"), max_workers=workers)

        def map_papers(todo, keys):
            with ThreadPoolExecutor(max_workers=workers) as ex:
                stats = ex.map(lambda p: mine_one(str(p), params, run.cache_dir, keys[str(p)]), todo)
                return dict(zip(map(str, todo), stats))

        _run_mine(params, run, map_papers)  # the corpus before the new paper
        mine_mod.close_workers()
        shutil.copy(new, papers / new.name)
        t0 = time.perf_counter()
        report = _run_mine(params, run, map_papers)
        mine_mod.close_workers()
        rerun = time.perf_counter() - t0

        alone_cache = tmp_p / "alone-cache"
        t0 = time.perf_counter()
        mine_one(str(new), params, str(alone_cache), "alone")
        mine_mod.close_workers()
        alone = time.perf_counter() - t0
    return {
        "corpus_papers": len(files) - 1,
        "added_paper": new.name,
        "rerun_mined": report["mined"],
        "rerun_cached": report["cached"],
        "rerun_seconds": round(rerun, 3),
        "alone_seconds": round(alone, 3),
        "goal_seconds": round(1.5 * alone + 3.0, 3),
        "within_goal": rerun <= 1.5 * alone + 3.0,
    }


SENTENCES = ROOT / "benchmarks" / "data" / "mine_sentences.json"


def _resolve(pdf: str, papers_dir: Path, hard_dir: Path) -> Path:
    """'data/papers/x.pdf' -> papers_dir/x.pdf; 'hard/x.pdf' -> hard_dir/x.pdf."""
    name = pdf.split("/")[-1]
    return (hard_dir if pdf.startswith("hard/") else papers_dir) / name


def sentence_check(papers_dir: str | Path = ROOT / "data" / "papers", hard_dir: str | Path | None = None,
                   checks: str | Path = SENTENCES) -> dict[str, Any]:
    """Checked sentences intact (equal to one mined sentence) per cause, and leaked
    header/footer strings (found inside any mined sentence). Rows of cause "ocr"
    are mined with OCR on. PDFs that are not present (../shared absent), and OCR
    rows without tesseract, are counted under ``missing_pdfs``."""
    import json

    from stages.mine import MineParams, mine_paper, tesseract_version

    papers_dir = Path(papers_dir)
    hard_dir = Path(hard_dir) if hard_dir else ROOT.parent / "shared" / "corpus" / "hard"
    data = json.loads(Path(checks).read_text(encoding="utf-8"))
    params = MineParams(ocr=False, isolate=False, paper_timeout_s=600)
    ocr = MineParams(ocr=True, isolate=False, paper_timeout_s=600) if tesseract_version() else None
    mined: dict[tuple[str, bool], list[str] | None] = {}

    def sentences_of(pdf: str, with_ocr: bool = False) -> list[str] | None:
        if (pdf, with_ocr) not in mined:
            path = _resolve(pdf, papers_dir, hard_dir)
            p = ocr if with_ocr else params
            got = None
            if path.exists() and p is not None:
                got = [s.text for s in mine_paper(path, p).sentences]
            mined[(pdf, with_ocr)] = got
        return mined[(pdf, with_ocr)]

    causes: dict[str, dict[str, int]] = {}
    lost: list[dict[str, str]] = []
    missing = 0
    for row in data["sentences"]:
        got = sentences_of(row["pdf"], row["cause"] == "ocr")
        if got is None:
            missing += 1
            continue
        c = causes.setdefault(row["cause"], {"checked": 0, "intact": 0})
        c["checked"] += 1
        if row["text"] in got:
            c["intact"] += 1
        else:
            lost.append({"cause": row["cause"], "pdf": row["pdf"].split("/")[-1], "text": row["text"][:90]})
    leaks = {"checked": 0, "leaked": 0, "leaked_caught_before": 0, "strings": []}
    for row in data["leaks"]:
        got = sentences_of(row["pdf"])
        if got is None:
            missing += 1
            continue
        leaks["checked"] += 1
        if any(row["text"] in t for t in got):
            leaks["leaked"] += 1
            leaks["strings"].append(row["text"])
            leaks["leaked_caught_before"] += bool(row.get("caught_before"))
    return {
        "checked": sum(c["checked"] for c in causes.values()),
        "intact": sum(c["intact"] for c in causes.values()),
        "by_cause": causes,
        "lost": lost,
        "header_footer": leaks,
        "missing_pdfs": missing,
    }


def run(papers_dir: str | Path = ROOT / "data" / "papers", out: str | Path | None = None,
        quick: bool = False, workers: int = 2) -> dict[str, Any]:
    files = sorted(str(p) for p in Path(papers_dir).glob("*.pdf"))
    if not files:
        raise SystemExit(f"{papers_dir}: no PDFs; run `dvc pull data/papers.dvc`")
    reps = 3
    if quick:
        # the two shortest papers, one repetition: a smoke test, not a measurement
        import pypdfium2 as pdfium

        def n_pages(f: str) -> int:
            doc = pdfium.PdfDocument(f)
            try:
                return len(doc)
            finally:
                doc.close()

        files = sorted(files, key=n_pages)[:2]
        reps = 1
    result = {
        "machine": {**machine(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "workers": workers,
        "repetitions": reps,
        "papers": len(files),
        "engines": bench_engines(files, workers, reps),
        "incremental": bench_incremental([Path(f) for f in files], workers),
        "sentences": sentence_check(papers_dir),
        "goals": {"relmine_pages_per_second": 100, "relmine_vs_pdfplumber": 20,
                  "incremental": "rerun_seconds <= 1.5 * alone_seconds + 3"},
    }
    atomic_write_json(out or bench_path("mine"), result)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--papers", default=str(ROOT / "data" / "papers"))
    ap.add_argument("--out", default=None, help="default: reports/bench/mine.json")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 repetition on 2 papers (smoke test)")
    ap.add_argument("--sentences", action="store_true", help="print the sentence check only (writes nothing)")
    a = ap.parse_args()
    if a.sentences:
        import json

        print(json.dumps(sentence_check(a.papers), ensure_ascii=False, indent=1))
        return
    res = run(a.papers, a.out, a.quick, a.workers)
    e = res["engines"]
    for name in ENGINES:
        print(f"{name:16s} {e[name]['pages_per_second']:8.1f} pages/s  (median {e[name]['seconds_median']} s, "
              f"spread {e[name]['seconds_spread']} s, {e[name]['pages']} pages)")
    print("ratios:", e["ratios"])
    print("incremental:", res["incremental"])
    sc = res["sentences"]
    print(f"sentences intact: {sc['intact']} of {sc['checked']}; header/footer leaked: "
          f"{sc['header_footer']['leaked']} of {sc['header_footer']['checked']}")


if __name__ == "__main__":
    main()

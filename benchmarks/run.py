"""`make bench`: every benchmark in one run, then reports/bench.md.

    python -m benchmarks.run [--quick] [--only mine,annotate,...]

Each benchmark module writes its own reports/bench/<name>.json (median of 3 repetitions with the
spread, and the machine); this script runs them in turn and writes a readable summary. Run it
under `python -m flows.server run --` (the Makefile does) so flows share one Prefect server.
`--quick` is the smoke test's mode: tiny inputs, one repetition, figures not meaningful.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import BENCH_DIR, bench_path, machine  # noqa: E402
from stages.records import atomic_write_json, atomic_write_text  # noqa: E402

# name -> module; order: cheap first, so a failure late costs the least
BENCHMARKS = {
    "annotate": "benchmarks.bench_annotate",
    "mine": "benchmarks.bench_mine",
    "augment": "benchmarks.bench_augment",
    "train": "benchmarks.bench_train",
    "extract": "benchmarks.bench_extract",
    "overhead": "benchmarks.bench_overhead",
    "scaling": "benchmarks.scaling",
}


def run_all(quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, module in BENCHMARKS.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            mod = importlib.import_module(module)
            kwargs = {"quick": quick} if "quick" in inspect.signature(mod.run).parameters else {}
            results[name] = {"ok": True, "figures": mod.run(**kwargs)}
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"[bench] {name} done in {results[name]['wall_s']} s", file=sys.stderr, flush=True)
    return results


def _get(d: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        x = f"{x:,.1f}" if abs(x) >= 10 else f"{x:.2f}"
    return f"{x}{unit}"


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, relmine, baseline, ratio) rows for the table."""
    f = {k: v.get("figures", {}) for k, v in results.items()}
    rows = []
    eng = _get(f, "mine", "engines", default={})
    if eng:
        rows.append(("mining, pages/s", _fmt(_get(eng, "relmine", "pages_per_second")),
                     f"pdfplumber {_fmt(_get(eng, 'pdfplumber', 'pages_per_second'))}; "
                     f"raw pypdfium2 {_fmt(_get(eng, 'pypdfium2_plain', 'pages_per_second'))}",
                     f"{_fmt(_get(eng, 'ratios', 'relmine_vs_pdfplumber'))}x pdfplumber"))
    inc = _get(f, "mine", "incremental", default={})
    if inc:
        rows.append(("mine after adding 1 paper, s", _fmt(inc.get("rerun_seconds")),
                     f"that paper alone {_fmt(inc.get('alone_seconds'))}", "goal <= 1.5x + 3 s"))
    for stage in ("entities", "relations"):
        v = _get(f, "annotate", stage, "sentences_per_s")
        if v is not None:
            rows.append((f"{stage}, sentences/s (1 core)", _fmt(v), "-", "goal 2,000"))
    for backend, b in (_get(f, "augment", "backends", default={}) or {}).items():
        if "round_trips_per_s_median" in b:
            rows.append((f"augment {backend}, round trips/s", _fmt(b["round_trips_per_s_median"]), "-", "-"))
    cache = _get(f, "augment", "cache", default={})
    if cache:
        rows.append(("augment rerun / first run", _fmt(cache.get("speedup_ratio")), "-", "goal <= 0.1"))
    t = f.get("train", {})
    if t:
        rows.append(("training, samples/s", _fmt(t.get("train_samples_per_s")),
                     f"HF Trainer {_fmt(t.get('hf_trainer_samples_per_s'))}",
                     f"{_fmt(t.get('speed_ratio_vs_trainer'))}x"))
        rows.append(("inference, pairs/s", _fmt(t.get("infer_pairs_per_s")),
                     f"{t.get('infer_dtype', 'float32')}, {_fmt(t.get('infer_mean_tokens'))} tokens/pair", "goal 200"))
        if t.get("infer_pairs_per_s_int8") is not None:
            rows.append(("inference int8 (`dtype: int8`), pairs/s", _fmt(t.get("infer_pairs_per_s_int8")),
                         f"{_fmt(100 * t.get('int8_agreement_with_float32', 0))}% same decisions as float32",
                         "goal 200"))
    e = f.get("extract", {})
    if e:
        rows.append(("extract, pairs/s", _fmt(e.get("pairs_per_s") or _get(e, "pairs_per_s", "median")), "-", "-"))
        rows.append(("extract, papers/min", _fmt(e.get("papers_per_min") or _get(e, "papers_per_min", "median")), "-", "-"))
    o = f.get("overhead", {})
    if o:
        noop = o.get("noop_repro_s") or _get(o, "noop_repro", "median_s")
        rows.append(("no-op `dvc repro`, s", _fmt(noop), "-", "goal < 3 s"))
        local = _get(o, "prefect_overhead", "local_server", "median_s") or o.get("overhead_local_server_s")
        temp = _get(o, "prefect_overhead", "temporary_server", "median_s") or o.get("overhead_temporary_server_s")
        rows.append(("Prefect overhead per flow, s", f"local server {_fmt(local)}", f"temporary server {_fmt(temp)}",
                     "goal < 3 s (local)"))
    sem = f.get("semeval", {})
    if sem.get("official_macro_f1") is not None:
        rows.append(("SemEval-2010 Task 8, official macro-F1", _fmt(sem["official_macro_f1"]),
                     "R-BERT (BERT-large) 89.25",
                     f"{sem.get('n_train')} train, {_fmt(sem.get('wall_seconds'))} s; goal 83 in < 1 h"))
    s = f.get("scaling", {})
    for key in ("x1", "x3"):
        if key in s:
            rows.append((f"mine+entities+relations, {s[key]['papers']} papers, s",
                         _fmt(s[key]["full_rebuild"]["total"]["median_s"]),
                         f"add one paper {_fmt(s[key]['add_one_paper']['total']['median_s'])}",
                         f"{_fmt(s[key]['add_one_vs_full_ratio'])} of a rebuild"))
    return rows


def with_earlier_figures(results: dict[str, Any]) -> dict[str, Any]:
    """The figures of this run, plus those in reports/bench/*.json of benchmarks it did not run
    (--only, and semeval, which is separate: about 14 minutes), marked with their date."""
    merged = dict(results)
    for name in [*BENCHMARKS, "semeval"]:
        path = bench_path(name)
        if name in merged or not path.exists():
            continue
        figures = json.loads(path.read_text(encoding="utf-8"))
        merged[name] = {"ok": True, "figures": figures,
                        "wall_s": f"not run (figures of {_get(figures, 'machine', 'date', default='an earlier run')})"}
    return merged


def markdown(results: dict[str, Any], quick: bool) -> str:
    m = machine()
    lines = [
        "# relmine benchmarks",
        "",
        f"{m['date']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}."
        + (" **Quick mode: smoke-test figures, not measurements.**" if quick else ""),
        "Medians of 3 repetitions; spreads and raw runs in `reports/bench/*.json`.",
        "",
        "| figure | relmine | compared with | ratio / goal |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in summary_rows(results)]
    failed = {k: v["error"] for k, v in results.items() if not v.get("ok")}
    if failed:
        lines += ["", "## Benchmarks that failed", ""] + [f"- {k}: {v}" for k, v in failed.items()]
    lines += ["", "Wall time per benchmark: " + ", ".join(
        f"{k} {v['wall_s']} s" if isinstance(v["wall_s"], (int, float)) else f"{k} {v['wall_s']}"
        for k, v in results.items()), ""]
    return "\n".join(lines)


NOTES_MARK = "<!-- notes: make bench rewrites what is above this line and keeps what is below -->"


def kept_notes(path: Path) -> str:
    """The hand-written part of the report (what the figures mean, other measurements)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    _, mark, notes = text.partition(NOTES_MARK)
    return f"\n{NOTES_MARK}{notes}" if mark else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny inputs, one repetition (smoke test)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench.md"))
    args = ap.parse_args()
    results = run_all(args.quick, [s for s in args.only.split(",") if s] or None)
    ok = all(v.get("ok") for v in results.values())
    atomic_write_json(BENCH_DIR / "summary.json", {"machine": machine(), "quick": args.quick, "results": results})
    atomic_write_text(args.out, markdown(with_earlier_figures(results), args.quick) + kept_notes(Path(args.out)))
    print(Path(args.out).read_text())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

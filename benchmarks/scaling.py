"""How the annotation pipeline's cost grows: the sample corpus against one three times as large,
and the cost of adding one paper against a full rebuild.

    python -m benchmarks.scaling [--quick]

Runs the real flows (`python -m flows.mine`, `flows.entities`, `flows.relations`) as subprocesses
in a temporary working folder (the corpus, the project's patterns and gazetteers, its params). The 3x corpus is
the sample + ../shared/corpus/hard + copies of sample papers whose bytes differ (a trailing PDF
comment), so every copy has a new content hash and is really mined again. OCR is off so the figures
measure the text-layer path. Needs PREFECT_API_URL (run under `python -m flows.server run --`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write  # noqa: E402

SHARED_HARD = ROOT.parent / "shared" / "corpus" / "hard"
FLOWS = ["mine", "entities", "relations"]


def build_corpus(dest: Path, factor: int, sample: list[Path]) -> list[Path]:
    """factor 1: the sample; factor 3: sample + hard PDFs + changed copies up to 3x the sample."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in sample:
        shutil.copy2(p, dest / p.name)
    if factor > 1:
        target = factor * len(sample)
        extra = sorted(SHARED_HARD.glob("*.pdf")) if SHARED_HARD.exists() else []
        for p in extra[: target - len(sample)]:
            shutil.copy2(p, dest / p.name)
        i = 0
        while len(list(dest.glob("*.pdf"))) < target:
            src = sample[i % len(sample)]
            copy = dest / f"{src.stem}__copy{i}.pdf"
            copy.write_bytes(src.read_bytes() + f"\n%relmine-bench-copy-{i}\n".encode())
            i += 1
    return sorted(dest.glob("*.pdf"))


def make_workdir(work: Path, corpus: Path) -> None:
    """A minimal project: the corpus, the real patterns and gazetteers, params with OCR off.
    Flows run with this as their working folder, so every relative path (outputs, reports,
    the cache) lands here and the project's own files are never touched."""
    (work / "data").mkdir(parents=True)
    (work / "data" / "papers").symlink_to(corpus)
    for name in ("patterns", "gazetteers"):
        (work / "data" / name).symlink_to(ROOT / "data" / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["mine"]["ocr"] = False
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_flows(work: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    times = {}
    for name in FLOWS:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", f"flows.{name}"], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times[name] = time.perf_counter() - t0
    times["total"] = sum(times.values())
    return times


def _median(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {k: {"median_s": round(statistics.median(r[k] for r in runs), 2),
                "spread_s": round(max(r[k] for r in runs) - min(r[k] for r in runs), 2)} for k in runs[0]}


def measure(factor: int, sample: list[Path], reps: int) -> dict[str, Any]:
    cold, add_one = [], []
    with tempfile.TemporaryDirectory(prefix=f"relmine-scale{factor}-") as tmp:
        tmp_p = Path(tmp)
        corpus = build_corpus(tmp_p / "papers", factor, sample)
        newcomer = corpus[-1]
        held = tmp_p / newcomer.name
        for rep in range(reps):
            work = tmp_p / f"work{rep}"
            make_workdir(work, tmp_p / "papers")
            shutil.move(newcomer, held)  # full rebuild without the newcomer, fresh cache
            cold.append(run_flows(work))
            shutil.move(held, newcomer)  # then add one paper: only it should be processed
            add_one.append(run_flows(work))
            shutil.rmtree(work)
    return {"papers": len(corpus), "full_rebuild": _median(cold), "add_one_paper": _median(add_one),
            "add_one_vs_full_ratio": round(statistics.median(a["total"] / c["total"] for a, c in zip(add_one, cold)), 3)}


def run(quick: bool = False) -> dict[str, Any]:
    sample = sorted((ROOT / "data" / "papers").glob("*.pdf"))
    if not sample:
        raise SystemExit("data/papers is empty: run `make pull` first")
    if quick:
        sample = sample[:2]
    reps = 1 if quick else 3
    if not os.environ.get("PREFECT_API_URL"):
        print("warning: PREFECT_API_URL unset, each flow starts a temporary Prefect server", file=sys.stderr)
    result = {"repetitions": reps, "ocr": False, "flows": FLOWS,
              "x1": measure(1, sample, reps), "x3": measure(3, sample, reps)}
    result["growth_x3_vs_x1"] = round(result["x3"]["full_rebuild"]["total"]["median_s"]
                                      / result["x1"]["full_rebuild"]["total"]["median_s"], 2)
    write("scaling", result)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 papers (x1) and 6 (x3), one repetition")
    args = ap.parse_args()
    r = run(args.quick)
    print(yaml.safe_dump({k: r[k] for k in ("x1", "x3", "growth_x3_vs_x1")}, sort_keys=False))


if __name__ == "__main__":
    main()

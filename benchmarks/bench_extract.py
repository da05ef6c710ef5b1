"""Extraction throughput on 2 cores: papers per minute end to end and candidate pairs per second.

    python -m benchmarks.bench_extract [--quick]

* papers/min: the `extract` flow on a few sample papers (mining with a fresh cache,
  entities, candidates, classification, de-dup, writing), median of 3 runs and the spread.
* pairs/s: classification alone (model logits, type constraint, calibration, thresholds)
  of every candidate of those papers, median of 3.

The model is the trained one (models/relmine) when present; otherwise a throw-away model of
the default encoder is trained for one epoch on the papers' candidates (the speed of
inference does not depend on how well the weights were trained). Writes
reports/bench/extract.json.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import rate, repeat, write  # noqa: E402

PAPERS = ["cooper2001_Episodes_TremadocianGSSP.pdf", "babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf",
          "peng2009_Episodes_GuzhangianGSSP.pdf"]
MODEL_DIR = ROOT / "models" / "relmine"


def _params(tmp: Path, cache: str, model_dir: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["run"]["cache_dir"] = cache
    params["extract"]["model_dir"] = str(model_dir)
    path = tmp / f"params-{Path(cache).name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _candidates(pdfs: list[Path], tmp: Path) -> list:
    from flows.common import load_params
    from flows.extract import paper_candidates
    from stages.extract import ExtractParams
    from stages.mine import MineParams, close_workers
    from stages.records import Example

    mp = load_params(MineParams, "mine", str(ROOT / "params.yaml"))
    out = []
    try:
        for pdf in pdfs:
            res = paper_candidates(str(pdf), mp.__dict__, str(tmp / "cache-warm"), ExtractParams())
            out += [Example.from_dict(d) for d in res["candidates"] or []]
    finally:
        close_workers()
    return out


def _throwaway_model(candidates: list, out: Path) -> Path:
    from stages.train import TrainParams, train_model

    p = TrainParams(out_dir=str(out), epochs=1, max_train_examples=64, device="cpu", log_every=1000)
    train_model(p, candidates, candidates[:32])
    return out


def run(quick: bool = False) -> dict[str, Any]:
    import logging

    from flows.extract import resolve_calibration, run_extract
    from stages.extract import ExtractParams, classify
    from stages.model import cpu_count, load_trained_model
    from stages.patterns import schema_args

    names = PAPERS[:1] if quick else PAPERS
    n_rep = 1 if quick else 3
    pdfs = [ROOT / "data" / "papers" / n for n in names]
    missing = [str(p) for p in pdfs if not p.exists()]
    if missing:
        raise FileNotFoundError(f"sample papers missing ({', '.join(missing)}): run `dvc pull data/papers.dvc`")
    tmp = Path(tempfile.mkdtemp(prefix="relmine-bench-extract-"))
    try:
        candidates = _candidates(pdfs, tmp)
        model_dir = MODEL_DIR if (MODEL_DIR / "relmine.json").exists() else _throwaway_model(candidates, tmp / "model")
        allowed = schema_args("data/patterns/relations.yaml", "data/patterns/entities.yaml")

        # end to end: a fresh mining cache each run, as for papers never seen
        runs: list[dict] = []

        def one_run() -> None:
            cache = tmp / f"cache-{len(runs)}"
            runs.append(run_extract([str(p) for p in pdfs], str(tmp / f"out-{len(runs)}.csv"),
                                    params_path=str(_params(tmp, str(cache), model_dir))))

        e2e = repeat(one_run, n_rep)
        papers = rate(len(pdfs), e2e)

        # classification alone
        model = load_trained_model(str(model_dir))
        cal, _ = resolve_calibration(ExtractParams(model_dir=str(model_dir)), model, logging.getLogger("bench"))
        classify(model, candidates[:8], cal, allowed)  # warm-up
        cls = repeat(lambda: classify(model, candidates, cal, allowed), n_rep)
        pairs = rate(len(candidates), cls)
        last = runs[-1]
        figures = {
            "quick": quick,
            "cores": cpu_count(),
            "papers": names,
            "model": str(model_dir.relative_to(ROOT)) if model_dir == MODEL_DIR else "throw-away (default encoder, 1 epoch)",
            "calibrated": cal is not None,
            "papers_per_min": round(papers["per_s"] * 60, 2),
            "papers_per_min_spread": round(papers["spread_per_s"] * 60, 2),
            "extract_seconds_median": round(e2e["median_s"], 2),
            "extract_seconds_runs": [round(t, 2) for t in e2e["runs_s"]],
            "pairs": len(candidates),
            "pairs_per_s": round(pairs["per_s"], 1),
            "pairs_per_s_spread": round(pairs["spread_per_s"], 1),
            "classify_seconds_runs": [round(t, 3) for t in cls["runs_s"]],
            "rows_last_run": last["rows"],
            "stage_seconds_last_run": {
                "mine": round(sum(pp["mine_seconds"] for pp in last["per_paper"]), 2),
                "annotate": round(sum(pp["annotate_seconds"] for pp in last["per_paper"]), 2),
                "classify": round(sum(pp["classify_seconds"] for pp in last["per_paper"]), 2),
            },
            "note": "papers/min includes Prefect flow start, model load and the mining worker start-up per run",
        }
        write("extract", figures)
        return figures
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one paper, one run (smoke test; figures not meaningful)")
    args = ap.parse_args()
    import json

    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()

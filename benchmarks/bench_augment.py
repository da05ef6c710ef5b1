"""Augmentation backends: round trips per second on 2 cores, and the translation cache speed-up.

    python -m benchmarks.bench_augment [--quick]     # writes reports/bench/augment.json

Round trips/s = protected sentences through source -> pivot -> source (synonym: one
substitution pass) per wall second, batched as the flow does, median of 3 runs with
the spread (max - min). Backend start-up (imports, model loading) is timed apart.
Cache speed-up = time of a second ``augment_examples`` run over the same data and
cache divided by the first (goal <= 0.1). Goal: apertium >= 100 sentences/s.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_path, machine  # noqa: E402
from stages.augment import (  # noqa: E402
    AugmentParams, Backend, BackendMissing, TranslationCache, augment_examples, per_batch, protect,
)
from stages.records import NO_RELATION, Example, Span, atomic_write_json  # noqa: E402


TAXA = ["Olenellus", "Elrathia kingii", "Paradoxides", "Ptychagnostus atavus", "Redlichia", "Peronopsis"]
STRAT = ["Pioche Formation", "Wheeler Shale", "Marjum Formation", "Burgess Shale", "Weeks Formation",
         "Spence Shale Member", "Langston Formation", "Swasey Limestone"]
CHRONO = ["Drumian", "Wuliuan", "Guzhangian", "Stage 4"]
LOC = ["Nevada", "Utah", "the House Range", "British Columbia", "Idaho"]
TEMPLATES = [
    ("assigned_to", "The {s} is assigned to the {c} Stage on the basis of trilobites found {m} m above its base.",
     "s", "c"),
    ("assigned_to", "In {l}, the {s} has been assigned to the {c}, following work on {m} collections.", "s", "c"),
    ("part_of", "The {s} forms the lower {m} m of the {s2} in the sections we measured in {l}.", "s", "s2"),
    ("part_of", "In {l} the {s} is regarded as a member of the {s2}, about {m} m thick.", "s", "s2"),
    ("found_at", "Abundant specimens of {t} were collected from the {s} near {l}.", "t", "l"),
    ("occurs_in", "{t} occurs in the upper {s}, where it is associated with agnostoids.", "t", "s"),
    (NO_RELATION, "The {s} near {l} yields abundant but poorly preserved material.", "s", "l"),
]
TYPES = {"s": "STRAT", "s2": "STRAT", "c": "CHRONO", "t": "TAXON", "l": "LOC"}


def make_examples(n: int, seed: int = 0, rare_share: float = 0.05) -> list[Example]:
    r = random.Random(seed)
    out = []
    for i in range(n):
        vals = {"t": r.choice(TAXA), "s": r.choice(STRAT), "c": r.choice(CHRONO), "l": r.choice(LOC),
                "m": r.randint(2, 400)}
        vals["s2"] = r.choice([x for x in STRAT if x != vals["s"]])
        pool = TEMPLATES[:4] if r.random() < rare_share else TEMPLATES[4:]
        label, tmpl, a, b = r.choice(pool)
        text = tmpl.format(**vals)
        sa, sb = text.index(vals[a]), text.rindex(vals[b])
        out.append(Example(id=f"b{i}", doc_id=f"paper{i % 7}", sent_id=i, text=text, label=label,
                           subj=Span(sa, sa + len(vals[a]), TYPES[a], vals[a]),
                           obj=Span(sb, sb + len(vals[b]), TYPES[b], vals[b])))
    return out


def _pin_two_cores() -> list[int]:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:2])
    return sorted(os.sched_getaffinity(0))


def bench_backend(name: str, n: int, cache_dir: Path, **kw) -> dict:
    params = AugmentParams(backend=name, batch_size=max(n, 1), **kw)
    t0 = time.perf_counter()
    try:
        backend = Backend(params, cache_dir)
    except BackendMissing as exc:
        return {"skipped": str(exc)}
    backend.round_trip([protect(e) for e in make_examples(20, seed=99)])  # warm up lazy loading (WordNet)
    startup = time.perf_counter() - t0
    # unique texts each run, as the cache would otherwise hide nothing here (no cache used)
    runs = []
    for rep in range(3):
        texts = [protect(e) for e in make_examples(n, seed=100 + rep)]
        t = time.perf_counter()
        outs = backend.round_trip(texts)
        runs.append(len(outs) / (time.perf_counter() - t))
    return {
        "sentences": n,
        "round_trips_per_s_median": round(statistics.median(runs), 1),
        "spread": round(max(runs) - min(runs), 1),
        "runs": [round(x, 1) for x in runs],
        "startup_s": round(startup, 2),  # imports + model loading + a 20-sentence warm-up
    }


def bench_cache(n: int, cache_dir: Path) -> dict:
    train = make_examples(n, seed=7, rare_share=0.06)
    params = AugmentParams(backend="apertium", target_share=1.0, max_per_source=2, batch_size=200)
    try:
        backend = Backend(params, cache_dir)
    except BackendMissing as exc:
        return {"skipped": str(exc)}
    cache = TranslationCache(cache_dir)
    times, reports = [], []
    for _ in range(2):
        t = time.perf_counter()
        res = augment_examples(train, params, per_batch(backend.round_trip), cache)
        times.append(time.perf_counter() - t)
        reports.append(res.report)
    return {
        "train_examples": n,
        "first_s": round(times[0], 3),
        "second_s": round(times[1], 3),
        "speedup_ratio": round(times[1] / times[0], 4),  # goal <= 0.1
        "first_translations": reports[0]["translations"],
        "second_translations": reports[1]["translations"],
        "kept": reports[0]["kept"],
    }


def run(quick: bool = False) -> dict:
    cores = _pin_two_cores()
    n = 300 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        result = {
            "cores": cores,
            "quick": quick,
            "goal": {"apertium_round_trips_per_s": 100, "cache_speedup_ratio_max": 0.1},
            "backends": {
                "apertium": bench_backend("apertium", n, tmp_path),
                "synonym": bench_backend("synonym", n // 2, tmp_path),
                # the default hub models are used only when already in the local HF cache
                "marian": bench_backend("marian", 20 if quick else 50, tmp_path),
            },
            "cache": bench_cache(2000 if quick else 6000, tmp_path / "cache"),
        }
    ap = result["backends"]["apertium"]
    result["apertium_goal_met"] = bool(ap.get("round_trips_per_s_median", 0) >= 100)
    result["cache_goal_met"] = bool(result["cache"].get("speedup_ratio", 1.0) <= 0.1)
    result = {"machine": machine(), **result}
    atomic_write_json(bench_path("augment"), result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    import json

    print(json.dumps(run(ap.parse_args().quick), indent=2))

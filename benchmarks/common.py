"""Shared benchmark helpers: repetitions with median and spread, the machine, writing figures."""
from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from stages.records import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
# RELMINE_BENCH_DIR lets the smoke test write somewhere else than the real figures
BENCH_DIR = Path(os.environ.get("RELMINE_BENCH_DIR", ROOT / "reports" / "bench"))


def machine() -> dict[str, Any]:
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = round(int(fh.readline().split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }


def repeat(fn: Callable[[], Any], n: int = 3) -> dict[str, float]:
    """Time fn n times; return median seconds, spread (max - min) and all runs."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "spread_s": max(times) - min(times), "runs_s": times}


def rate(count: float, timing: dict[str, float]) -> dict[str, float]:
    """Items per second at the median time, with the spread of the rate across runs."""
    rates = [count / t for t in timing["runs_s"] if t > 0]
    return {
        "per_s": count / timing["median_s"] if timing["median_s"] > 0 else float("inf"),
        "spread_per_s": (max(rates) - min(rates)) if rates else 0.0,
        "n_items": count,
        **timing,
    }


def train_params(overrides: dict[str, Any] | None = None, params_path: str | Path = "params.yaml"):
    """params.yaml's train section with overrides, validated: the recipe a benchmark trains with."""
    from flows.common import load_section
    from stages.params import parse_params
    from stages.train import TrainParams

    raw = {**load_section("train", ROOT / params_path), **(overrides or {})}
    return parse_params(TrainParams, raw, "train")


def weak_params(params_path: str | Path = "params.yaml"):
    """params.yaml's label_model section, validated: the label model the relations stage fits."""
    from flows.common import load_section
    from stages.params import parse_params
    from stages.weak import WeakParams

    return parse_params(WeakParams, load_section("label_model", ROOT / params_path), "label_model")


def bench_path(name: str) -> Path:
    return BENCH_DIR / f"{name}.json"


def write(name: str, figures: dict[str, Any]) -> Path:
    path = bench_path(name)
    atomic_write_json(path, {"machine": machine(), **figures})
    return path


def merge_report(report: str | Path, results: dict[str, Any], drop_prefixes: tuple[str, ...] = ()) -> None:
    """Write ``results`` into the JSON report beside the keys other benchmarks wrote there
    (keys starting with ``drop_prefixes`` are removed first: an earlier run's, read as this one's)."""
    import json

    report = Path(report)
    existing = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    existing = {k: v for k, v in existing.items() if not k.startswith(drop_prefixes)} if drop_prefixes else existing
    existing.update(results)
    atomic_write_json(report, existing)


def weak_corpus(relations: str, entity_patterns: str, entities_dir: str):
    """The candidate pairs of ``entities_dir`` labelled by the relation rules, then weighed by the
    label model with the shipped params: (spec, labeller, candidates, label sources, weak-label result)."""
    import glob
    import json

    from stages import weak as W
    from stages.patterns import load_entity_types, load_relations_spec
    from stages.records import AnnotatedSentence
    from stages.relations import RelationLabeller

    spec = load_relations_spec(relations, load_entity_types(entity_patterns))
    lab = RelationLabeller(spec)
    corpus = []
    for f in sorted(glob.glob(f"{entities_dir}/*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            corpus += [ex for line in fh for ex in lab.label_sentence(AnnotatedSentence.from_dict(json.loads(line)))]
    wp = weak_params()
    sources = W.Sources(spec, {}, wp.consistency, wp.combine_vetoes)
    return spec, lab, corpus, sources, W.weak_label(corpus, sources, wp)

"""`entities` stage: find entity mentions in the mined sentences, one cached task per paper.

    python -m flows.entities [--params params.yaml]

Reads data/mined/<doc_id>.jsonl (Sentence), writes data/entities/<doc_id>.jsonl
(AnnotatedSentence) and reports/entities.json. A paper is re-annotated only when
its sentences, the entity pattern file, a gazetteer, the params or the code
changed; the output folder is rebuilt from the cache (temp folder, then swap),
so a removed paper disappears.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from flows.common import (
    cli_args,
    load_params,
    load_run_params,
    make_task_runner,
    new_tmp_dir,
    run_main,
    swap_dir,
)
from stages import entities as entities_mod
from stages import patterns as patterns_mod
from stages import records as records_mod
from stages.cache import ResultCache, code_version, file_digest, make_key
from stages.entities import AnnotatorStats, EntitiesParams, get_annotator, with_given
from stages.errors import InputError
from stages.patterns import load_entity_spec
from stages.records import AnnotatedSentence, Sentence, atomic_write_json, read_records, to_dict


def code_digest() -> str:
    return code_version(entities_mod, patterns_mod, records_mod)


def paper_key(mined: Path, pattern_digest: str, gaz_digest: str, p: EntitiesParams) -> str:
    return make_key("entities", file_digest(mined), pattern_digest, gaz_digest,
                    {"skip_sections": sorted(p.skip_sections), "regex_timeout_s": p.regex_timeout_s, "given": p.given},
                    code_digest())


@task(cache_policy=NO_CACHE, persist_result=False)
def annotate_paper(mined: str, key: str, cache_dir: str, patterns: str, spec_digest: str,
                   skip_sections: list[str], timeout_s: float, given: str = "ignore") -> dict:
    """Annotate one paper unless its result is cached; return its summary."""
    doc_id = Path(mined).stem
    data = ResultCache(cache_dir, "entities")
    meta = ResultCache(cache_dir, "entities-meta", ".json")
    if data.get(key) and meta.get(key):
        summary = json.loads(meta.path(key).read_text())
        return {**summary, "cached": True, "key": key}
    t0 = time.perf_counter()
    try:
        sentences = read_records(mined, AnnotatedSentence if given != "ignore" else Sentence)
    except (ValueError, TypeError, KeyError) as exc:
        return {"doc_id": doc_id, "error": f"{mined}: {exc}; fix: rerun `dvc repro mine` (or the import) or delete "
                "the file", "cached": False, "key": key}
    annotator = get_annotator(patterns, spec_digest, timeout_s)
    stats = AnnotatorStats()
    if given == "only":
        annotated = with_given(sentences, None, skip_sections, stats)
    else:
        annotated = annotator.annotate(sentences, skip_sections, stats)
        if given == "plus_patterns":
            annotated = with_given(sentences, annotated, skip_sections, stats)
    data.put_text(key, "".join(json.dumps(to_dict(a), ensure_ascii=False) + "\n" for a in annotated))
    summary = {"doc_id": doc_id, "sentences": stats.sentences, "skipped_sentences": stats.skipped,
               "mentions": dict(stats.mentions), "sources": dict(stats.sources),
               "timeouts": sorted(annotator.disabled), "seconds": round(time.perf_counter() - t0, 3)}
    meta.put_text(key, json.dumps(summary))
    return {**summary, "cached": False, "key": key}


def check_gazetteers_dir(files, gazetteers_dir: str, patterns: str) -> None:
    """Every gazetteer file must lie in ``entities.gazetteers_dir``: dvc.yaml depends on that
    folder, so an edit of a list elsewhere would not rerun the stage."""
    root = Path(gazetteers_dir).resolve()
    outside = sorted({str(f) for f in files if root not in Path(f).resolve().parents})
    if outside:
        raise InputError(f"{patterns}: gazetteer file(s) {', '.join(outside)} outside entities.gazetteers_dir "
                         f"({gazetteers_dir}); fix: move them there or set entities.gazetteers_dir to their folder")


@flow(name="entities", log_prints=True)
def entities_flow(params_path: str = "params.yaml") -> dict:
    logger = get_run_logger()
    p: EntitiesParams = load_params(EntitiesParams, "entities", params_path)
    run = load_run_params(params_path)
    t0 = time.perf_counter()
    spec = load_entity_spec(p.patterns)  # validates the file before any work
    pattern_digest = file_digest(p.patterns)
    check_gazetteers_dir(spec.gazetteer_files, p.gazetteers_dir, p.patterns)
    gaz_digest = make_key(*[file_digest(f) for f in sorted(set(spec.gazetteer_files))])
    spec_digest = make_key(pattern_digest, gaz_digest)
    mined = sorted(Path(p.mined_dir).glob("*.jsonl"))
    if not mined:
        raise InputError(f"{p.mined_dir}: no <doc_id>.jsonl files; fix: run `dvc repro mine` first")
    keys = [paper_key(m, pattern_digest, gaz_digest, p) for m in mined]
    logger.info("entities: %d papers, %d gazetteer names", len(mined), sum(len(g.names) for g in spec.gazetteers))

    futures = annotate_paper.map(
        [str(m) for m in mined], keys, cache_dir=run.cache_dir, patterns=p.patterns, spec_digest=spec_digest,
        skip_sections=unmapped(list(p.skip_sections)), timeout_s=p.regex_timeout_s, given=p.given,
    )
    summaries = []
    for i, fut in enumerate(futures, 1):
        s = fut.result()
        summaries.append(s)
        state = "failed" if "error" in s else ("cached" if s["cached"] else "annotated")
        logger.info("entities %d/%d papers: %s (%s)", i, len(mined), s["doc_id"], state)
        if "error" in s:
            logger.error(s["error"])

    out = Path(p.out_dir)
    tmp = new_tmp_dir(out)
    cache = ResultCache(run.cache_dir, "entities")
    try:
        for s in summaries:
            if "error" not in s:
                cache.copy_to(s["key"], tmp / f"{s['doc_id']}.jsonl")
        swap_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    ok = [s for s in summaries if "error" not in s]
    mentions: Counter = Counter()
    sources: Counter = Counter()
    timeouts: set[str] = set()
    for s in ok:
        mentions.update(s["mentions"])
        sources.update(s["sources"])
        timeouts.update(s.get("timeouts", []))
    report = {
        "papers": len(summaries),
        "annotated": sum(not s["cached"] for s in ok),
        "cached": sum(s["cached"] for s in ok),
        "failed": {s["doc_id"]: s["error"] for s in summaries if "error" in s},
        "sentences": sum(s["sentences"] for s in ok),
        "mentions_per_type": dict(sorted(mentions.items())),
        "mentions": sum(mentions.values()),
        "sources": dict(sources.most_common()),
        "timed_out_patterns": sorted(timeouts),
        "gazetteer_names": {g.id: len(g.names) for g in spec.gazetteers},
        "annotate_seconds": round(sum(s["seconds"] for s in ok if not s["cached"]), 3),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "per_paper": [{k: s.get(k) for k in ("doc_id", "cached", "sentences", "seconds")} | {"mentions": sum(s["mentions"].values())}
                      for s in ok],
    }
    atomic_write_json(p.report, report)
    logger.info("entities: %d mentions in %d papers (%d annotated, %d cached)", report["mentions"],
                len(ok), report["annotated"], report["cached"])
    return report


def run_entities(params_path: str = "params.yaml") -> dict:
    run = load_run_params(params_path)
    return entities_flow.with_options(task_runner=make_task_runner(run))(params_path)


def main() -> None:
    args = cli_args("Find entity mentions in the mined sentences (per-paper cache).")
    run_main(run_entities, args.params)


if __name__ == "__main__":
    main()

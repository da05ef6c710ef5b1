"""`relations` stage: label candidate mention pairs with the relation templates.

    python -m flows.relations [--params params.yaml]

Reads data/entities/<doc_id>.jsonl (AnnotatedSentence); labels every candidate
pair per paper (cached: key = entities file + relations.yaml + entity types +
params + code); then keeps every positive and `negative_ratio` NO_RELATION per
positive over the whole corpus (seeded hash of the example id: reproducible,
order-free) and writes data/relations/<doc_id>.jsonl (Example, origin "auto"),
rebuilt atomically, plus reports/annotation.json and reports/annotation.md.
Editing relations.yaml reruns this stage only: entity matching is not redone.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter, defaultdict
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
from stages import patterns as patterns_mod
from stages import records as records_mod
from stages import relations as relations_mod
from stages import weak as weak_mod
from stages.cache import ResultCache, code_version, file_digest, make_key
from stages.errors import InputError
from stages.params import load_yaml, parse_params
from stages.patterns import load_entity_types, load_relations_spec
from stages.records import (
    AnnotatedSentence,
    Example,
    atomic_write_json,
    atomic_write_text,
    iter_jsonl,
    write_jsonl,
)
from stages.relations import (
    RelationLabeller,
    RelationsParams,
    annotation_report,
    get_spec,
    report_markdown,
    sample_negatives,
)
from stages.weak import WeakParams


def code_digest() -> str:
    return code_version(relations_mod, patterns_mod, records_mod)


@task(cache_policy=NO_CACHE, persist_result=False)
def label_paper(ents: str, key: str, cache_dir: str, patterns: str, digest: str, types: list[str],
                timeout_s: float) -> dict:
    """Label every candidate pair of one paper unless cached; return its summary."""
    doc_id = Path(ents).stem
    data = ResultCache(cache_dir, "relations")
    meta = ResultCache(cache_dir, "relations-meta", ".json")
    if data.get(key) and (summary := meta.get_json(key)) is not None:
        return {**summary, "cached": True, "key": key}
    t0 = time.perf_counter()
    try:
        sentences = [AnnotatedSentence.from_dict(d) for d in iter_jsonl(ents)]
    except (ValueError, TypeError, KeyError) as exc:
        return {"doc_id": doc_id, "error": f"{ents}: {exc}; fix: rerun `dvc repro entities`", "cached": False, "key": key}
    labeller = RelationLabeller(get_spec(patterns, digest, types), timeout_s)
    examples = [ex for s in sentences for ex in labeller.label_sentence(s)]
    data.put_records(key, examples)
    mentions = Counter(m.type for s in sentences for m in s.mentions)
    summary = {"doc_id": doc_id, "sentences": len(sentences), "mentions": dict(mentions),
               "candidates": labeller.stats.candidates, "conflicts": labeller.stats.conflicts,
               "beyond_max_distance": dict(labeller.stats.beyond_max_distance),
               "excluded": dict(labeller.stats.excluded), "excluded_pairs": labeller.stats.excluded_pairs,
               "timeouts": dict(labeller.stats.timeouts), "seconds": round(time.perf_counter() - t0, 3)}
    meta.put_text(key, json.dumps(summary))
    return {**summary, "cached": False, "key": key}


@flow(name="relations", log_prints=True)
def relations_flow(params_path: str = "params.yaml") -> dict:
    logger = get_run_logger()
    p: RelationsParams = load_params(RelationsParams, "relations", params_path)
    run = load_run_params(params_path)
    t0 = time.perf_counter()
    types = sorted(load_entity_types(p.entity_patterns))
    spec = load_relations_spec(p.patterns, set(types))  # validate before any work
    digest = file_digest(p.patterns)
    files = sorted(Path(p.entities_dir).glob("*.jsonl"))
    if not files:
        raise InputError(f"{p.entities_dir}: no <doc_id>.jsonl files; fix: run `dvc repro entities` first")
    code = code_digest()
    keys = [make_key("relations", file_digest(f), digest, types, p.regex_timeout_s, code) for f in files]
    futures = label_paper.map([str(f) for f in files], keys, cache_dir=run.cache_dir, patterns=p.patterns,
                              digest=digest, types=unmapped(types), timeout_s=p.regex_timeout_s)
    summaries = []
    for i, fut in enumerate(futures, 1):
        s = fut.result()
        summaries.append(s)
        state = "failed" if "error" in s else ("cached" if s["cached"] else "labelled")
        logger.info("relations %d/%d papers: %s (%s)", i, len(files), s["doc_id"], state)
        if "error" in s:
            logger.error(s["error"])
    ok = [s for s in summaries if "error" not in s]

    cache = ResultCache(run.cache_dir, "relations")
    all_examples: list[Example] = []
    for s in ok:
        all_examples += [Example.from_dict(d) for d in iter_jsonl(cache.path(s["key"]))]
    # a params file without the section (another domain's, written before it existed) gets the defaults
    wp: WeakParams = parse_params(WeakParams, load_yaml(params_path).get("label_model") or {}, "label_model")
    lm_section = None
    pattern_labelled = all_examples
    excluded_by_rule: Counter = Counter()
    excluded_by_paper: dict[str, int] = {}
    for s in ok:
        ex = s.get("excluded") or {}
        excluded_by_rule.update(ex)
        if s.get("excluded_pairs"):
            excluded_by_paper[s["doc_id"]] = s["excluded_pairs"]
    if excluded_by_rule:
        logger.info("relations: candidate pairs in text that is not prose are not annotated (%s)",
                    ", ".join(f"{k} {v}" for k, v in excluded_by_rule.most_common()))
    if wp.enabled:
        knowledge = weak_mod.load_knowledge(wp.knowledge, set(spec.relations)) if wp.knowledge else {}
        sources = weak_mod.Sources(spec, knowledge, wp.consistency, wp.combine_vetoes)
        res = weak_mod.weak_label(all_examples, sources, wp)
        weak_mod.save_fitted(wp.out, res.fitted, wp)
        all_examples = res.examples
        lm_section = weak_mod.report_section(res.fitted, all_examples)
        logger.info("label model: %d candidates, %d with no vote; labels %s", len(all_examples),
                    lm_section["unvoted_candidates"],
                    ", ".join(f"{k} {v}" for k, v in lm_section["labels_per_class"].items()))
    kept = sample_negatives(all_examples, p.negative_ratio, p.seed)
    by_doc: dict[str, list[Example]] = defaultdict(list)
    for e in kept:
        by_doc[e.doc_id].append(e)

    out = Path(p.out_dir)
    tmp = new_tmp_dir(out)
    try:
        for s in ok:  # a file per paper, empty when nothing was kept
            write_jsonl(tmp / f"{s['doc_id']}.jsonl", by_doc.get(s["doc_id"], []))
        swap_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    mentions: Counter = Counter()
    beyond: Counter = Counter()
    for s in ok:
        mentions.update(s["mentions"])
        beyond.update(s.get("beyond_max_distance") or {})
    report = annotation_report(pattern_labelled, kept, spec, dict(mentions), beyond_max_distance=dict(beyond),
                               excluded=dict(excluded_by_rule))
    if lm_section is not None:
        report["label_model"] = lm_section
    report["papers"] = {"total": len(summaries), "labelled": sum(not s["cached"] for s in ok),
                        "cached": sum(s["cached"] for s in ok),
                        "failed": {s["doc_id"]: s["error"] for s in summaries if "error" in s}}
    report["excluded_not_prose"] = dict(sorted(excluded_by_paper.items(), key=lambda kv: -kv[1]))
    report["negative_ratio"] = p.negative_ratio
    report["seed"] = p.seed
    report["wall_seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(p.report, report)
    md = report_markdown(report)
    if lm_section is not None:
        md += "\n" + weak_mod.report_markdown(lm_section)
    atomic_write_text(p.report_md, md)
    logger.info("relations: %d examples kept of %d candidates (%s)", len(kept), len(all_examples),
                ", ".join(f"{k} {v}" for k, v in report["examples_per_class"].items()))
    if beyond:
        logger.info("relations: %d mention pairs are no candidate, being farther apart than max_distance (%s); "
                    "raise max_distance in %s to keep them", sum(beyond.values()),
                    ", ".join(f"{k} {v}" for k, v in beyond.most_common()), p.patterns)
    return report


def run_relations(params_path: str = "params.yaml") -> dict:
    run = load_run_params(params_path)
    return relations_flow.with_options(task_runner=make_task_runner(run))(params_path)


def main() -> None:
    args = cli_args("Label candidate mention pairs with the relation templates (per-paper cache).")
    run_main(run_relations, args.params)


if __name__ == "__main__":
    main()

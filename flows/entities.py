"""`entities` stage: find entity mentions in the mined sentences, one cached task per paper.

    python -m flows.entities [--params params.yaml]

Reads data/mined/<doc_id>.jsonl (Sentence), writes data/entities/<doc_id>.jsonl
(AnnotatedSentence) and reports/entities.json. A paper is re-annotated only when
its sentences, the entity pattern file, a gazetteer, the params or the code
changed; the output folder is rebuilt from the cache (temp folder, then swap),
so a removed paper disappears.

With ``entities.tagger: true`` the learned tagger (stages/tagger.py) adds its mentions to
each paper's: the papers are dealt into folds, and each fold is tagged by a model trained on
the other folds' pattern mentions. One more model is trained on every paper: the one
``flows.extract`` applies to new papers (``model.crfsuite``). The models are cached under the
keys of those annotations, so they are retrained only when a paper, the patterns or the
tagger settings change; ``entities.tagger_dir`` gets the models and their figures
(``tagger.json``, which says so when the tagger is off).
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
from stages import tagger as tagger_mod
from stages.cache import ResultCache, code_version, file_digest, make_key
from stages.entities import AnnotatorStats, EntitiesParams, get_annotator, with_given
from stages.errors import InputError
from stages.patterns import load_entity_spec
from stages.records import AnnotatedSentence, Sentence, atomic_write_json, iter_jsonl, read_records


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
    if data.get(key) and (summary := meta.get_json(key)) is not None:
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
    data.put_records(key, annotated)
    summary = {"doc_id": doc_id, "sentences": stats.sentences, "skipped_sentences": stats.skipped,
               "mentions": dict(stats.mentions), "sources": dict(stats.sources),
               "timeouts": sorted(annotator.disabled), "seconds": round(time.perf_counter() - t0, 3)}
    meta.put_text(key, json.dumps(summary))
    return {**summary, "cached": False, "key": key}


def tagger_key(paper_keys: list[str], p: EntitiesParams) -> str:
    return make_key("entity-tagger", sorted(paper_keys), vars(p.tagger_params()), sorted(p.skip_sections),
                    code_version(tagger_mod))


@task(cache_policy=NO_CACHE, persist_result=False)
def train_tagger(annotated: list[str], key: str, cache_dir: str, p: EntitiesParams) -> dict:
    """Train the tagger on the papers' annotations unless a model with this key is cached. Papers
    without a single mention give no model (``no_mentions``): there is nothing to learn."""
    models = ResultCache(cache_dir, "entity-tagger", ".crfsuite")
    meta = ResultCache(cache_dir, "entity-tagger-meta", ".json")
    if (info := meta.get_json(key)) is not None and (info.get("no_mentions") or models.get(key)):
        return {**info, "cached": True}
    t0 = time.perf_counter()
    sentences = [AnnotatedSentence.from_dict(d) for f in annotated for d in iter_jsonl(f)]
    seqs = tagger_mod.training_sequences(sentences, p.tagger_params(), p.skip_sections)
    if tagger_mod.has_mentions(seqs):
        info = tagger_mod.train(seqs, p.tagger_params(), models.path(key))
    else:
        info = {"sentences": len(seqs), "no_mentions": True}
    info["train_seconds"] = round(time.perf_counter() - t0, 2)
    meta.put_text(key, json.dumps(info))
    return {**info, "cached": False}


@task(cache_policy=NO_CACHE, persist_result=False)
def tag_paper(annotated: str, key: str, model: str, cache_dir: str, p: EntitiesParams, types: list[str],
              spec_digest: str) -> dict:
    """Add the tagger's mentions to one paper's pattern annotations (cached per paper and model),
    held to the pattern file's stoplist and exclusions."""
    data = ResultCache(cache_dir, "entities-tagged")
    meta = ResultCache(cache_dir, "entities-tagged-meta", ".json")
    if data.get(key) and (summary := meta.get_json(key)) is not None:
        return {**summary, "cached": True, "key": key}
    t0 = time.perf_counter()
    sentences = [AnnotatedSentence.from_dict(d) for d in iter_jsonl(annotated)]
    tagger = tagger_mod.EntityTagger(model, p.tagger_params(), types)
    before = Counter(m.type for a in sentences for m in a.mentions)
    keep = get_annotator(p.patterns, spec_digest, p.regex_timeout_s).keeps
    tagger_mod.tag_sentences(tagger, sentences, p.skip_sections, keep)
    after = Counter(m.type for a in sentences for m in a.mentions)
    data.put_records(key, sentences)
    summary = {"sentences": len(sentences), "added": dict(after - before), "mentions": dict(after),
               "seconds": round(time.perf_counter() - t0, 3)}
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

    ok = [s for s in summaries if "error" not in s]
    cache = ResultCache(run.cache_dir, "entities")
    source = {s["doc_id"]: (cache, s["key"]) for s in ok}  # where each paper's output is taken from
    tagger_report = tag_corpus(p, run.cache_dir, ok, cache, sorted(spec.types), source, logger, spec_digest)

    out = Path(p.out_dir)
    tmp = new_tmp_dir(out)
    try:
        for s in ok:
            where, key = source[s["doc_id"]]
            where.copy_to(key, tmp / f"{s['doc_id']}.jsonl")
        swap_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    mentions: Counter = Counter()
    sources: Counter = Counter()
    timeouts: set[str] = set()
    for s in ok:
        mentions.update(s["mentions"])
        sources.update(s["sources"])
        timeouts.update(s.get("timeouts", []))
    if tagger_report.get("added"):
        mentions.update(tagger_report["added"])
        sources[tagger_mod.SOURCE] += sum(tagger_report["added"].values())
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
        "tagger": tagger_report,
        "annotate_seconds": round(sum(s["seconds"] for s in ok if not s["cached"]), 3),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "per_paper": [{k: s.get(k) for k in ("doc_id", "cached", "sentences", "seconds")} | {"mentions": sum(s["mentions"].values())}
                      for s in ok],
    }
    atomic_write_json(p.report, report)
    logger.info("entities: %d mentions in %d papers (%d annotated, %d cached)", report["mentions"],
                len(ok), report["annotated"], report["cached"])
    return report


def tag_corpus(p: EntitiesParams, cache_dir: str, ok: list[dict], cache: ResultCache, types: list[str],
               source: dict, logger, spec_digest: str) -> dict:
    """When ``entities.tagger`` is on: per fold, train the tagger on the other folds' papers and
    tag that fold's papers (``source`` then points at the tagged outputs). Write
    ``entities.tagger_dir`` either way and return its figures."""
    tdir = Path(p.tagger_dir)
    tmp = new_tmp_dir(tdir)
    try:
        if not p.tagger:
            report: dict = {"enabled": False}
        elif not ok:
            report = {"enabled": True, "note": "no paper annotated: nothing to train on"}
        else:
            plan = tagger_mod.fold_plan(ok, lambda s: s["doc_id"], p.tagger_folds)
            k = len(plan)
            keys = [tagger_key([s["key"] for s in train], p) for _, train in plan]
            # besides the fold models, one on every paper: the tagger flows.extract applies to new papers
            corpus_key = tagger_key([s["key"] for s in ok], p)
            sets = dict(zip(keys, (train for _, train in plan))) | {corpus_key: ok}
            trained = dict(zip(sets, [f.result() for f in train_tagger.map(
                [[str(cache.path(s["key"])) for s in t] for t in sets.values()], list(sets), cache_dir=cache_dir,
                p=unmapped(p))]))
            infos = [trained[key] for key in keys]
            models = ResultCache(cache_dir, "entity-tagger", ".crfsuite")
            for f, info in enumerate(infos):
                logger.info("entity tagger fold %d/%d: %s on %d sentences (%s s)", f + 1, k,
                            "cached" if info["cached"] else "trained", info["sentences"], info.get("train_seconds"))
                if not info.get("no_mentions"):
                    shutil.copyfile(models.path(keys[f]), tmp / f"model-{f}.crfsuite")
            if not trained[corpus_key].get("no_mentions"):
                shutil.copyfile(models.path(corpus_key), tmp / tagger_mod.CORPUS_MODEL)
            # a fold whose training papers hold no mention keeps its pattern mentions only
            papers, fold_key = [], []
            for f, (fold, _) in enumerate(plan):
                if not infos[f].get("no_mentions"):
                    papers += fold
                    fold_key += [keys[f]] * len(fold)
            model_of = [str(models.path(key)) for key in fold_key]
            tkeys = [make_key("entities-tagged", s["key"], key) for s, key in zip(papers, fold_key)]
            tagged = [f.result() for f in tag_paper.map([str(cache.path(s["key"])) for s in papers], tkeys, model_of,
                                                        cache_dir=cache_dir, p=unmapped(p), types=unmapped(types),
                                                        spec_digest=spec_digest)]
            tcache = ResultCache(cache_dir, "entities-tagged")
            added: Counter = Counter()
            for s, t in zip(papers, tagged):
                source[s["doc_id"]] = (tcache, t["key"])
                added.update(t["added"])
            fresh = [t for t in tagged if not t["cached"]]
            secs = sum(t["seconds"] for t in fresh)
            report = {"enabled": True, "params": vars(p.tagger_params()),
                      "folds": [{"model": None if infos[f].get("no_mentions") else f"model-{f}.crfsuite",
                                 "tagged_papers": sorted(s["doc_id"] for s in plan[f][0]),
                                 "training": infos[f]} for f in range(k)],
                      "corpus_model": {"model": None if trained[corpus_key].get("no_mentions") else tagger_mod.CORPUS_MODEL,
                                       "papers": len(ok),
                                       "training": trained[corpus_key]},
                      "added": dict(sorted(added.items())), "tagged_papers": len(fresh), "cached_papers": len(tagged) - len(fresh),
                      "sentences_per_s": round(sum(t["sentences"] for t in fresh) / secs, 1) if secs else None}
        atomic_write_json(tmp / "tagger.json", report)
        swap_dir(tmp, tdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def run_entities(params_path: str = "params.yaml") -> dict:
    run = load_run_params(params_path)
    return entities_flow.with_options(task_runner=make_task_runner(run))(params_path)


def main() -> None:
    args = cli_args("Find entity mentions in the mined sentences (per-paper cache).")
    run_main(run_entities, args.params)


if __name__ == "__main__":
    main()

"""How good is each label source? Measured on the curator's own labelled sample, not on the gold.

The gold set (`../shared/gold/paleo_relations_dev`) is for measuring the finished pipeline; a
curator improving the rules needs labels of their own. `tests/data/relations_curator.jsonl`
(README beside it) holds 150 candidate pairs of the 10 papers outside the gold, labelled by
reading. Here every rule is recomputed on those pairs (each record carries its sentence's
mentions), and for each label source we count how often it fires and how often it is right
(a template: the pair is its relation; a veto: the pair is NO_RELATION). The label model is fitted
on the whole corpus (data/entities, as the relations stage does) once per variant of the
`label_model` params and scored on the sample, beside the patterns and co-occurrence; the share
of real relations per type pair in the sample is the class prior a curator can give
`label_model.no_relation_prior`. Writes reports/bench/label_sources.json.

    python -m benchmarks.bench_label_sources [--sample tests/data/relations_curator.jsonl]
"""
from __future__ import annotations

import argparse
import glob
import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, weak_params, write

CURATOR = ROOT / "tests/data/relations_curator.jsonl"


def read_sample(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sample_view(recs: list[dict], lab: Any) -> list[Any]:
    """Each curator pair as the relations labeller sees it now: its rules fired, the patterns' label."""
    from stages.records import Example, Mention, Span

    out = []
    for r in recs:
        ms = [Mention(m["start"], m["end"], m["text"], m["type"], "curator") for m in r["mentions"]]
        by = {(m.start, m.end): m for m in ms}
        a, b = sorted([by[(r["subj"]["start"], r["subj"]["end"])], by[(r["obj"]["start"], r["obj"]["end"])]],
                      key=lambda m: m.start)
        label, _, _, rules, _ = lab.label_pair(r["text"], a, b, ms)
        out.append(Example(r["id"], r["doc_id"], r["sent_id"], r["text"], Span(**r["subj"]), Span(**r["obj"]),
                           label, rules=rules, origin="curator"))
    return out


def corpus_examples(lab: Any, entities_dir: str) -> list[Any]:
    from stages.records import AnnotatedSentence

    out = []
    for f in sorted(glob.glob(f"{entities_dir}/*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            out += [ex for line in fh for ex in lab.label_sentence(AnnotatedSentence.from_dict(json.loads(line)))]
    return out


def source_precision(view: list[Any], truth: list[str], sources: Any) -> dict[str, dict]:
    """Per rule: pairs it fired on in the sample, and the share of them whose curator label is its class."""
    from stages.records import NO_RELATION

    fired: dict[str, list[bool]] = defaultdict(list)
    for ex, y in zip(view, truth):
        vetoed = {sources.cue_rel[r] for r in ex.rules if r in sources.cue_rel}
        vetoes = [r for r in ex.rules if r in sources.veto_rels]
        for r in ex.rules:
            if r in sources.template_rel:
                rel = sources.template_rel[r]
                fired[r if rel not in vetoed else f"{r} (cue-vetoed)"].append(y == rel)
            elif r in sources.cue_rel:
                fired[r].append(y != sources.cue_rel[r])
            elif r in sources.veto_rels:
                fired[r].append(y == NO_RELATION)
        if vetoes:
            fired["vetoes (any)"].append(y == NO_RELATION)
    return {r: {"fired": len(v), "right": sum(v), "precision": round(sum(v) / len(v), 3)}
            for r, v in sorted(fired.items(), key=lambda kv: -len(kv[1]))}


def shares(view: list[Any], truth: list[str]) -> dict[str, dict]:
    from stages.records import NO_RELATION
    from stages.weak import group_of

    c: dict[str, Counter] = defaultdict(Counter)
    for ex, y in zip(view, truth):
        c[group_of(ex)][y != NO_RELATION] += 1
    out = {}
    for g, k in sorted(c.items()):
        n = k[True] + k[False]
        # add-one smoothing: a share of 0 or 1 from a handful of pairs is no prior
        out[g] = {"n": n, "related": k[True], "related_share": round(k[True] / n, 3),
                  "no_relation_prior": round((k[False] + 1) / (n + 2), 3)}
    return out


def scores(truth: list[str], pred: list[str]) -> dict[str, Any]:
    from stages.evaluate import relation_scores

    s = relation_scores(truth, pred)
    return {"micro_f1": round(s["micro_f1"], 4), "precision": round(s["micro_precision"], 4),
            "recall": round(s["micro_recall"], 4),
            "per_relation": {c: round(d["f1"], 3) for c, d in s["per_class"].items() if c != "NO_RELATION"}}


def main() -> None:
    from stages import gold as G
    from stages import weak as W
    from stages.patterns import load_entity_types, load_relations_spec
    from stages.relations import RelationLabeller

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", default=str(CURATOR))
    ap.add_argument("--relations", default="data/patterns/relations.yaml")
    ap.add_argument("--entities", default="data/patterns/entities.yaml")
    ap.add_argument("--entities-dir", default="data/entities")
    ap.add_argument("--name", default="label_sources")
    args = ap.parse_args()

    spec = load_relations_spec(args.relations, load_entity_types(args.entities))
    lab = RelationLabeller(spec)
    recs = read_sample(Path(args.sample))
    truth = [r["label"] for r in recs]
    view = sample_view(recs, lab)
    corpus = corpus_examples(lab, args.entities_dir)  # label_sentence makes no candidate of an excluded pair
    shipped = weak_params()
    sample_shares = shares(view, truth)
    curator_prior = {g: d["no_relation_prior"] for g, d in sample_shares.items()}
    variants = {
        "shipped": shipped,
        "estimated_prior": replace(shipped, no_relation_prior=None),
        "curator_prior": replace(shipped, no_relation_prior=curator_prior),
    }
    args_of = {n: list(r.args) for n, r in spec.relations.items()}
    result: dict[str, Any] = {
        "sample": str(Path(args.sample).relative_to(ROOT)) if Path(args.sample).is_relative_to(ROOT) else args.sample,
        "pairs": len(recs), "labels": dict(Counter(truth).most_common()),
        "excluded_in_sample": sum(lab.excluded(v.rules) for v in view),
        "corpus_candidates": len(corpus), "corpus_excluded_not_prose": lab.stats.excluded_pairs,
        "shares_per_type_pair": sample_shares,
        "sources": source_precision(view, truth, W.Sources(spec, {}, True, True)),
        "labellers": {"patterns": scores(truth, [v.label for v in view]),
                      "cooccurrence": scores(truth, [G.cooccurrence_label(v, args_of) for v in view])},
        "label_model": {},
    }
    for name, wp in variants.items():
        knowledge = W.load_knowledge(wp.knowledge, set(spec.relations)) if wp.knowledge else {}
        sources = W.Sources(spec, knowledge, wp.consistency, wp.combine_vetoes)
        res = W.weak_label(corpus, sources, wp)
        by_id = {e.id: e for e in res.examples}
        missing = [v for v in view if v.id not in by_id]
        post = dict(zip([v.id for v in missing], W.posteriors(res.fitted, sources, missing))) if missing else {}
        pred = []
        for v in view:
            if lab.excluded(v.rules):
                pred.append("NO_RELATION")
            elif v.id in by_id:
                pred.append(by_id[v.id].label)
            else:
                p = post[v.id]
                pred.append(W.most_probable(p))
        result["label_model"][name] = {
            "no_relation_prior": wp.no_relation_prior, "class_balance": res.fitted.pi,
            "pairs_not_in_corpus": len(missing), **scores(truth, pred)}
    path = write(args.name, result)
    print(json.dumps({k: result[k] for k in ("shares_per_type_pair", "labellers")}, indent=1))
    for name, d in result["label_model"].items():
        print(name, d["micro_f1"], d["precision"], d["recall"], d["per_relation"], d["class_balance"])
    for r, d in result["sources"].items():
        print(f"  {r:40s} {d['fired']:4d} {d['precision']:.2f}")
    print(path)


if __name__ == "__main__":
    main()

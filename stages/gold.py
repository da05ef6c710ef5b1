"""The gold table: every labeller scored on the same human-labelled pairs.

The test split is labelled by the patterns, so its figures measure agreement with the
patterns. What counts is text read by a person: a gold set (relmine's Example JSONL, one
record per candidate pair, each with its own sentence and spans) is scored here side by side
for

* ``patterns``: the current rules, recomputed on the gold record's own text and spans (the
  sentence's other mentions are the spans of its other gold pairs), so the figure follows the
  rules whatever the mining code does now;
* ``label_model``: the fitted label model's most probable class from those rules' votes;
* ``cooccurrence``: every candidate is the relation its types allow (the trivial baseline);
* ``model``: the trained model's decision (calibrated thresholds when evaluate uses them).

A pair an ``exclude: true`` veto fires on (text that is not prose, by its shape) is not annotated:
the patterns, the label model and the model all call it NO_RELATION, as the relations stage leaves
it out of training; co-occurrence, the every-candidate baseline, still calls it related.

Scores are micro precision / recall / F1 over the positive relations (NO_RELATION left out)
and per relation. Bootstrap intervals resample *sentences*, not pairs: the pairs of one
sentence share its wording and are not independent draws. The ``unseen`` block repeats the
table on the gold pairs whose sentence the model never trained on (the gold papers are in the
sample corpus; their gold labels never enter training, but their sentences may, with weak labels).
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from .records import NO_RELATION, Example, Mention, read_gold_set

LABELLERS = ("patterns", "label_model", "cooccurrence", "model")


def sentence_mentions(gold: Sequence[Example]) -> dict[tuple[str, int, str], list[Mention]]:
    """The mentions of each gold sentence: the spans of all its pairs."""
    spans: dict[tuple[str, int, str], dict[tuple[int, int], Mention]] = defaultdict(dict)
    for g in gold:
        key = (g.doc_id, g.sent_id, g.text)
        for sp in (g.subj, g.obj):
            spans[key].setdefault((sp.start, sp.end), Mention(sp.start, sp.end, sp.text, sp.type, "gold"))
    return {k: sorted(v.values(), key=lambda m: m.start) for k, v in spans.items()}


def pattern_view(gold: Sequence[Example], labeller: Any) -> list[Example]:
    """Each gold pair as the relations labeller sees it: its rules fired and the patterns' label
    (the gold subject/object direction is kept)."""
    mentions = sentence_mentions(gold)
    out = []
    for g in gold:
        ms = mentions[(g.doc_id, g.sent_id, g.text)]
        by_pos = {(m.start, m.end): m for m in ms}
        a, b = sorted([by_pos[(g.subj.start, g.subj.end)], by_pos[(g.obj.start, g.obj.end)]], key=lambda m: m.start)
        label, _, _, rules, _ = labeller.label_pair(g.text, a, b, ms)
        out.append(replace(g, label=label, rules=rules, probs=None))
    return out


def cooccurrence_label(ex: Example, relation_args: dict[str, list[tuple[str, str]]]) -> str:
    """The first relation (in pattern-file order) whose args allow the pair's types, either way."""
    pair, rev = (ex.subj.type, ex.obj.type), (ex.obj.type, ex.subj.type)
    for rel, args in relation_args.items():
        if pair in args or rev in args:
            return rel
    return NO_RELATION


def sentence_bootstrap(refs: Sequence[str], preds: dict[str, Sequence[str]], groups: Sequence[Any], n: int,
                       seed: int, score_fn: Callable[..., dict], keys: Sequence[str] = ("micro_f1", "micro_precision",
                                                                                       "micro_recall")) -> dict:
    """Percentile 95% intervals per labeller, resampling whole sentences (same draws for every labeller)."""
    if n <= 0 or not refs:
        return {}
    by_group: dict[Any, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    units = list(by_group.values())
    rng = random.Random(seed)
    draws: dict[str, dict[str, list[float]]] = {name: {k: [] for k in keys} for name in preds}
    for _ in range(n):
        idx = [i for _ in units for i in units[rng.randrange(len(units))]]
        r = [refs[i] for i in idx]
        for name, p in preds.items():
            s = score_fn(r, [p[i] for i in idx])
            for k in keys:
                draws[name][k].append(s[k])
    out: dict[str, dict] = {}
    for name, d in draws.items():
        out[name] = {}
        for k, vals in d.items():
            vals.sort()
            out[name][k] = {"low": round(vals[int(0.025 * (n - 1))], 4), "high": round(vals[int(round(0.975 * (n - 1)))], 4)}
    return out


def table(refs: Sequence[str], preds: dict[str, Sequence[str]], score_fn: Callable[..., dict]) -> dict:
    """labeller -> micro P/R/F1 over the positive relations, and per relation P/R/F1/support."""
    out = {}
    for name, p in preds.items():
        s = score_fn(list(refs), list(p))
        per = {c: {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}
               for c, d in s["per_class"].items() if c != NO_RELATION}
        out[name] = {"micro_f1": round(s["micro_f1"], 4), "micro_precision": round(s["micro_precision"], 4),
                     "micro_recall": round(s["micro_recall"], 4), "per_relation": per}
    return out


def score_gold_set(gold: Sequence[Example], preds: dict[str, Sequence[str]], score_fn: Callable[..., dict],
                   bootstrap: int, seed: int, seen_sentences: set[str] | None = None) -> dict[str, Any]:
    refs = [g.label for g in gold]
    groups = [(g.doc_id, g.sent_id, g.text) for g in gold]
    res: dict[str, Any] = {"n": len(gold), "sentences": len(set(groups)),
                           "labels": {c: refs.count(c) for c in sorted(set(refs))},
                           "labellers": table(refs, preds, score_fn)}
    ci = sentence_bootstrap(refs, preds, groups, bootstrap, seed, score_fn)
    for name, d in ci.items():
        res["labellers"][name]["ci95"] = d
    if bootstrap:
        res["bootstrap"] = {"resamples": bootstrap, "unit": "sentence"}
    if seen_sentences is not None:
        keep = [i for i, g in enumerate(gold) if g.text not in seen_sentences]
        sub_refs = [refs[i] for i in keep]
        res["unseen"] = {"n": len(keep), "sentences": len({groups[i] for i in keep}),
                         "note": "gold pairs whose sentence is not in the model's training data",
                         "labellers": table(sub_refs, {k: [v[i] for i in keep] for k, v in preds.items()}, score_fn)
                         if keep else {}}
    return res


def markdown_table(name: str, res: dict[str, Any]) -> str:
    """The gold table for a terminal or a report."""
    lines = [f"gold set {name}: {res['n']} pairs, {res['sentences']} sentences "
             f"(95% intervals resample sentences)",
             f"{'labeller':<14} {'micro-F1':>22} {'precision':>10} {'recall':>8}"]
    rels = sorted({r for d in res["labellers"].values() for r, x in d["per_relation"].items() if x.get("support")})
    for lab, d in res["labellers"].items():
        ci = d.get("ci95", {}).get("micro_f1")
        f1 = f"{d['micro_f1']:.3f}" + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "")
        lines.append(f"{lab:<14} {f1:>22} {d['micro_precision']:>10.3f} {d['micro_recall']:>8.3f}")
    if rels:
        lines.append("per relation F1 (support): " + "; ".join(
            f"{r} ({res['labellers'][next(iter(res['labellers']))]['per_relation'][r]['support']}): " + ", ".join(
                f"{lab} {d['per_relation'].get(r, {}).get('f1', 0):.2f}" for lab, d in res["labellers"].items())
            for r in rels))
    un = res.get("unseen")
    if un and un.get("labellers"):
        m = un["labellers"].get("model")
        if m:
            lines.append(f"model on the {un['n']} pairs whose sentences it never trained on: micro-F1 "
                         f"{m['micro_f1']:.3f} (P {m['micro_precision']:.3f}, R {m['micro_recall']:.3f})")
    return "\n".join(lines)


def prediction_records(gold: Sequence[Example], preds: dict[str, Sequence[str]], extra: dict[str, Sequence[Any]],
                       seen_sentences: set[str] | None) -> list[dict]:
    out = []
    for i, g in enumerate(gold):
        rec = {"id": g.id, "doc_id": g.doc_id, "sent_id": g.sent_id, "text": g.text, "subj": g.subj.__dict__,
               "obj": g.obj.__dict__, "label": g.label}
        for name, p in preds.items():
            rec[name] = p[i]
        for name, vals in extra.items():
            rec[name] = vals[i]
        if seen_sentences is not None:
            rec["sentence_in_training"] = g.text in seen_sentences
        out.append(rec)
    return out


# --- every gold set, every labeller ------------------------------------------------------------------


@dataclass
class RuleLabellers:
    """What the rule columns need: the relations labeller and the type args per relation (None when
    the pattern files do not load), the fitted label model and its sources (None when not built),
    and a note per column left out."""
    labeller: Any = None
    relation_args: dict[str, list[tuple[str, str]]] | None = None
    fitted: Any = None
    sources: Any = None
    notes: list[str] = field(default_factory=list)


def load_rule_labellers(relation_patterns: str | Path, entity_patterns: str | Path,
                        label_model: str | Path) -> RuleLabellers:
    """The patterns and the label model as the relations stage built them; a pattern file that
    does not load, or a label model not written, leaves its columns out with a note."""
    from . import weak as W
    from .errors import InputError
    from .patterns import load_entity_types, load_relations_spec
    from .relations import RelationLabeller

    out = RuleLabellers()
    try:
        spec = load_relations_spec(relation_patterns, load_entity_types(entity_patterns))
    except InputError as exc:
        out.notes.append(f"{exc}; the patterns, label model and co-occurrence columns are left out")
        return out
    out.labeller = RelationLabeller(spec)
    out.relation_args = {n: list(rel.args) for n, rel in spec.relations.items()}
    if Path(label_model).exists():
        out.fitted = W.load_fitted(label_model)
        out.sources = W.sources_for(out.fitted, spec)
    else:
        out.notes.append(f"{label_model}: no label model (label_model.enabled false?); its column is left out")
    return out


def label_gold(gold: Sequence[Example], rules: RuleLabellers,
               decide: Callable[[Sequence[Example]], tuple[Sequence[str], Sequence[float]]]
               ) -> tuple[dict[str, list[str]], dict[str, list[Any]]]:
    """Each labeller's label per gold pair (patterns, label model, co-occurrence, model, and with a
    label-model veto in the decision the model without it), and the per-pair extras of the
    predictions file (rules fired, label model probabilities, model confidence)."""
    from . import weak as W

    preds: dict[str, list[str]] = {}
    extra: dict[str, list[Any]] = {}
    if rules.labeller is not None:
        view = pattern_view(gold, rules.labeller)
        preds["patterns"] = [v.label for v in view]
        extra["rules"] = [v.rules for v in view]
        if rules.fitted is not None:
            post = W.posteriors(rules.fitted, rules.sources, view)
            preds["label_model"] = [W.most_probable(p) for p in post]
            extra["label_model_probs"] = post
        preds["cooccurrence"] = [cooccurrence_label(g, rules.relation_args or {}) for g in gold]
    # the model reads the text and spans; a label-model veto reads the rules the current patterns fire
    target = view if rules.labeller is not None else gold
    if hasattr(decide, "detail"):  # a stages.extract.Decider
        d = decide.detail(target)
        labels, conf = d.labels, d.confidence
        if getattr(decide, "veto", None) is not None:
            preds["model_no_veto"] = list(d.model_labels)  # the model's calibrated decision alone
    else:
        labels, conf = decide(target)
    preds["model"] = list(labels)
    extra["model_confidence"] = [round(float(c), 4) for c in conf]
    if rules.labeller is not None and rules.labeller.exclude_ids:
        # text that is not prose is not annotated: no labeller but the co-occurrence baseline (every
        # candidate, by definition) states a relation there
        out = [rules.labeller.excluded(r) for r in extra["rules"]]
        for name in ("patterns", "label_model", "model", "model_no_veto"):
            if name in preds:
                preds[name] = [NO_RELATION if o else x for x, o in zip(preds[name], out)]
        extra["not_prose"] = out
    return preds, extra


@dataclass
class GoldSetResult:
    name: str
    result: dict[str, Any]            # the set's part of metrics_gold.json
    records: list[dict]               # reports/gold_predictions/<name>.jsonl
    table: str                        # the markdown table
    bad: list[str] = field(default_factory=list)  # one message per bad record


def score_gold_sets(sets: dict[str, str], rules: RuleLabellers,
                    decide: Callable[[Sequence[Example]], tuple[Sequence[str], Sequence[float]]],
                    score_fn: Callable[..., dict], bootstrap: int, seed: int, seen_sentences: set[str] | None,
                    decision: str) -> tuple[list[GoldSetResult], list[str]]:
    """Every gold set (name -> folder or file) scored by every labeller, and a note per set missing
    or empty (``rules.notes`` says which columns are left out)."""
    from .relations import count_beyond

    notes: list[str] = []
    out: list[GoldSetResult] = []
    for name, path in sets.items():
        if not Path(path).exists():
            notes.append(f"gold set {name}: {path} not found, skipped")
            continue
        gold, files, bad = read_gold_set(path)
        if not gold:
            notes.append(f"gold set {name}: no valid records in {path}")
            out.append(GoldSetResult(name, {}, [], "", bad))
            continue
        if rules.labeller is not None and (far := count_beyond(rules.labeller, gold)):
            # the patterns, unlike the model, cannot label these
            notes.append(f"gold set {name}: {sum(far.values())} pairs lie farther apart than max_distance "
                         f"({', '.join(f'{k} {v}' for k, v in far.items())}): the relations stage makes no "
                         "candidate of them, so the patterns leave them NO_RELATION")
        preds, extra = label_gold(gold, rules, decide)
        res = score_gold_set(gold, preds, score_fn, bootstrap, seed, seen_sentences)
        res["files"] = files
        res["decision"] = decision
        out.append(GoldSetResult(name, res, prediction_records(gold, preds, extra, seen_sentences),
                                 markdown_table(name, res), bad))
    return out, notes


def print_tables(metrics_gold: str | Path) -> str:
    """The gold tables of a metrics_gold.json (what `make run` prints at the end)."""
    import json

    d = json.loads(Path(metrics_gold).read_text(encoding="utf-8"))
    parts = [markdown_table(name, res) for name, res in d.get("sets", {}).items()]
    parts += [f"note: {n}" for n in d.get("notes", [])]
    return "\n\n".join(parts) if parts else "no gold set scored (evaluate.gold_sets / data/gold)"


if __name__ == "__main__":
    import sys

    print(print_tables(sys.argv[1] if len(sys.argv) > 1 else "reports/metrics_gold.json"))

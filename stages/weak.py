"""Weak supervision: label sources over candidate pairs, combined by the label model.

The patterns alone label a candidate only when a template fires, and call every other
candidate NO_RELATION; on the sample most of those are real relations. Here every rule is a
*label source that may abstain*:

* a template votes for its relation (unless a negative cue of that relation fired);
* a veto rule (``vetoes:`` in relations.yaml) votes NO_RELATION;
* a knowledge file row (``subject,relation,object``, ``data/knowledge/*.csv``) votes for its
  relation on any candidate naming that subject and object (distant supervision);
* corpus consistency: a name pair a template labelled in one sentence votes for that relation
  in the paper's other sentences pairing the same names.

A candidate no source speaks about stays unlabelled; the label model (``stages/labelmodel.py``)
turns the votes into per-class probabilities, with a class balance per type pair, so an
unlabelled pair takes the balance its type pair has, not NO_RELATION. The label written to
``Example.label`` is the most probable class and ``Example.probs`` holds the distribution
(training on soft labels reads it).
"""
from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import InputError
from .labelmodel import Fitted, LabelModelParams, fit
from .patterns import RelationsSpec
from .records import NO_RELATION, Example

KNOWLEDGE = "knowledge"
CONSISTENCY = "consistency"
VETOES = "vetoes"


# The default domain's NO_RELATION share per type pair, from its curator-labelled sample (150 pairs of
# the papers outside the gold set, add-one smoothed; STRAT-STRAT, with 7 pairs, is estimated); EM alone cannot identify it (the unvoted third
# of the candidates takes whatever balance the vetoes' rates imply).
DEFAULT_NO_RELATION_PRIOR = {"CHRONO-STRAT": 0.39, "LOC-TAXON": 0.26, "STRAT-TAXON": 0.18}


@dataclass
class WeakParams:
    """The `label_model` section of params.yaml."""
    enabled: bool = True          # false: the patterns' own labels (templates, NO_RELATION otherwise)
    # CSV files or folders of subject,relation,object rows (a missing one is skipped with a warning)
    knowledge: list[str] = field(default_factory=lambda: ["data/knowledge_built"])
    consistency: bool = True      # a templated name pair votes for its relation in the paper's other sentences
    # true: the veto rules are one source ("any veto fired"): they fire together far more often than
    # independent sources would, and counted one by one the label model trusts them too much
    combine_vetoes: bool = True
    out: str = "data/label_model.json"
    iterations: int = 100
    prior_accuracy: float = 0.85
    prior_strength: float = 20.0
    # null: estimated per type pair; a share in (0, 1) for every type pair; or {LOC-TAXON: 0.3, ...}
    # (pairs not named are estimated), e.g. from a curator-labelled sample of candidates (the default
    # domain's: tests/data/relations_curator.jsonl, benchmarks/bench_label_sources.py)
    no_relation_prior: float | dict[str, float] | None = field(default_factory=lambda: dict(DEFAULT_NO_RELATION_PRIOR))

    def check(self) -> None:
        self.lm().check()
        if not self.out:
            raise ValueError("label_model.out must name a JSON file, e.g. data/label_model.json")

    def lm(self) -> LabelModelParams:
        return LabelModelParams(self.iterations, self.prior_accuracy, self.prior_strength, self.no_relation_prior)


def _fold(name: str) -> str:
    return " ".join(name.casefold().split())


# --- knowledge files -------------------------------------------------------------------


def knowledge_files(paths: Sequence[str]) -> list[Path]:
    """The CSV files of the named files and folders. A missing one is an optional source not
    built (yet): it is skipped with a warning naming the fix."""
    import logging

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("*.csv"))
        elif p.exists():
            out.append(p)
        else:
            logging.getLogger("relmine.weak").warning(
                "%s: knowledge file or folder not found, skipped; fix: build it (dvc repro knowledge), "
                "create it, or remove it from label_model.knowledge in params.yaml", p)
    return out


def load_knowledge(paths: Sequence[str], relations: set[str]) -> dict[tuple[str, str], set[str]]:
    """(folded subject, folded object) -> relations, from CSV rows subject,relation,object
    (a header row naming those columns is allowed). A row with an unknown relation is an error."""
    facts: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in knowledge_files(paths):
        with open(f, encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row or not "".join(row).strip() or row[0].startswith("#"):
                    continue
                if len(row) != 3:
                    raise InputError(f"{f}:{lineno}: expected 3 columns subject,relation,object, got {len(row)}; "
                                     "fix: quote names that contain commas")
                s, r, o = (x.strip() for x in row)
                if lineno == 1 and (s, r, o) == ("subject", "relation", "object"):
                    continue
                if r not in relations:
                    raise InputError(f"{f}:{lineno}: relation {r!r} is not in the relation patterns "
                                     f"({', '.join(sorted(relations))}); fix: correct the relation name")
                facts[(_fold(s), _fold(o))].add(r)
    return dict(facts)


# --- votes -------------------------------------------------------------------------------


class Sources:
    """The label sources of a relations spec (plus knowledge and consistency), and the votes
    they cast on examples whose ``rules`` the relations labeller filled."""

    def __init__(self, spec: RelationsSpec, knowledge: dict[tuple[str, str], set[str]] | None = None,
                 consistency: bool = True, combine_vetoes: bool = False):
        self.spec = spec
        self.combine_vetoes = combine_vetoes
        self.knowledge = knowledge or {}
        self.consistency = consistency
        self.classes = [NO_RELATION, *spec.relations]
        self.source_class: dict[str, str] = {}
        self.template_rel: dict[str, str] = {}
        self.cue_rel: dict[str, str] = {}
        self.veto_rels: dict[str, list[str]] = {}
        for rel in spec.relations.values():
            for t in rel.templates:
                self.source_class[t.id] = rel.name
                self.template_rel[t.id] = rel.name
            for c in rel.negative_cues:
                self.cue_rel[c.id] = rel.name
        for v in spec.vetoes:
            self.veto_rels[v.id] = v.relations
            self.source_class[VETOES if combine_vetoes else v.id] = NO_RELATION
        for rel in spec.relations:
            if self.knowledge:
                self.source_class[f"{KNOWLEDGE}:{rel}"] = rel
            if consistency:
                self.source_class[f"{CONSISTENCY}:{rel}"] = rel

    def allowed(self, ex: Example) -> list[str]:
        pair = (ex.subj.type, ex.obj.type)
        rev = (ex.obj.type, ex.subj.type)
        return [NO_RELATION] + [r.name for r in self.spec.relations.values() if pair in r.args or rev in r.args]

    def applies(self, ex: Example) -> set[str]:
        allowed = set(self.allowed(ex))
        out = set()
        for s, c in self.source_class.items():
            if s == VETOES:
                if any(not rels or allowed & set(rels) for rels in self.veto_rels.values()):
                    out.add(s)
            elif s in self.veto_rels:
                rels = self.veto_rels[s]
                if not rels or allowed & set(rels):
                    out.add(s)
            elif c in allowed:
                out.add(s)
        return out

    def votes(self, ex: Example, consistent: dict[tuple, set[str]] | None = None) -> dict[str, str]:
        vetoed = {self.cue_rel[r] for r in ex.rules if r in self.cue_rel}
        allowed = set(self.allowed(ex))
        out: dict[str, str] = {}
        for r in ex.rules:
            if r in self.template_rel and self.template_rel[r] not in vetoed:
                out[r] = self.template_rel[r]
            elif r in self.veto_rels:
                out[VETOES if self.combine_vetoes else r] = NO_RELATION
        key = (_fold(ex.subj.text), _fold(ex.obj.text))
        rkey = (key[1], key[0])
        for rel in self.knowledge.get(key, set()) | self.knowledge.get(rkey, set()):
            if rel in allowed:
                out[f"{KNOWLEDGE}:{rel}"] = rel
        if self.consistency and consistent is not None:
            for rel in consistent.get((ex.doc_id, *sorted(key)), set()) - {NO_RELATION}:
                if rel in allowed and not any(self.template_rel.get(s) == rel for s in out):
                    out[f"{CONSISTENCY}:{rel}"] = rel
        return out

    def templated_pairs(self, examples: Sequence[Example]) -> dict[tuple, set[str]]:
        """(doc, name, name) -> relations a surviving template gave that name pair somewhere in the paper."""
        out: dict[tuple, set[str]] = defaultdict(set)
        for ex in examples:
            vetoed = {self.cue_rel[r] for r in ex.rules if r in self.cue_rel}
            for r in ex.rules:
                rel = self.template_rel.get(r)
                if rel and rel not in vetoed:
                    out[(ex.doc_id, *sorted((_fold(ex.subj.text), _fold(ex.obj.text))))].add(rel)
        return out


def _per_rule_stats(examples: Sequence[Example], sources: Sources, fitted: Fitted) -> dict[str, dict]:
    k = fitted.classes.index(NO_RELATION)
    n = len(examples)
    out = {}
    for vid in sources.veto_rels:
        on = [i for i, e in enumerate(examples) if vid in e.rules]
        others = sum(1 for i in on if len([r for r in examples[i].rules if r in sources.veto_rels]) > 1)
        confl = sum(1 for i in on if any(r in sources.template_rel for r in examples[i].rules))
        acc = float(fitted.posteriors[on, k].mean()) if on else None
        out[vid] = {"class": NO_RELATION, "coverage": len(on), "coverage_share": round(len(on) / n, 4) if n else 0.0,
                    "overlaps": others, "conflicts": confl,
                    "estimated_accuracy": round(acc, 4) if acc is not None else None, "part_of": VETOES}
    return out


def group_of(ex: Example) -> str:
    return "-".join(sorted((ex.subj.type, ex.obj.type)))


@dataclass
class WeakResult:
    examples: list[Example]
    fitted: Fitted
    votes: list[dict[str, str]]


def check_prior_pairs(params: WeakParams, spec: RelationsSpec) -> None:
    """A type pair named in ``label_model.no_relation_prior`` that the relations do not allow is
    warned about (a domain's params file without the key gets the default domain's pairs)."""
    from .labelmodel import pair_key

    if not isinstance(params.no_relation_prior, dict):
        return
    import logging

    known = {pair_key(f"{s}-{o}") for s, o in spec.allowed_pairs()}
    for k in params.no_relation_prior:
        if pair_key(k) not in known:
            logging.getLogger(__name__).warning(
                "params.yaml: label_model.no_relation_prior names %r, which no relation of %s allows: ignored; "
                "fix: name one of %s, or set it to null to estimate every share", k, spec.path, ", ".join(sorted(known)))


def weak_label(examples: list[Example], sources: Sources, params: WeakParams) -> WeakResult:
    """Fit the label model on every candidate and relabel them: label = most probable class,
    probs = the distribution over the classes the pair's types allow."""
    check_prior_pairs(params, sources.spec)
    consistent = sources.templated_pairs(examples) if sources.consistency else None
    votes = [sources.votes(ex, consistent) for ex in examples]
    fitted = fit(votes, [sources.allowed(e) for e in examples], [group_of(e) for e in examples],
                 [sources.applies(e) for e in examples], sources.source_class, sources.classes, params.lm())
    fitted.config = {"knowledge": list(params.knowledge), "consistency": sources.consistency,
                     "combine_vetoes": sources.combine_vetoes}
    if sources.combine_vetoes:  # each veto's own figures for the report, beside the combined source
        fitted.stats.update(_per_rule_stats(examples, sources, fitted))
    out = []
    for ex, q in zip(examples, fitted.posteriors):
        probs = {c: round(float(x), 4) for c, x in zip(fitted.classes, q) if x > 0}
        out.append(_relabel(ex, most_probable(probs), probs))
    return WeakResult(out, fitted, votes)


def most_probable(probs: dict[str, float]) -> str:
    """The label model's decision for one pair: its most probable class (of equals, the first in
    the classes' order). The labels written to data/relations, the gold table's label-model column
    and the review batch all decide by it."""
    return max(probs, key=probs.get)


def _relabel(ex: Example, label: str, probs: dict[str, float]) -> Example:
    from dataclasses import replace

    return replace(ex, label=label, probs=probs)


def posteriors(fitted: Fitted, sources: Sources, examples: Sequence[Example]) -> list[dict[str, float]]:
    """The fitted model's class probabilities for other candidates (the gold pairs), with the
    class balance and source rates it learned on the corpus."""
    import numpy as np

    consistent = sources.templated_pairs(examples) if sources.consistency else None
    cidx = {c: k for k, c in enumerate(fitted.classes)}
    sidx = {s: j for j, s in enumerate(fitted.sources)}
    logb, log1b = np.log(fitted.beta), np.log1p(-fitted.beta)
    out = []
    for ex in examples:
        v = sources.votes(ex, consistent)
        ll = np.zeros(len(fitted.classes))
        for s in sources.applies(ex):
            if s not in sidx:
                continue
            ll += logb[sidx[s]] if s in v else log1b[sidx[s]]
        pi = fitted.pi.get(group_of(ex))
        pi = np.array(pi) if pi else np.ones(len(fitted.classes))
        ll += np.log(np.maximum(pi, 1e-12))
        allowed = {cidx[c] for c in sources.allowed(ex)}
        for k in range(len(ll)):
            if k not in allowed:
                ll[k] = -np.inf
        ll -= ll.max()
        q = np.exp(ll)
        q /= q.sum()
        out.append({c: round(float(x), 4) for c, x in zip(fitted.classes, q) if x > 0})
    return out


def save_fitted(path: str | Path, fitted: Fitted, params: WeakParams | None = None) -> None:
    from .records import atomic_write_json

    config = ({"knowledge": list(params.knowledge), "consistency": params.consistency,
               "combine_vetoes": params.combine_vetoes} if params else fitted.config)
    atomic_write_json(path, {"config": config, "classes": fitted.classes, "sources": fitted.sources,
                             "source_class": [fitted.classes[k] for k in fitted.source_class],
                             "beta": [[round(float(x), 6) for x in row] for row in fitted.beta],
                             "pi": fitted.pi, "iterations": fitted.iterations, "sources_stats": fitted.stats})


def load_fitted(path: str | Path) -> Fitted:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: label model not found; fix: run the relations stage (dvc repro relations)")
    return fitted_from_dict(json.loads(p.read_text(encoding="utf-8")))


def fitted_from_dict(d: dict[str, Any]) -> Fitted:
    """A label model from what ``save_fitted`` wrote (a file, or the copy a calibration holds)."""
    import numpy as np

    cidx = {c: k for k, c in enumerate(d["classes"])}
    return Fitted(d["classes"], d["sources"], [cidx[c] for c in d["source_class"]], np.array(d["beta"]),
                  d["pi"], np.zeros((0, len(d["classes"]))), d.get("iterations", 0), d.get("sources_stats", {}),
                  d.get("config", {}))


class LabelModelVeto:
    """The rules' last word in a decision (``calibrate.veto_no_relation``).

    A candidate the label model gives NO_RELATION with probability >= ``threshold`` is
    NO_RELATION, whatever the trained model says. Why: the veto rules are the label sources a
    model learns worst. They fire on sentence shapes that are rare in a training split (a list of
    "the <zone> in <place>" items: the two list vetoes fire on 4 training pairs; 12 of the model's
    14 false positives on gold that the label model avoided lie in two such sentences), so the
    model relates the pairs of a sentence shape it has hardly seen, while the rule that reads that
    shape still fires on new text. The label model already weighs each veto against the templates,
    knowledge and consistency votes of the same pair, so the veto wins only where nothing that
    voted for the pair outweighs it. The model's own decision stands everywhere else: it still
    drops the label model's related pairs it reads as unrelated, and keeps every related pair of
    the candidates no rule spoke about. ``label_model`` is the fitted model as ``save_fitted``
    wrote it (the calibration file carries a copy, so a model folder and its calibration decide
    alone); ``spec`` the relations spec whose rules fired on the examples."""

    def __init__(self, label_model: dict[str, Any], spec: RelationsSpec, threshold: float):
        self.fitted = fitted_from_dict(label_model)
        self.sources = sources_for(self.fitted, spec)
        self.threshold = threshold

    def no_relation(self, examples: Sequence[Example]) -> list[float]:
        """The label model's P(NO_RELATION) per example. A candidate the relations stage labelled
        carries that posterior in ``probs``, computed over the whole corpus, and it is used as is:
        recomputed here, a split's subset of a paper would lose the consistency votes of the paper's
        other sentences (the methods domain's test split lost every relation that way). The others
        (a new paper's candidates at extract, gold pairs) are scored here, with the consistency
        votes of ``examples``."""
        if all(e.probs is not None for e in examples):
            return [e.probs.get(NO_RELATION, 0.0) for e in examples]
        fresh = posteriors(self.fitted, self.sources, examples)  # all of them: their templated pairs vote
        return [(e.probs if e.probs is not None else p).get(NO_RELATION, 0.0) for e, p in zip(examples, fresh)]

    def apply(self, examples: Sequence[Example], labels: Sequence[str], confidence: Sequence[float]
              ) -> tuple[list[str], list[float]]:
        """``labels`` with the vetoed candidates NO_RELATION (their confidence: the label model's)."""
        out_l, out_c = list(labels), [float(c) for c in confidence]
        for i, q in enumerate(self.no_relation(examples)):
            if q >= self.threshold and out_l[i] != NO_RELATION:
                out_l[i], out_c[i] = NO_RELATION, q
        return out_l, out_c


def sources_for(fitted: Fitted, spec: RelationsSpec) -> Sources:
    """The label sources a fitted model was built with (knowledge files re-read)."""
    c = fitted.config
    knowledge = load_knowledge(c.get("knowledge") or [], set(spec.relations)) if c.get("knowledge") else {}
    return Sources(spec, knowledge, c.get("consistency", True), c.get("combine_vetoes", False))


def report_section(fitted: Fitted, examples: Sequence[Example]) -> dict[str, Any]:
    """The label model's part of reports/annotation.json."""
    return {
        "classes": fitted.classes,
        "class_balance": fitted.pi,
        "iterations": fitted.iterations,
        "labels_per_class": dict(Counter(e.label for e in examples).most_common()),
        "unvoted_candidates": fitted.stats.get("_unvoted", {}).get("candidates", 0),
        "sources": {s: st for s, st in fitted.stats.items() if not s.startswith("_")},
    }


def report_markdown(section: dict[str, Any]) -> str:
    lines = ["## Label model", "",
             "Every rule is a label source that may abstain; the label model (stages/labelmodel.py) weighs "
             "them into class probabilities. Estimated accuracy = the mean probability of the source's "
             "class over the pairs it fired on; conflicts = pairs where a source of another class fired too.", "",
             f"Candidates no source voted on: {section['unvoted_candidates']}. EM iterations: {section['iterations']}.", "",
             "| type pair | " + " | ".join(section["classes"]) + " |", "|---|" + "---|" * len(section["classes"])]
    for g, pi in section["class_balance"].items():
        lines.append(f"| {g} | " + " | ".join(f"{x:.2f}" for x in pi) + " |")
    lines += ["", "| label | pairs |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in section["labels_per_class"].items()]
    lines += ["", "| source | votes | coverage | share | est. accuracy | overlaps | conflicts |",
              "|---|---|---|---|---|---|---|"]
    for s, st in sorted(section["sources"].items(), key=lambda kv: -kv[1]["coverage"]):
        acc = "-" if st["estimated_accuracy"] is None else f"{st['estimated_accuracy']:.2f}"
        lines.append(f"| `{s}` | {st['class']} | {st['coverage']} | {st['coverage_share']:.2%} | {acc} | "
                     f"{st['overlaps']} | {st['conflicts']} |")
    return "\n".join(lines) + "\n"

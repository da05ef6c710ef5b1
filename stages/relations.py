"""Relation labelling: candidate mention pairs, typed-slot templates, negative cues,
priorities, reproducible negative sampling, and the labelling-function report.

* Candidates: two mentions of one sentence whose types some relation allows
  (in either text order), at most ``max_distance`` characters apart (the gap
  between them). The subject/object direction comes from the relation's args.
  Pairs farther apart are counted per type pair (``LabelStats.beyond_max_distance``,
  the report's ``beyond_max_distance``): a corpus with given pairs must see what it loses.
* A template such as ``{TAXON} (?:from|at) (?:the )?{LOC}`` fires on a pair when
  its first slot is *exactly* the first mention, its second slot exactly the
  second, and the regex parts before, between and after match the text there.
  The middle is matched inside the sentence (``Template.middle_fits``), so a ``\\b``
  next to a slot sees the mention's edge; the prefix looks back ``lookback`` characters.
* Other mentions lying between the pair are shown to the templates as ``<TYPE>``
  (``{TAXON} from the <STRAT>, {LOC}``): a template can require, skip over or
  list them (``{TAXON}(?:, <TAXON>)* and <TAXON> from the {STRAT}``); with
  ``inner_mentions: text`` (file, relation or template) as their own words instead.
* A negative cue of a relation that matches (between the mentions, or anywhere
  in the sentence with ``scope: sentence``) vetoes that relation for the pair.
* Several relations firing on one pair is a conflict: the highest priority wins
  (then the relation listed first); conflicts are counted in the report.
* Every template and cue that fired is listed in ``Example.rules``.
* A pair an ``exclude: true`` veto fires on (text that is not prose, by its shape or kind) is no
  candidate at all: not annotated, not trained on, not extracted (``LabelStats.excluded``).
* Unlabelled candidates are NO_RELATION; ``sample_negatives`` keeps
  ``negative_ratio`` of them per positive, chosen by a seeded hash of the
  example id, so the choice never depends on processing order.
"""
from __future__ import annotations

import hashlib
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .patterns import RelationsSpec, Template, Veto, load_relations_spec
from .records import NO_RELATION, AnnotatedSentence, Example, Mention, Span


@dataclass
class LabelStats:
    candidates: int = 0
    conflicts: int = 0  # pairs claimed by two or more relations
    vetoed: int = 0  # pairs where a negative cue removed every firing relation
    veto_votes: int = 0  # pairs at least one veto rule voted NO_RELATION on
    # `exclude: true` veto id -> candidate pairs it took out (text that is not prose is not annotated)
    excluded: Counter = field(default_factory=Counter)
    excluded_pairs: int = 0  # the pairs those rules took out (one pair may count for two rules above)
    timeouts: Counter = field(default_factory=Counter)
    # "SUBJ-OBJ" type pair -> pairs of mentions no candidate because they lie farther apart than
    # the largest max_distance of the relations allowing those types
    beyond_max_distance: Counter = field(default_factory=Counter)


def example_id(doc_id: str, sent_id: int, subj: Span | Mention, obj: Span | Mention) -> str:
    return f"{doc_id}:{sent_id}:{subj.start}-{subj.end}:{obj.start}-{obj.end}"


class RelationLabeller:
    def __init__(self, spec: RelationsSpec, regex_timeout_s: float = 1.0):
        self.spec = spec
        self.timeout = regex_timeout_s
        self.stats = LabelStats()
        self.allowed = spec.allowed_pairs()
        self.pair_names = spec.pair_names()
        self.order = {name: i for i, name in enumerate(spec.relations)}
        self.exclude_ids = {v.id for v in spec.vetoes if v.exclude}
        # what depends on the sentence alone (a shape, a sentence-scope regex) is computed once per
        # sentence, not once per pair: (veto id, "shape" | "sentence", text) -> holds
        self._per_text: dict[tuple[str, str, str], bool] = {}
        # templates indexed by the slot types in text order
        self.by_types: dict[tuple[str, str], list[Template]] = defaultdict(list)
        for rel in spec.relations.values():
            for t in rel.templates:
                self.by_types[t.types].append(t)

    def _max_gap(self, t1: str, t2: str) -> int:
        return max(self.allowed.get((t1, t2), -1), self.allowed.get((t2, t1), -1))

    def type_pair(self, t1: str, t2: str) -> str:
        """The reports' name of an allowed type pair, in either order (``RelationsSpec.pair_names``)."""
        return self.pair_names[(t1, t2)]

    def beyond_max_distance(self, a: Span | Mention, b: Span | Mention) -> bool:
        """Whether two spans of an allowed type pair lie too far apart to be a candidate."""
        first, second = sorted((a, b), key=lambda m: m.start)
        limit = self._max_gap(a.type, b.type)
        return limit >= 0 and second.start - first.end > limit

    def candidates(self, mentions: list[Mention]) -> list[tuple[Mention, Mention]]:
        ms = sorted(mentions, key=lambda m: m.start)
        out = []
        for i, a in enumerate(ms):
            for b in ms[i + 1:]:
                gap = b.start - a.end
                if gap < 0:
                    continue
                limit = self._max_gap(a.type, b.type)
                if limit < 0:
                    continue
                if gap > limit:
                    # later mentions of other types may still be allowed further away
                    self.stats.beyond_max_distance[self.type_pair(a.type, b.type)] += 1
                    continue
                out.append((a, b))
        return out

    @staticmethod
    def between_text(text: str, a: Mention, b: Mention, mentions: list[Mention] | None = None,
                     inner_mentions: str = "type") -> str:
        """The text between two mentions as templates see it: every other mention lying
        wholly between them is replaced by ``<TYPE>`` ("Xus from the <STRAT>, Utah"), unless
        ``inner_mentions`` is "text" (then the text itself)."""
        inner = [m for m in mentions or () if m.start >= a.end and m.end <= b.start and m is not a and m is not b]
        if not inner or inner_mentions == "text":
            return text[a.end:b.start]
        parts, pos = [], a.end
        for m in sorted(inner, key=lambda m: m.start):
            parts += [text[pos:m.start], f"<{m.type}>"]
            pos = m.end
        parts.append(text[pos:b.start])
        return "".join(parts)

    def _fires(self, t: Template, text: str, view: tuple[str, str], a: Mention, b: Mention) -> bool:
        """``view``: (the text between as this template sees it, the sentence with that text in
        place of the real one). The middle is matched inside the sentence, so an edge ``\b`` or
        look-around sees the mention beside it; see the compiled patterns in stages/patterns.py."""
        between, shown = view
        try:
            if not t.middle_fits(shown, a.end, a.end + len(between), self.timeout):
                return False
            if t.prefix is not None and t.prefix.search(text, max(0, a.start - self.spec.lookback), a.start + 1,
                                                        timeout=self.timeout) is None:
                return False
            if t.suffix is not None and t.suffix.match(text, b.end, timeout=self.timeout) is None:
                return False
        except TimeoutError:
            self.stats.timeouts[t.id] += 1
            return False
        return True

    def veto_applies(self, v: Veto, a: Mention, b: Mention) -> bool:
        if not v.relations:
            return True
        return any((a.type, b.type) in self.spec.relations[r].args or (b.type, a.type) in self.spec.relations[r].args
                   for r in v.relations)

    def fired_vetoes(self, text: str, a: Mention, b: Mention, between: str, kind: str = "body") -> list[str]:
        """Ids of the veto rules (votes for NO_RELATION) that fire on the pair (a before b).
        They do not change the patterns' own label: the label model weighs them."""
        out = []
        for v in self.spec.vetoes:
            if not self.veto_applies(v, a, b):
                continue
            if v.kinds and kind not in v.kinds:
                continue
            if v.same_text is not None and (_fold(a.text) == _fold(b.text)) != v.same_text:
                continue
            if v.shape is not None and not self._per_sentence(v, "shape", text, lambda: v.shape.holds(text)):
                continue
            if v.subj_first is not None and (self._default_direction(a, b)[0] is a) != v.subj_first:
                continue
            if v.regex is not None:
                if v.scope == "sentence":
                    hit = self._per_sentence(v, "sentence", text, lambda: self._search(v, text))
                else:
                    hit = self._search(v, self._scope_text(v.scope, text, a, b, between))
                if not hit:
                    continue
            out.append(v.id)
        if out:
            self.stats.veto_votes += 1
        return out

    def _scope_text(self, scope: str, text: str, a: Mention, b: Mention, between: str) -> str:
        """The part of the sentence a veto's ``scope`` reads (a comes before b in the text)."""
        if scope == "between":
            return between
        subj, obj = self._default_direction(a, b)
        match scope:
            case "before":
                return text[:a.start]
            case "after":
                return text[b.end:]
            case "first":
                return a.text
            case "second":
                return b.text
            case "subj":
                return subj.text
            case "obj":
                return obj.text
            case "before_subj":
                return text[:subj.start]
            case "before_obj":
                return text[:obj.start]
            case "after_subj":
                return text[subj.end:]
            case "after_obj":
                return text[obj.end:]
        raise ValueError(f"unknown veto scope {scope!r}")  # stages/patterns.py validates scopes

    def _search(self, v: Veto, ctx: str) -> bool:
        try:
            return v.regex.search(ctx, timeout=self.timeout) is not None
        except TimeoutError:
            self.stats.timeouts[v.id] += 1
            return False

    def _per_sentence(self, v: Veto, what: str, text: str, compute: Callable[[], bool]) -> bool:
        key = (v.id, what, text)
        if key not in self._per_text:
            if len(self._per_text) > 4096:
                self._per_text.clear()
            self._per_text[key] = compute()
        return self._per_text[key]

    def excluded(self, rules: Iterable[str]) -> bool:
        """Whether a pair with these rules fired is not annotated (an `exclude: true` veto fired):
        no candidate for training, NO_RELATION in every decision."""
        return any(r in self.exclude_ids for r in rules)

    def label_pair(self, text: str, a: Mention, b: Mention,
                   mentions: list[Mention] | None = None, kind: str = "body") -> tuple[str, Mention, Mention, list[str], int]:
        """Label one candidate (a before b in the text); ``mentions`` (the sentence's) lets
        templates see the mentions between the pair as ``<TYPE>``.
        Returns (label, subject, object, rules fired, number of relations that claimed it)."""
        fired: list[tuple[Template, Mention, Mention]] = []
        gap = b.start - a.end
        views: dict[str, tuple[str, str]] = {}

        def view(mode: str) -> tuple[str, str]:
            if mode not in views:
                between = self.between_text(text, a, b, mentions, mode)
                views[mode] = (between, text if between == text[a.end:b.start]
                               else text[:a.end] + between + text[b.start:])
            return views[mode]

        for t in self.by_types.get((a.type, b.type), ()):
            if gap > self.spec.relations[t.relation].max_distance:
                continue
            if self._fires(t, text, view(t.inner_mentions), a, b):
                subj, obj = (a, b) if t.roles[0] == "subj" else (b, a)
                fired.append((t, subj, obj))
        rules = [t.id for t, _, _ in fired]
        rules += self.fired_vetoes(text, a, b, view(self.spec.inner_mentions)[0], kind)
        claimed = {t.relation for t, _, _ in fired}
        vetoed: set[str] = set()
        for rel in claimed:
            for cue in self.spec.relations[rel].negative_cues:
                try:
                    if cue.scope == "between":
                        hit = cue.regex.search(view(self.spec.relations[rel].inner_mentions)[0], timeout=self.timeout)
                    else:
                        hit = cue.regex.search(text, timeout=self.timeout)
                except TimeoutError:
                    self.stats.timeouts[cue.id] += 1
                    hit = None
                if hit:
                    rules.append(cue.id)
                    vetoed.add(rel)
        live = [f for f in fired if f[0].relation not in vetoed]
        if claimed and not live:
            self.stats.vetoed += 1
        if len(claimed - vetoed) > 1:
            self.stats.conflicts += 1
        if live:
            t, subj, obj = min(live, key=lambda f: (-f[0].priority, self.order[f[0].relation]))
            return t.relation, subj, obj, rules, len(claimed)
        subj, obj = self._default_direction(a, b)
        return NO_RELATION, subj, obj, rules, len(claimed)

    def _default_direction(self, a: Mention, b: Mention) -> tuple[Mention, Mention]:
        if (a.type, b.type) in self.allowed:
            return a, b
        return b, a

    def label_sentence(self, s: AnnotatedSentence, keep_excluded: bool = False) -> list[Example]:
        """Every candidate pair of the sentence, labelled. A pair an ``exclude: true`` veto fires on
        (text that is not prose) is no candidate: it is counted in ``stats.excluded`` and left out,
        so neither training nor extract sees it, unless ``keep_excluded``."""
        out = []
        for a, b in self.candidates(s.mentions):
            self.stats.candidates += 1
            label, subj, obj, rules, _ = self.label_pair(s.text, a, b, s.mentions, s.kind)
            if self.exclude_ids and not keep_excluded and (hit := self.exclude_ids.intersection(rules)):
                self.stats.excluded.update(hit)
                self.stats.excluded_pairs += 1
                continue
            out.append(Example(
                id=example_id(s.doc_id, s.sent_id, subj, obj), doc_id=s.doc_id, sent_id=s.sent_id, text=s.text,
                subj=Span(subj.start, subj.end, subj.type, subj.text), obj=Span(obj.start, obj.end, obj.type, obj.text),
                label=label, rules=rules, origin="auto", page=s.page, section=s.section,
            ))
        return out


def _fold(name: str) -> str:
    return " ".join(name.casefold().split())


def label_sentences(sentences: Iterable[AnnotatedSentence], spec: RelationsSpec,
                    regex_timeout_s: float = 1.0) -> list[Example]:
    """Every candidate of every sentence, labelled (NO_RELATION included, not sampled)."""
    lab = RelationLabeller(spec, regex_timeout_s)
    return [ex for s in sentences for ex in lab.label_sentence(s)]


def _rank(seed: int, ex_id: str) -> str:
    return hashlib.sha1(f"{seed}:{ex_id}".encode()).hexdigest()


def sample_negatives(examples: list[Example], ratio: float, seed: int) -> list[Example]:
    """Keep every positive and round(ratio * positives) NO_RELATION examples: those with
    the smallest seeded hash of their id. Same inputs -> same choice, in any order."""
    pos = [e for e in examples if e.label != NO_RELATION]
    neg = [e for e in examples if e.label == NO_RELATION]
    k = min(len(neg), int(round(ratio * len(pos))))
    keep = {e.id for e in sorted(neg, key=lambda e: _rank(seed, e.id))[:k]}
    return [e for e in examples if e.label != NO_RELATION or e.id in keep]


# --- report ---------------------------------------------------------------------


def _marked(ex: Example) -> str:
    """Sentence with [[subject]] and <<object>> marked, for the report."""
    marks = sorted([(ex.subj.start, ex.subj.end, "[[", "]]"), (ex.obj.start, ex.obj.end, "<<", ">>")], reverse=True)
    text = ex.text
    for s, e, l, r in marks:
        text = text[:s] + l + text[s:e] + r + text[e:]
    # long sentences: keep a window around the pair (marks add 8 characters)
    lo = max(0, min(ex.subj.start, ex.obj.start) - 120)
    hi = max(ex.subj.end, ex.obj.end) + 8 + 120
    return ("..." if lo else "") + text[lo:hi] + ("..." if hi < len(text) else "")


def annotation_report(all_examples: list[Example], kept: list[Example], spec: RelationsSpec,
                      mentions_per_type: dict[str, int] | None = None, max_examples: int = 3,
                      beyond_max_distance: dict[str, int] | None = None,
                      excluded: dict[str, int] | None = None) -> dict:
    """Snorkel-style analysis of the labelling rules over all candidates (before sampling):
    per rule its coverage (pairs it fired on), overlaps (pairs where another rule fired
    too), conflicts (pairs where a rule of another relation fired), wins (pairs it
    labelled) and a few example sentences; and, per type pair, the mention pairs that were
    no candidate because they lie farther apart than ``max_distance`` (``LabelStats``)."""
    rule_rel: dict[str, str] = {}
    rule_kind: dict[str, str] = {}
    for rel in spec.relations.values():
        for t in rel.templates:
            rule_rel[t.id], rule_kind[t.id] = rel.name, "template"
        for c in rel.negative_cues:
            rule_rel[c.id], rule_kind[c.id] = rel.name, "negative_cue"
    for v in spec.vetoes:
        rule_rel[v.id], rule_kind[v.id] = NO_RELATION, "veto"
    n = len(all_examples)
    per: dict[str, dict] = {
        r: {"relation": rule_rel[r], "kind": rule_kind[r], "coverage": 0, "overlaps": 0, "conflicts": 0,
            "labelled": 0, "overlaps_with": Counter(), "conflicts_with": Counter(), "examples": []}
        for r in rule_rel
    }
    conflicts = 0
    labelled_by_rules = 0
    for ex in all_examples:
        if not ex.rules:
            continue
        labelled_by_rules += ex.label != NO_RELATION
        tpl = [r for r in ex.rules if rule_kind.get(r) == "template"]
        rels = {rule_rel[r] for r in tpl}
        conflicts += len(rels) > 1
        for r in ex.rules:
            if r not in per:
                continue
            st = per[r]
            st["coverage"] += 1
            others = [o for o in ex.rules if o != r and o in per]
            if others:
                st["overlaps"] += 1
                st["overlaps_with"].update(others)
            rivals = [o for o in tpl if rule_rel[o] != rule_rel[r]]
            if rivals and rule_kind[r] == "template":
                st["conflicts"] += 1
                st["conflicts_with"].update(rivals)
            if rule_kind[r] == "template" and ex.label == rule_rel[r]:
                st["labelled"] += 1
            if len(st["examples"]) < max_examples:
                st["examples"].append({"id": ex.id, "label": ex.label, "sentence": _marked(ex)})
    for rid, k in (excluded or {}).items():  # pairs an exclude veto took out before they became candidates
        if rid in per:
            per[rid]["coverage"] += k
    for st in per.values():
        st["coverage_share"] = round(st["coverage"] / n, 4) if n else 0.0
        st["overlaps_with"] = dict(st["overlaps_with"].most_common(5))
        st["conflicts_with"] = dict(st["conflicts_with"].most_common(5))
    return {
        "patterns_file": str(spec.path),
        "mentions_per_type": dict(sorted((mentions_per_type or {}).items())),
        "candidates": n,
        "candidates_per_class": dict(Counter(e.label for e in all_examples).most_common()),
        "examples_per_class": dict(Counter(e.label for e in kept).most_common()),
        "examples": len(kept),
        "conflicts": conflicts,
        "beyond_max_distance": beyond_report(spec, beyond_max_distance or {}),
        "rules_never_fired": sorted(r for r, st in per.items() if st["coverage"] == 0),
        "rules": per,
    }


def beyond_report(spec: RelationsSpec, counts: dict[str, int]) -> dict:
    """Per allowed type pair: its candidate limit (the largest max_distance of the relations
    allowing it) and the mention pairs beyond it, zero included, so none is lost without a word."""
    out = {}
    names = spec.pair_names()
    for pair, limit in spec.allowed_pairs().items():
        name = names[pair]
        if name not in out:
            out[name] = {"max_distance": limit, "pairs": int(counts.get(name, 0))}
        else:  # the same pair allowed both ways: the larger limit, as candidates use
            out[name]["max_distance"] = max(out[name]["max_distance"], limit)
    return out


def count_beyond(labeller: RelationLabeller, examples: Iterable[Example]) -> dict[str, int]:
    """Given pairs (gold, imported) that the relations stage would make no candidate of
    because their mentions lie farther apart than max_distance, per type pair."""
    c: Counter = Counter()
    for e in examples:
        if labeller.beyond_max_distance(e.subj, e.obj):
            c[labeller.type_pair(e.subj.type, e.obj.type)] += 1
    return dict(c.most_common())


def report_markdown(report: dict) -> str:
    lines = ["# Annotation report", "",
             f"Relation patterns: `{report['patterns_file']}`. Candidates: {report['candidates']}, "
             f"kept examples: {report['examples']}, conflicts (pairs claimed by two relations): {report['conflicts']}.", "",
             "## Mentions per type", "", "| type | mentions |", "|---|---|"]
    lines += [f"| {t} | {c} |" for t, c in report["mentions_per_type"].items()]
    beyond = report.get("beyond_max_distance") or {}
    lines += ["", "## Pairs beyond max_distance", "",
              f"Mention pairs of allowed types that are no candidate because the text between them is longer than "
              f"`max_distance` characters: {sum(b['pairs'] for b in beyond.values())} in all. Raise `max_distance` "
              "in the relations file (per relation or at the top) to keep them.", "",
              "| type pair | max_distance | pairs dropped |", "|---|---|---|"]
    lines += [f"| {k} | {b['max_distance']} | {b['pairs']} |" for k, b in beyond.items()]
    ex = report.get("excluded_not_prose") or {}
    if ex:
        lines += ["", "## Text that is not prose", "",
                  f"Mention pairs an `exclude: true` veto fired on are no candidates (neither the label model, "
                  f"training nor extract sees them; the gold table calls them NO_RELATION): {sum(ex.values())} in all, "
                  + ", ".join(f"{d} {n}" for d, n in ex.items()) + "."]
    lines += ["", "## Examples per class", "", "| class | candidates | kept |", "|---|---|---|"]
    for label, c in report["candidates_per_class"].items():
        lines.append(f"| {label} | {c} | {report['examples_per_class'].get(label, 0)} |")
    lines += ["", "## Rules", "",
              "Coverage = candidate pairs the rule fired on; overlaps = pairs where another rule fired too; "
              "conflicts = pairs where a template of another relation fired; labelled = pairs it gave its label to.", "",
              "| rule | kind | relation | coverage | share | labelled | overlaps | conflicts | conflicts with |",
              "|---|---|---|---|---|---|---|---|---|"]
    for rid, st in sorted(report["rules"].items(), key=lambda kv: -kv[1]["coverage"]):
        cw = ", ".join(f"{k} ({v})" for k, v in st["conflicts_with"].items()) or "-"
        lines.append(f"| `{rid}` | {st['kind']} | {st['relation']} | {st['coverage']} | {st['coverage_share']:.2%} | "
                     f"{st['labelled']} | {st['overlaps']} | {st['conflicts']} | {cw} |")
    if report["rules_never_fired"]:
        lines += ["", "Rules that never fired: " + ", ".join(f"`{r}`" for r in report["rules_never_fired"])]
    lines += ["", "## Example sentences", "", "Subject in [[ ]], object in << >>.", ""]
    for rid, st in report["rules"].items():
        if not st["examples"]:
            continue
        lines.append(f"### `{rid}` ({st['relation']})")
        lines.append("")
        lines += [f"- {e['label']}: {e['sentence']}" for e in st["examples"]]
        lines.append("")
    return "\n".join(lines) + "\n"


# One parsed spec per process and pattern version, shared by threads.
_SPECS: dict[str, RelationsSpec] = {}
_LOCK = threading.Lock()


def get_spec(patterns: str, digest: str, types: list[str]) -> RelationsSpec:
    key = f"{patterns}:{digest}:{','.join(types)}"
    with _LOCK:
        if key not in _SPECS:
            _SPECS[key] = load_relations_spec(patterns, set(types))
        return _SPECS[key]


@dataclass
class RelationsParams:
    entities_dir: str = "data/entities"
    patterns: str = "data/patterns/relations.yaml"
    entity_patterns: str = "data/patterns/entities.yaml"  # where the entity types are declared
    out_dir: str = "data/relations"
    report: str = "reports/annotation.json"
    report_md: str = "reports/annotation.md"
    negative_ratio: float = 4.0
    seed: int = 13
    regex_timeout_s: float = 1.0

    def check(self) -> None:
        if self.negative_ratio < 0:
            raise ValueError("negative_ratio must be >= 0")
        if self.regex_timeout_s <= 0:
            raise ValueError("regex_timeout_s must be > 0")

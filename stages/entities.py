"""Entity mention finding: user regexes and gazetteers, in one pass per sentence.

How a sentence is annotated (``EntityAnnotator.find``):

1. every regex pattern runs with a time limit (a pattern that times out is
   reported in ``timeouts`` and switched off for the rest of the run);
2. all gazetteers run together as one Aho-Corasick automaton over the
   lower-cased sentence; a hit counts only on word boundaries and when its
   case rule holds (``exact``: as written in the list; ``title``: every word
   capitalised, connectors such as "of" or "and" excepted; ``any``);
3. a type's ``extend_left`` / ``extend_right`` regexes grow a candidate over
   qualifiers (``Lower`` Devonian, Cambrian ``Stage 5``);
4. stop-list and exclusions drop candidates;
5. **overlap rule**: candidates are taken longest first, then by higher
   priority, then leftmost, then in file order; a candidate overlapping one
   already taken is dropped. Nested or crossing mentions never survive;
6. **document-level propagation** (``propagate``, per paper, after all its
   sentences): names taught by some mentions (the genus of each binomial) become
   mentions where they stand alone elsewhere in the same paper;
7. **abbreviation normalisation** (``normalise_abbreviations``, per paper, last):
   "P. atavus" written after "Ptychagnostus atavus" gets ``norm`` = the full name, so
   later stages can count both as one taxon; the written form stays in ``text``.
"""
from __future__ import annotations

import re as _re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Literal

import ahocorasick

from .patterns import EntitySpec, load_entity_spec
from .records import AnnotatedSentence, Mention, Sentence

# Words allowed in lower case inside a title-case name ("Mill of Forest Till").
CONNECTORS = {"of", "and", "the", "de", "la", "le", "du", "des", "del", "van", "von", "on", "upon", "in", "&", "y"}


@dataclass
class Candidate:
    start: int
    end: int
    type: str
    source: str
    priority: int
    order: int  # position of the pattern/gazetteer in the file, last tie-breaker


@dataclass
class AnnotatorStats:
    sentences: int = 0
    skipped: int = 0
    mentions: Counter = field(default_factory=Counter)  # per type
    sources: Counter = field(default_factory=Counter)  # per pattern id / gazetteer
    timeouts: Counter = field(default_factory=Counter)  # per pattern id
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "sentences": self.sentences,
            "skipped_sentences": self.skipped,
            "mentions": dict(sorted(self.mentions.items())),
            "sources": dict(self.sources.most_common()),
            "timeouts": dict(self.timeouts),
            "seconds": round(self.seconds, 3),
        }


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _title_ok(text: str) -> bool:
    for word in text.replace("-", " ").split():
        if word.lower() in CONNECTORS:
            continue
        first = next((c for c in word if c.isalnum()), "")
        if first and not (first.isupper() or first.isdigit()):
            return False
    return True


class EntityAnnotator:
    """Compiled entity patterns of one domain; ``find(text)`` -> mentions."""

    def __init__(self, spec: EntitySpec, regex_timeout_s: float = 1.0, normalise: bool = True):
        self.spec = spec
        self.timeout = regex_timeout_s
        self.normalise = normalise  # abbreviated binomials get the full name seen earlier (``norm``)
        self.disabled: set[str] = set()
        self.stats = AnnotatorStats()
        self._automaton = self._build_automaton()

    def _build_automaton(self):
        if not any(g.names for g in self.spec.gazetteers):
            return None
        auto = ahocorasick.Automaton()
        entries: dict[str, list[tuple[int, str]]] = {}
        for gi, gaz in enumerate(self.spec.gazetteers):
            for name in gaz.names:
                key = name.lower()
                if len(key) != len(name):  # lower() changed the length: offsets would drift
                    continue
                entries.setdefault(key, []).append((gi, name))
        for key, vals in entries.items():
            auto.add_word(key, (len(key), tuple(vals)))
        auto.make_automaton()
        return auto

    # -- candidates -------------------------------------------------------------

    def _regex_candidates(self, text: str, out: list[Candidate]) -> None:
        for order, pat in enumerate(self.spec.patterns):
            if pat.id in self.disabled:
                continue
            try:
                for m in pat.regex.finditer(text, timeout=self.timeout):
                    s, e = m.span("mention") if "mention" in pat.regex.groupindex else m.span()
                    if s >= 0 and e > s:
                        out.append(Candidate(s, e, pat.type, pat.id, pat.priority, order))
            except TimeoutError:
                # Reported and skipped: one bad pattern must not stall the whole run.
                self.stats.timeouts[pat.id] += 1
                self.disabled.add(pat.id)

    def _gazetteer_candidates(self, text: str, out: list[Candidate]) -> None:
        if self._automaton is None:
            return
        low = text.lower()
        if len(low) != len(text):  # rare Unicode case folding changing length: fold char by char
            low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        n = len(text)
        gazs = self.spec.gazetteers
        base = len(self.spec.patterns)
        for end_idx, (length, vals) in self._automaton.iter(low):
            end = end_idx + 1
            start = end - length
            if (start > 0 and _is_word_char(text[start - 1])) or (end < n and _is_word_char(text[end])):
                continue
            surface = text[start:end]
            for gi, name in vals:
                gaz = gazs[gi]
                if gaz.case == "exact" and surface != name:
                    continue
                if gaz.case == "title" and not _title_ok(surface):
                    continue
                out.append(Candidate(start, end, gaz.type, f"gazetteer:{gaz.id}", gaz.priority, base + gi))

    def _extend(self, text: str, c: Candidate) -> None:
        ts = self.spec.types.get(c.type)
        if ts is None:
            return
        if ts.extend_left is not None:
            lo = max(0, c.start - 80)
            m = ts.extend_left.search(text, lo, c.start, timeout=self.timeout)
            if m and m.start() < c.start:
                c.start = m.start()
        if ts.extend_right is not None:
            m = ts.extend_right.match(text, c.end, timeout=self.timeout)
            if m and m.end() > c.end:
                c.end = m.end()

    def _excluded(self, text: str, c: Candidate, overlap_spans: list[tuple[int, int, list[str]]]) -> bool:
        surface = text[c.start:c.end]
        if surface.lower() in self.spec.stoplist:
            return True
        for ex in self.spec.exclusions:
            if ex.match == "full" and (not ex.types or c.type in ex.types) and ex.regex.fullmatch(surface):
                return True
        for s, e, types in overlap_spans:
            if s < c.end and c.start < e and (not types or c.type in types):
                return True
        return False

    def _overlap_spans(self, text: str) -> list[tuple[int, int, list[str]]]:
        return [(m.start(), m.end(), ex.types)
                for ex in self.spec.exclusions if ex.match == "overlap"
                for m in ex.regex.finditer(text, timeout=self.timeout)]

    # -- public -----------------------------------------------------------------

    def find(self, text: str) -> list[Mention]:
        cands: list[Candidate] = []
        self._regex_candidates(text, cands)
        self._gazetteer_candidates(text, cands)
        if not cands:
            return []
        overlap_spans = self._overlap_spans(text)
        kept: list[Candidate] = []
        for c in cands:
            try:
                self._extend(text, c)
            except TimeoutError:
                self.stats.timeouts[f"extend:{c.type}"] += 1
            if not self._excluded(text, c, overlap_spans):
                kept.append(c)
        return [Mention(c.start, c.end, text[c.start:c.end], c.type, c.source) for c in resolve_overlaps(kept)]

    def annotate(self, sentences: Iterable[Sentence], skip_sections: Iterable[str] = (),
                 stats: AnnotatorStats | None = None) -> list[AnnotatedSentence]:
        """Annotate sentences; those in ``skip_sections`` are kept (so sentence ids stay
        dense) but get no mentions. Then the spec's propagation rules run once per paper
        (``doc_id``) over its annotated sentences. Counts go to ``stats`` (one per task
        when threads share an annotator), else to ``self.stats``."""
        st = stats if stats is not None else self.stats
        skip = {s.lower() for s in skip_sections}
        t0 = time.perf_counter()
        out: list[AnnotatedSentence] = []
        live: dict[str, list[AnnotatedSentence]] = {}  # per paper, the sentences not skipped
        for s in sentences:
            st.sentences += 1
            a = AnnotatedSentence(s.doc_id, s.sent_id, s.page, s.section, s.text, s.kind, [])
            if s.section.lower() in skip:
                st.skipped += 1
            else:
                a.mentions = self.find(s.text)  # timeouts are counted in self.stats
                live.setdefault(s.doc_id, []).append(a)
            out.append(a)
        if self.spec.propagation:
            for doc_sents in live.values():
                self.propagate(doc_sents)
        if self.normalise:
            for doc_sents in live.values():
                normalise_abbreviations(doc_sents)
        for a in out:
            for m in a.mentions:
                st.mentions[m.type] += 1
                st.sources[m.source] += 1
        st.seconds += time.perf_counter() - t0
        return out

    def propagate(self, paper: list[AnnotatedSentence]) -> int:
        """Second pass over one paper: names taught by the propagation rules' source
        mentions (e.g. the genus of every binomial) become mentions wherever they stand
        alone in the paper. A name is never taught when it also appears inside a mention
        of another type in the paper (a genus "Wheeler" next to "Wheeler Formation"; of a
        type in the rule's ``blocked_by`` when it names some) or is stop-listed; a rule
        with ``before``/``after`` adds a name only where that context stands beside it; a new mention never overlaps an existing one. Returns the number
        of mentions added (in place)."""
        added = 0
        for rule in self.spec.propagation:
            sources = set(rule.sources)
            names: set[str] = set()
            blocked: set[str] = set()
            for a in paper:
                for m in a.mentions:
                    if m.type == rule.type and m.source in sources:
                        hit = rule.take.search(m.text, timeout=self.timeout)
                        if hit:
                            name = hit.group("name") if "name" in rule.take.groupindex else hit.group()
                            if name and len(name) >= rule.min_length:
                                names.add(name)
                    elif m.type != rule.type and (rule.blocked_by is None or m.type in rule.blocked_by):
                        blocked.update(m.text.split())
            names = {n for n in names - blocked if n.lower() not in self.spec.stoplist}
            if not names:
                continue
            finder = _re.compile(r"(?<![\w.])(?:" + "|".join(_re.escape(n) for n in sorted(names, key=len, reverse=True))
                                 + r")(?![\w])")
            for a in paper:
                hits = [h for h in finder.finditer(a.text)
                        if all(h.end() <= m.start or m.end <= h.start() for m in a.mentions)
                        and self._in_context(rule, a.text, h.start(), h.end())]
                if not hits:
                    continue
                spans = self._overlap_spans(a.text)
                for h in hits:
                    c = Candidate(h.start(), h.end(), rule.type, rule.id, rule.priority, 0)
                    if not self._excluded(a.text, c, spans):
                        a.mentions.append(Mention(c.start, c.end, h.group(), rule.type, rule.id))
                        added += 1
                a.mentions.sort(key=lambda m: m.start)
        return added

    def _in_context(self, rule, text: str, start: int, end: int) -> bool:
        """A taught name may stand here: the rule names no context, or its ``before`` matches the
        text just before the name, or its ``after`` the text just after it."""
        if rule.before is None and rule.after is None:
            return True
        if rule.before is not None and rule.before.search(text[max(0, start - 80):start], timeout=self.timeout):
            return True
        return rule.after is not None and rule.after.match(text, end, timeout=self.timeout) is not None

    def keeps(self, text: str, m: Mention) -> bool:
        """Whether the spec's stoplist and exclusions let ``m`` (found by anything, e.g. the
        learned tagger) stand in ``text``: not stop-listed, no exclusion of its type touching it."""
        c = Candidate(m.start, m.end, m.type, m.source, 0, 0)
        return not self._excluded(text, c, self._overlap_spans(text))

# "Ptychagnostus atavus", "Megistaspis (Paramegistaspis) armata", "Elrathia cf. kingii"
_FULL_NAME = _re.compile(r"(?P<genus>[A-Z][a-z]{2,})(?: \((?P<sub>[A-Z][a-z]+)\))? (?:(?:cf|aff)\. ?)?(?P<epithet>[a-z]{3,})")
# "P. atavus", "P.atavus", "M. (P.) planilimbata", "M. (P.) aff. estonica"
_ABBREVIATED = _re.compile(r"(?P<initial>[A-Z])\. ?(?:\((?P<sub>[A-Z])(?:[a-z]+|\.)\) )?(?P<qual>(?:cf|aff)\. ?)?(?P<epithet>[a-z]{3,})")


def normalise_abbreviations(paper: list[AnnotatedSentence]) -> int:
    """Give each abbreviated binomial ("P. atavus") the full name it stands for, taken from
    the latest mention of the same type earlier in the paper whose genus starts with that
    letter and whose epithet is the same ("Ptychagnostus atavus"). The written form stays in
    ``text``; ``norm`` gets the full name (with the abbreviation's "cf." or "aff."). An
    abbreviation with no such earlier name keeps ``norm`` None. Sentences are taken in order;
    returns the number of mentions normalised (in place)."""
    seen: dict[tuple[str, str, str], str] = {}  # (type, initial, epithet) -> genus with subgenus
    done = 0
    for a in paper:
        for m in sorted(a.mentions, key=lambda m: m.start):
            ab = _ABBREVIATED.fullmatch(m.text)
            if ab:
                full = seen.get((m.type, ab["initial"], ab["epithet"]))
                if full and (not ab["sub"] or f"({ab['sub']}" in full):
                    qual = ab["qual"].rstrip(". ") + ". " if ab["qual"] else ""
                    m.norm = f"{full} {qual}{ab['epithet']}"
                    done += 1
                continue
            fm = _FULL_NAME.fullmatch(m.text)
            if fm:
                genus = fm["genus"] + (f" ({fm['sub']})" if fm["sub"] else "")
                seen[(m.type, fm["genus"][0], fm["epithet"])] = genus
    return done


def resolve_overlaps(cands: list[Candidate]) -> list[Candidate]:
    """Longest first, then higher priority, then leftmost, then file order; drop overlaps."""
    taken: list[Candidate] = []
    for c in sorted(cands, key=lambda c: (-(c.end - c.start), -c.priority, c.start, c.order)):
        if all(c.end <= t.start or t.end <= c.start for t in taken):
            taken.append(c)
    taken.sort(key=lambda c: c.start)
    return taken


# One annotator per process and pattern version: building the gazetteer automaton costs
# ~0.3 s, so threads share it and Dask workers build it once.
_ANNOTATORS: dict[str, EntityAnnotator] = {}
_LOCK = threading.Lock()


def get_annotator(patterns: str, spec_digest: str, timeout_s: float) -> EntityAnnotator:
    key = f"{patterns}:{spec_digest}:{timeout_s}"
    with _LOCK:
        if key not in _ANNOTATORS:
            _ANNOTATORS[key] = EntityAnnotator(load_entity_spec(patterns), timeout_s)
        return _ANNOTATORS[key]


GIVEN_MODES = ("ignore", "only", "plus_patterns")


def with_given(given: list[AnnotatedSentence], found: list[AnnotatedSentence] | None,
               skip_sections: Iterable[str] = (), stats: AnnotatorStats | None = None) -> list[AnnotatedSentence]:
    """An imported corpus's own mentions (``given``), alone (``found`` None) or with the pattern
    mentions (``found``, the same sentences annotated) that overlap none of them: a curator's
    marks win over the patterns on span boundaries. Sentences in ``skip_sections`` keep no
    mention, as in ``EntityAnnotator.annotate``; counts go to ``stats``."""
    skip = {s.lower() for s in skip_sections}
    by_key = {(a.doc_id, a.sent_id): a for a in found or []}
    out: list[AnnotatedSentence] = []
    for g in given:
        mentions = [] if g.section.lower() in skip else list(g.mentions)
        extra = by_key.get((g.doc_id, g.sent_id))
        if extra is not None and mentions:
            mentions += [m for m in extra.mentions if all(m.end <= x.start or x.end <= m.start for x in g.mentions)]
        elif extra is not None:
            mentions = list(extra.mentions)
        mentions.sort(key=lambda m: (m.start, m.end))
        out.append(AnnotatedSentence(g.doc_id, g.sent_id, g.page, g.section, g.text, g.kind, mentions))
    if stats is not None and found is None:  # annotate() counted the found ones already
        stats.sentences += len(given)
        stats.skipped += sum(g.section.lower() in skip for g in given)
    if stats is not None:
        stats.mentions.clear()
        stats.sources.clear()
        for a in out:
            for m in a.mentions:
                stats.mentions[m.type] += 1
                stats.sources[m.source] += 1
    return out


@dataclass
class EntitiesParams:
    mined_dir: str = "data/mined"
    patterns: str = "data/patterns/entities.yaml"
    out_dir: str = "data/entities"
    report: str = "reports/entities.json"
    gazetteers_dir: str = "data/gazetteers"  # holds every gazetteer file the patterns name (a DVC dependency)
    skip_sections: list[str] = field(default_factory=lambda: ["references"])
    regex_timeout_s: float = 1.0
    given: Literal["ignore", "only", "plus_patterns"] = "ignore"  # mentions already in the input records
    # the learned tagger (stages/tagger.py): trained on this stage's own mentions, used beside them
    tagger: bool = True
    tagger_dir: str = "data/entity_tagger"   # its model and training figures (a DVC output; written when off too)
    tagger_types: list[str] = field(default_factory=lambda: ["TAXON", "LOC"])  # types it may add ([]: all)
    # a token's probability of a type to mark it: one number or one per type
    tagger_min_confidence: float | dict[str, float] = field(default_factory=lambda: {"TAXON": 0.3, "LOC": 0.3})
    tagger_name_dropout: float = 1.0   # share of mention words hidden in a second copy of each training sentence
    tagger_c1: float = 0.05
    tagger_c2: float = 0.05
    tagger_max_iterations: int = 100
    tagger_folds: int = 2   # each paper is tagged by a model trained on the other folds' papers
    # sections the tagger adds nothing in (people and institutions, not places or taxa)
    tagger_skip_sections: list[str] = field(default_factory=lambda: ["front", "acknowledgements"])

    def check(self) -> None:
        if self.regex_timeout_s <= 0:
            raise ValueError("regex_timeout_s must be > 0")
        self.tagger_params().check()

    def tagger_params(self):
        from .tagger import TaggerParams

        conf = dict(self.tagger_min_confidence) if isinstance(self.tagger_min_confidence, dict) else self.tagger_min_confidence
        return TaggerParams(list(self.tagger_types), conf, self.tagger_name_dropout,
                            self.tagger_c1, self.tagger_c2, self.tagger_max_iterations, self.tagger_folds,
                            list(self.tagger_skip_sections))

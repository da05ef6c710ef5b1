"""A learned entity tagger trained on the patterns' own mentions (weak supervision for entities).

The patterns and name lists find the names someone wrote a rule or a list for. Many names of
the same kind differ from those only in the name itself: a genus no list holds, a locality
after "the ... section", a stage of a regional scale. A tagger that learns from *how* the
patterns' mentions look (capitals, Latin endings, digits, hyphens) and what stands around them
("from the ... Formation", "in ...") can find such names. So the corpus's own pattern and
gazetteer mentions become BIO labels, a tagger learns them, and its mentions are used beside
the patterns': every pattern mention is kept, and a tagger mention is added only where it
overlaps none (the patterns win on span boundaries where both fire; ``union``).

The learner is a linear-chain CRF (CRFsuite through python-crfsuite) over word-shape and
context features, not a fine-tuned encoder: on two CPU cores a MiniLM token classifier took
about 15 minutes to train and tagged ~27 sentences/s; the CRF trains in well under a minute
on the sample corpus and tags thousands of sentences per second, so it fits in `make run`.
The features deliberately leave out list membership: the tagger must learn what a name looks
like, not which lists it is in, or it could only repeat the gazetteers.

A tagger tagging the sentences it was trained on gives back their training labels, so it
would add nothing to the corpus it learned from. So the papers are split into ``folds`` and
each paper is tagged by a model trained on the other folds' papers (cross-fitting; a corpus of
one paper cannot be, and is tagged by a model trained on itself).

Shape rules keep out what the tagger confuses most on the sample corpus: a mention starts
with a capital (the lower-case group names, "trilobites", are a closed class the patterns
list; the tagger's lower-case finds were mostly rock and body words: "turbidites",
"sclerites"); a name followed by a citation tail (a year, "et al.", "in Author", "and Author
in", initials: "Lindholm 1991", "Wrona, 1989", "Finney, S.C.", "Jiang, Z and") is an author,
not a place or a taxon; and a one-word place shaped like a genus ("Avicennia", "Redlichia",
"Elrathina", read as places in lists of genera; also a hyphenated pair of them) or ending
like an adjective ("Antarctic specimens", "South Korean usage") is none. ``tag_sentences`` also holds the tagger's mentions to the pattern file's stoplist and
exclusions (``keep``): "U.S." of "U.S. Geological Survey" and "California" of "California
State University" are no places whatever found them. Sections in ``skip_sections`` (front
matter and acknowledgements by default: names of people and institutions) get no tagger
mention.

A tagger mention must be of a type in ``types`` and confident: a token is in a mention of type
T when the CRF's marginal probability of T's labels (B-T plus I-T) at that token is at least
``min_confidence`` (one number, or one per type). This is not the single most likely labelling
(Viterbi): the tagger is trained on the patterns' mentions, so where it has learned that a name
*looks* like one the patterns would mark but the patterns' habits say O, the most likely
labelling is O while the type keeps a real share of the probability; a threshold below 0.5
reaches those names. Pure logic: no Prefect, no DVC.
"""
from __future__ import annotations

import hashlib
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from .errors import InputError
from .records import AnnotatedSentence, Mention

TOKEN = re.compile(r"\w+|[^\w\s]")
SOURCE = "tagger"
T = TypeVar("T")
CORPUS_MODEL = "model.crfsuite"  # in entities.tagger_dir: the model trained on every paper, for new papers


@dataclass
class TaggerParams:
    """The tagger's settings (``entities.tagger_*`` in params.yaml, same defaults)."""
    types: list[str] = field(default_factory=list)  # types the tagger may add ([]: every type)
    # a token's marginal probability of a type's labels needed to mark it (a number, or {type: number})
    min_confidence: float | dict[str, float] = 0.5
    name_dropout: float = 0.5     # share of mention words whose own word is hidden in a second copy
    c1: float = 0.05              # L1 weight
    c2: float = 0.05              # L2 weight
    max_iterations: int = 100     # L-BFGS iterations
    folds: int = 2                # papers are tagged by a model trained on the other folds' papers
    skip_sections: list[str] = field(default_factory=list)  # sections the tagger adds nothing in

    def check(self) -> None:
        values = self.min_confidence.values() if isinstance(self.min_confidence, dict) else [self.min_confidence]
        if not all(isinstance(v, (int, float)) and 0 < v < 1 for v in values):
            raise ValueError("entities.tagger_min_confidence must be in (0, 1), one number or one per type; set e.g. "
                             "0.5 or {TAXON: 0.3, LOC: 0.3}")
        if not 0 <= self.name_dropout <= 1:
            raise ValueError("entities.tagger_name_dropout must be in [0, 1]; set e.g. 0.5 (0: no second copy)")
        if self.c1 < 0 or self.c2 < 0:
            raise ValueError("entities.tagger_c1 and tagger_c2 must be >= 0; set e.g. 0.05")
        if self.max_iterations < 1:
            raise ValueError("entities.tagger_max_iterations must be >= 1; set e.g. 100")
        if self.folds < 2:
            raise ValueError("entities.tagger_folds must be >= 2 (a paper is never tagged by a model trained on "
                             "it); set e.g. 2")

    def threshold(self, typ: str) -> float:
        """The confidence a mention of ``typ`` needs (a type a mapping does not name: 0.5)."""
        if isinstance(self.min_confidence, dict):
            return float(self.min_confidence.get(typ, 0.5))
        return float(self.min_confidence)


def tokenize(text: str) -> list[tuple[int, int]]:
    """Word and punctuation tokens as character spans ("P. atavus" -> P . atavus)."""
    return [m.span() for m in TOKEN.finditer(text)]


def _shape(w: str) -> str:
    s = re.sub(r"[A-Z]", "X", w)
    s = re.sub(r"[a-z]", "x", s)
    s = re.sub(r"\d", "d", s)
    return re.sub(r"(.)\1{2,}", r"\1\1", s)  # "Xxxxxxx" -> "Xxx"


def _word_feats(w: str, pre: str) -> list[str]:
    low = w.lower()
    return [f"{pre}w={low}", f"{pre}sh={_shape(w)}", f"{pre}t={w[:1].isupper()}"]


def features(text: str, toks: Sequence[tuple[int, int]]) -> list[list[str]]:
    """Per token: the word, its shape, prefix and suffixes, case flags and the same for the two
    words either side. No gazetteer membership (see the module docstring)."""
    words = [text[s:e] for s, e in toks]
    out = []
    n = len(words)
    for i, w in enumerate(words):
        low = w.lower()
        f = ["b", f"w={low}", f"sh={_shape(w)}", f"p3={low[:3]}", f"s2={low[-2:]}", f"s3={low[-3:]}",
             f"s4={low[-4:]}", f"title={w[:1].isupper() and w[1:].islower()}", f"upper={w.isupper()}",
             f"digit={w.isdigit()}", f"len={min(len(w), 12)}"]
        if i == 0:
            f.append("BOS")
        if i == n - 1:
            f.append("EOS")
        # the character right before the token: a space, a bracket, nothing ("U.S.A.")
        prev_ch = text[toks[i][0] - 1] if toks[i][0] > 0 else "^"
        f.append(f"gap={prev_ch.isspace()}")
        for d in (-2, -1, 1, 2):
            j = i + d
            if 0 <= j < n:
                f += _word_feats(words[j], f"{d}:")
        if i > 0:
            f.append(f"-1|0={words[i - 1].lower()}|{low}")
        if i < n - 1:
            f.append(f"0|+1={low}|{words[i + 1].lower()}")
        out.append(f)
    return out


def bio(toks: Sequence[tuple[int, int]], mentions: Iterable[Mention]) -> list[str]:
    """BIO labels of the tokens: a token inside a mention is B- (its first) or I- of its type."""
    labels = ["O"] * len(toks)
    for m in mentions:
        first = True
        for i, (s, e) in enumerate(toks):
            if s >= m.start and e <= m.end:
                labels[i] = ("B-" if first else "I-") + m.type
                first = False
    return labels


def decode(text: str, toks: Sequence[tuple[int, int]], labels: Sequence[str],
           probs: Sequence[float] | None = None) -> list[tuple[Mention, float]]:
    """BIO labels -> mentions with their mean label probability. An I- token continues a span of
    its type (a lone I- starts one); trailing punctuation other than "." after a capital
    ("U.S.A.", "P.") is left out."""
    spans: list[list] = []  # start token, end token, type
    for i, lab in enumerate(labels):
        if lab == "O":
            continue
        kind, typ = lab.split("-", 1)
        if kind == "I" and spans and spans[-1][1] == i - 1 and spans[-1][2] == typ:
            spans[-1][1] = i
        else:
            spans.append([i, i, typ])
    out = []
    for a, b, typ in spans:
        while b > a and not text[toks[b][0]:toks[b][1]][0].isalnum() and text[toks[b][0]:toks[b][1]] != ".":
            b -= 1
        if not text[toks[a][0]].isalnum():
            continue
        s, e = toks[a][0], toks[b][1]
        p = sum(probs[a:b + 1]) / (b - a + 1) if probs is not None else 1.0
        out.append((Mention(s, e, text[s:e], typ, SOURCE), p))
    return out


# after a name: a year, "et al.", "in Author", "and Author, year", "and Author in", initials
# ("Finney, S.C.", "Jiang, Z and")
CITATION_TAIL = re.compile(r"\s*(?:,\s*|\(\s*)?(?:\d{4}[a-z]?\b|et al\b|in [A-Z]|and [A-Z][\w'’-]+(?:,? \(?\d{4}| in [A-Z])|"
                           r"[A-Z]\.?\s?(?:[A-Z]\.)?(?:,|\s+and\b))")
# a one-word place that looks like a genus ("Avicennia", "Redlichia", "Elrathina", "Fordilla")
# or a place adjective ("Antarctic specimens"); places no list holds, which the tagger is for,
# rarely end so ("Fengtan", "Wulingshan", "Bartyrbay"), and the lists hold those that do
GENUS_SHAPED = re.compile(r"[A-Z][^\W\d_]+(?:ia|ina|ella|illa|ites|aspis|ops|us)")
ADJECTIVE_SHAPED = re.compile(r"[A-Z][^\W\d_]+(?:tic|ean|ese|ish|ican|ern)")


def plausible(text: str, m: Mention) -> bool:
    """The shape rules (module docstring): a capital first, no citation tail after the name; a
    LOC of one word (or a hyphenated pair, "Eoredlichia-Wutingaspis Zone") that is genus-shaped,
    or one whose last word is adjective-shaped ("Antarctic", "South Korean"), is no place."""
    if m.type == "LOC":
        if " " not in m.text and all(GENUS_SHAPED.fullmatch(w) for w in m.text.split("-")):
            return False
        if ADJECTIVE_SHAPED.fullmatch(m.text.split()[-1]):
            return False
    return m.text[:1].isupper() and not CITATION_TAIL.match(text, m.end)


LEXICAL = ("w=", "p3=", "-1|0=", "0|+1=")  # the features that name the word itself


def _hash(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def training_sequences(sentences: Iterable[AnnotatedSentence], params: TaggerParams,
                       skip_sections: Iterable[str] = ()) -> list[tuple[list[list[str]], list[str]]]:
    """(features, labels) of every sentence with a mention, plus as many without one (a seeded,
    order-free pick), sections in ``skip_sections`` left out. With ``name_dropout`` > 0 each
    sentence with a mention comes a second time with that share of its mention words stripped of
    the features naming the word: the tagger must then also learn a name from its shape and its
    context, which is what carries over to names the patterns never saw."""
    skip = {s.lower() for s in skip_sections}
    pos, neg = [], []
    for a in sentences:
        toks = tokenize(a.text)
        if a.section.lower() in skip or not toks:
            continue
        (pos if a.mentions else neg).append((a, toks))
    neg.sort(key=lambda item: _hash(item[0].doc_id, item[0].sent_id))
    out = []
    for a, toks in pos + neg[:len(pos)]:
        feats, labels = features(a.text, toks), bio(toks, a.mentions)
        out.append((feats, labels))
        if a.mentions and params.name_dropout > 0:
            masked = [[x for x in f if not x.startswith(LEXICAL)]
                      if lab != "O" and _hash(a.doc_id, a.sent_id, i) % 1000 < params.name_dropout * 1000 else f
                      for i, (f, lab) in enumerate(zip(feats, labels))]
            out.append((masked, labels))
    return out


def assign_folds(doc_ids: Iterable[str], folds: int) -> dict[str, int]:
    """Each paper's fold: papers in a seeded, order-free order, dealt round-robin, so every
    fold gets papers (as long as there are as many papers as folds)."""
    ids = sorted(set(doc_ids), key=lambda d: (_hash("fold", d), d))
    k = max(1, min(folds, len(ids)))
    return {d: i % k for i, d in enumerate(ids)}


def fold_plan(papers: Sequence[T], doc_id: Callable[[T], str], folds: int) -> list[tuple[list[T], list[T]]]:
    """Per fold: (the papers it tags, the papers its model trains on: every other fold's). A corpus of
    one paper has one fold, trained on itself (nothing else to learn from)."""
    fold_of = assign_folds([doc_id(x) for x in papers], folds)
    k = max(fold_of.values(), default=0) + 1
    tagged = [[x for x in papers if fold_of[doc_id(x)] == f] for f in range(k)]
    return [(tagged[f], [x for x in papers if fold_of[doc_id(x)] != f] or tagged[f]) for f in range(k)]


def has_mentions(sequences: Sequence[tuple[list[list[str]], list[str]]]) -> bool:
    """Whether any training sequence holds a mention (a tagger can learn nothing from none)."""
    return any(any(lab != "O" for lab in labels) for _, labels in sequences)


def train(sequences: Sequence[tuple[list[list[str]], list[str]]], params: TaggerParams, out: str | Path) -> dict:
    """Train the CRF on ``sequences`` and write it to ``out``; returns training figures."""
    import pycrfsuite

    if not has_mentions(sequences):
        raise InputError("entity tagger: no pattern mention in the corpus to learn from; fix: check the entity "
                         "patterns or set entities.tagger: false")
    trainer = pycrfsuite.Trainer(verbose=False)
    for feats, labels in sequences:
        trainer.append(feats, labels)
    trainer.set_params({"c1": params.c1, "c2": params.c2, "max_iterations": params.max_iterations,
                        "feature.possible_transitions": True})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".tagger-", delete=False) as tmp:
        pass
    try:
        trainer.train(tmp.name)
        Path(tmp.name).replace(out)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    log = trainer.logparser.last_iteration or {}
    return {"sentences": len(sequences), "tokens": sum(len(x) for x, _ in sequences),
            "iterations": log.get("num", None), "loss": round(log["loss"], 2) if "loss" in log else None}


class EntityTagger:
    """A trained tagger: ``tag(text)`` -> its confident mentions of the allowed types."""

    def __init__(self, model: str | Path, params: TaggerParams | None = None, types: Iterable[str] = ()):
        import pycrfsuite

        model = Path(model)
        if not model.exists():
            raise InputError(f"{model}: entity tagger model not found; fix: run the entities stage with "
                             "entities.tagger: true (dvc repro entities)")
        self.params = params or TaggerParams()
        self.types = set(self.params.types or types)
        self._lock = threading.Lock()  # a CRFsuite tagger holds the sentence it tags: one at a time
        self._tagger = pycrfsuite.Tagger()
        try:
            self._tagger.open(str(model))
        except Exception as exc:  # a truncated or foreign file
            raise InputError(f"{model}: not a CRFsuite model ({exc}); fix: delete it and rerun the entities stage") from exc
        labels = set(self._tagger.labels())
        # per allowed type: its B- and I- label (as the model knows them) and the threshold
        self._typed = [(t, f"B-{t}" if f"B-{t}" in labels else None, f"I-{t}" if f"I-{t}" in labels else None,
                        self.params.threshold(t))
                       for t in sorted({lab[2:] for lab in labels if lab[:2] in ("B-", "I-")})
                       if not self.types or t in self.types]

    def tag(self, text: str) -> list[Mention]:
        toks = tokenize(text)
        if not toks:
            return []
        feats = features(text, toks)
        marg = self._tagger.marginal
        with self._lock:
            self._tagger.set(feats)
            # per token: (P(B-T), P(I-T)) of each allowed type
            probs = [[(marg(b, i) if b else 0.0, marg(c, i) if c else 0.0) for _, b, c, _ in self._typed]
                     for i in range(len(toks))]
        labels, conf = [], []
        for row in probs:
            best = max(((pb + pi, k) for k, (pb, pi) in enumerate(row) if pb + pi >= self._typed[k][3]), default=None)
            if best is None:
                labels.append("O")
                conf.append(0.0)
                continue
            p, k = best
            typ = self._typed[k][0]
            cont = labels and labels[-1] != "O" and labels[-1][2:] == typ and row[k][1] >= row[k][0]
            labels.append(("I-" if cont else "B-") + typ)
            conf.append(p)
        return [m for m, _ in decode(text, toks, labels, conf) if plausible(text, m)]


_TAGGERS: dict[tuple, EntityTagger] = {}
_TAGGERS_LOCK = threading.Lock()


def corpus_tagger(tagger_dir: str | Path, params: TaggerParams, types: Iterable[str] = ()) -> EntityTagger:
    """The tagger for new papers (``flows.extract``): the model the ``entities`` stage trained on
    every paper of the corpus (``CORPUS_MODEL`` in ``entities.tagger_dir``), loaded once per
    process and model file."""
    path = Path(tagger_dir) / CORPUS_MODEL
    if not path.exists():
        raise InputError(f"{path}: entities.tagger is on but the tagger trained on the corpus is missing; fix: run "
                         "`dvc repro entities` (or `python -m flows.entities`) with entities.tagger: true, or set "
                         "entities.tagger: false")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, repr(params), tuple(sorted(types)))
    with _TAGGERS_LOCK:
        if key not in _TAGGERS:
            _TAGGERS[key] = EntityTagger(path, params, types)
        return _TAGGERS[key]


def union(patterns: Sequence[Mention], tagged: Sequence[Mention]) -> list[Mention]:
    """Every pattern mention, plus each tagger mention that overlaps none (nor an earlier added one)."""
    kept = list(patterns)
    for t in tagged:
        if all(t.end <= p.start or p.end <= t.start for p in kept):
            kept.append(t)
    return sorted(kept, key=lambda m: (m.start, m.end))


def tag_sentences(tagger: EntityTagger, sentences: Iterable[AnnotatedSentence],
                  skip_sections: Iterable[str] = (), keep: Callable[[str, Mention], bool] | None = None) -> int:
    """Add the tagger's mentions to pattern-annotated sentences (in place; ``union``); sentences
    in ``skip_sections`` or the tagger's own ``params.skip_sections`` get none. ``keep(text,
    mention)``, when given, must let a tagger mention stand (the pattern file's stoplist and
    exclusions: ``EntityAnnotator.keeps``), so "U.S." of "U.S. Geological Survey" stays out
    whatever found it. Returns the number of mentions added."""
    skip = {s.lower() for s in [*skip_sections, *tagger.params.skip_sections]}
    added = 0
    for a in sentences:
        if a.section.lower() in skip:
            continue
        before = len(a.mentions)
        found = tagger.tag(a.text)
        if keep is not None:
            found = [m for m in found if keep(a.text, m)]
        a.mentions = union(a.mentions, found)
        added += len(a.mentions) - before
    return added

"""Sentence splitting (spaCy tokenizer + scientific abbreviations) and the table check."""
from __future__ import annotations

import bisect
import re
import threading
from typing import Any

from ..records import Sentence
from .paragraphs import Unit, Vocabulary, join_lines
from .params import MineParams
from .text import PageText

# --- sentences -----------------------------------------------------------------

# lower-cased words that, followed by ".", never end a sentence
ABBREVIATIONS = frozenset(
    """fig figs al sp spp ssp subsp cf aff ca fm fms mbr mbrs gp gps no nos pl pls nov gen n
    e.g i.e eg ie vs viz approx c cca ed eds vol vols pp p pers comm mt mts st co corp inc ltd
    dr prof univ dept inst tab tabs eq eqs ref refs resp var indet fam ord emend syn sect
    jr sr mr mrs ms lat long elev ft fig.s text-fig text-figs supp suppl suppl. ch chap sec""".split()
)
_OPEN = set("([{\"'“‘")
_CLOSE = set(")]}\"'”’")


def _is_initial(tok: str) -> bool:
    return len(tok) == 1 and tok.isupper() or bool(re.fullmatch(r"(?:[A-Z]\.){1,3}[A-Z]?", tok))


numpy: Any = None
SENT_START: Any = None
_nlp = None
_nlp_lock = threading.Lock()


def get_nlp():
    """spaCy blank English tokenizer + our sentence-boundary component (built once)."""
    global _nlp
    with _nlp_lock:
        if _nlp is None:
            import spacy
            from spacy.language import Language

            global numpy, SENT_START
            import numpy
            from spacy.attrs import SENT_START

            if not Language.has_factory("relmine_sentences"):
                Language.component("relmine_sentences")(_set_sentence_starts)
            nlp = spacy.blank("en")
            # the component reads token text only: skip the lexical attributes (shape,
            # like_num, stop words...) spaCy computes for every new word (~10% of mining)
            nlp.vocab.lex_attr_getters = {}
            nlp.add_pipe("relmine_sentences")
            _nlp = nlp
    return _nlp


def _set_sentence_starts(doc):
    """Sentence starts after . ? ! (and closing quotes/brackets) when the next word
    starts in upper case, with a digit or an opening bracket/quote - except after
    scientific abbreviations (Fig., et al., sp. nov., cf., Fm. ...) and initials."""
    n = len(doc)
    texts = [t.text for t in doc]
    starts = [False] * n
    i = 0
    while i < n:
        t = texts[i]
        end = None
        if t in (".", "?", "!") or (len(t) > 1 and t.endswith(".") and (t[-2].isalpha() or t[-2] in "%‰°")):
            end = i
        if end is not None:
            j = end + 1
            while j < n and texts[j] in _CLOSE:
                j += 1
            if j < n and _starts_sentence(texts, j):
                if not _abbrev_before(texts, end) or _et_al_ends(texts, end, j):
                    starts[j] = True
            i = j
            continue
        i += 1
    # one array write instead of a per-token setter (which rescans the doc each time)
    if n:
        arr = numpy.fromiter((1 if (k == 0 or st) else -1 for k, st in enumerate(starts)), dtype="int64", count=n)
        doc.from_array([SENT_START], arr.astype("uint64").reshape(n, 1))
    return doc


def _starts_sentence(texts: list[str], j: int) -> bool:
    t = texts[j]
    c = t[:1]
    if c.isupper() or c.isdigit():
        return True
    if t in _OPEN and j + 1 < len(texts):
        c2 = texts[j + 1][:1]
        return c2.isupper() or c2.isdigit()
    return False


def _et_al_ends(texts: list[str], end: int, j: int) -> bool:
    """'... Nicoll et al. The genus ...': "et al." ends the sentence when a capitalised
    word (not an initial, not "Fig.") follows; "et al. (2006)" and "et al., 2006" go on."""
    if texts[end] == ".":
        words = texts[max(end - 2, 0):end]
    else:
        words = texts[max(end - 1, 0):end] + [texts[end][:-1]]
    if [w.lower() for w in words] != ["et", "al"]:
        return False
    nxt = texts[j]
    return (len(nxt) > 1 and nxt[0].isupper() and nxt[1:].islower() and nxt.isalpha()
            and nxt.lower() not in ABBREVIATIONS and not (j + 1 < len(texts) and texts[j + 1] == "."))


def _abbrev_before(texts: list[str], end: int) -> bool:
    t = texts[end]
    if t == ".":
        if end == 0:
            return False
        word = texts[end - 1]
        if texts[end] != "." or word in (".", "?", "!"):
            return False
    elif t.endswith("."):
        word = t[:-1]
    else:
        return False  # ? or !
    w = word.lower()
    # "Gp." and "gps." abbreviate groups; "GPs." (an acronym's plural) ends a sentence
    acronym = sum(c.isupper() for c in word) >= 2
    if not acronym and (w in ABBREVIATIONS or w.rstrip(".") in ABBREVIATIONS):
        return True
    if _is_initial(word) or _is_initial(word.rstrip(".")):
        return True
    return False


def split_sentences(texts: list[str]) -> list[list[tuple[int, int]]]:
    """Sentence (start, end) character offsets for each text."""
    nlp = get_nlp()
    out = []
    for doc in nlp.pipe(texts, batch_size=256):
        spans = []
        if not len(doc):
            out.append(spans)
            continue
        for s in doc.sents:
            a = s.start_char
            b = s.end_char
            spans.append((a, b))
        out.append(spans)
    return out


_FUNCTION_WORDS = frozenset(
    """the of and in to a an is was were are be been by for with on at from as that this which or its
    their it these those than has have had not but into over between within during after before under
    can may also both each""".split()
)
_TOKEN_RE = re.compile(r"\S+")
_FUNCTION_WORD_RE = re.compile(r"(?<![^\s(])(?:%s)(?=[\s),;:.]|$)" % "|".join(sorted(_FUNCTION_WORDS)), re.I)
_NUMERIC_RE = re.compile(r"^[(\[]?[-+±<>~]?\d[\d.,:/%–-]*[)\]%]?[,;]?$")


def looks_tabular(text: str, on_table_page: bool = False) -> bool:
    """A "sentence" without sentence structure: table cells PDFium laid out as
    prose. Few function words (the, of, and, is ...) and many numbers; on a page
    that is mostly table rows, few function words suffice."""
    n = text.count(" ") + 1
    if n < 12:
        return False
    fw = len(_FUNCTION_WORD_RE.findall(text)) / n
    if fw >= (0.3 if on_table_page else 0.06):
        return False
    if on_table_page:
        return True
    toks = _TOKEN_RE.findall(text)
    return sum(bool(_NUMERIC_RE.match(t)) for t in toks) / len(toks) >= 0.3


def table_pages(pages: list[PageText]) -> set[int]:
    """Pages whose text is mostly in table rows of three or more cells."""
    out = set()
    for p in pages:
        chars = sum(len(ln.text) for ln in p.lines)
        if chars and sum(len(ln.text) for ln in p.lines if ln.cells >= 3) >= 0.4 * chars:
            out.add(p.number)
    return out


def units_to_sentences(units: list[Unit], doc_id: str, params: MineParams, vocab: Vocabulary,
                       tabular_pages: set[int] = frozenset()) -> list[Sentence]:
    joined = [join_lines(u.lines, vocab) for u in units]
    texts = [t for t, _ in joined]
    # headings, table rows and references are one "sentence" each
    splittable = [i for i, u in enumerate(units) if u.kind in ("body", "caption")]
    spans = dict(zip(splittable, split_sentences([texts[i] for i in splittable])))
    sentences: list[Sentence] = []
    for i, u in enumerate(units):
        text, starts = joined[i]
        offsets = [s for s, _ in starts]
        pieces = spans.get(i, [(0, len(text))])
        kind = {"reference": "body"}.get(u.kind, u.kind)
        for a, b in pieces:
            s = text[a:b].strip()
            if not s:
                continue
            if kind != "heading" and len(s) < params.min_sentence_chars:
                continue
            page = starts[max(bisect.bisect_right(offsets, a) - 1, 0)][1]
            k = kind
            if k == "body" and u.kind == "body" and looks_tabular(s, page in tabular_pages):
                k = "table"
            for chunk in _cut(s, params.max_sentence_chars):
                sentences.append(Sentence(doc_id, len(sentences), page, u.section, chunk, k))
    return sentences


def _cut(s: str, limit: int) -> list[str]:
    if len(s) <= limit:
        return [s]
    out = []
    while len(s) > limit:
        k = s.rfind(" ", 0, limit)
        k = k if k > limit // 2 else limit
        out.append(s[:k].strip())
        s = s[k:].strip()
    if s:
        out.append(s)
    return out

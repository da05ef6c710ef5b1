"""Paragraphs carried across columns, pages and figures; hyphenation from the paper's vocabulary."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from .layout import _FIGURE_RE, _INLINE_ABSTRACT_RE, _rows, body_font_size, ends_sentence, make_blocks
from .text import Line, PageText

# --- paragraphs ------------------------------------------------------------------


@dataclass
class Unit:
    """Text handed to the sentence splitter: one paragraph (possibly across
    columns and pages), a caption, a table row, a heading or a reference."""

    kind: str
    section: str
    lines: list[Line]


_WORD_RE = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_HYPH_END_RE = re.compile(r"([^\W\d_]+(?:-[^\W\d_]+)*)-$")
_FIRST_WORD_RE = re.compile(r"^([^\W\d_]+)")


_SUSPENDED = frozenset({"and", "or", "nor", "to", "und"})


class Vocabulary:
    """Words of the document, to decide how to rejoin a word hyphenated at a line end."""

    def __init__(self, texts: Iterable[str]):
        self.words: Counter[str] = Counter()
        for t in texts:
            # the first and last word of a line may be hyphenation fragments: skip them
            ws = _WORD_RE.findall(t)
            inner = ws[1:-1]
            # ... unless they are whole compounds ("Home-based" opening a line)
            if ws and "-" in ws[0]:
                inner.append(ws[0])
            if len(ws) > 1 and "-" in ws[-1] and not t.endswith("-"):
                inner.append(ws[-1])
            for w in inner:
                w = w.lower()
                self.words[w] += 1
                if "-" in w:  # "state-of-the-art" also vouches for "state-of"
                    parts = w.split("-")
                    for x, y in zip(parts, parts[1:]):
                        self.words[f"{x}-{y}"] += 1

    def join(self, left: str, right: str) -> str:
        """The text for 'left-' at a line end followed by 'right...' on the next line."""
        m = _HYPH_END_RE.search(left[-80:])
        r = _FIRST_WORD_RE.match(right)
        if not m or not r:
            # digits or symbols around the hyphen ("1994-" "-1998", "K-"): keep it
            return left + right
        head = m.group(1).rsplit("-", 1)[-1]
        tail = r.group(1)
        if tail.lower() in _SUSPENDED:
            return left + " " + right  # "first-" + "and second-line": a suspended hyphen
        if tail[0].isupper() or (head.isupper() and len(head) <= 4):
            return left + right  # "Cambrian-" + "Ordovician", "K-" + "Ar", "NE-" + "trending"
        joined = (head + tail).lower()
        hyphened = f"{head}-{tail}".lower()
        if self.words[hyphened] > self.words[joined]:
            return left + right
        return left[:-1] + right


def join_lines(lines: list[Line], vocab: Vocabulary) -> tuple[str, list[tuple[int, int]]]:
    """Join lines into one text; returns the text and (offset, page) at each line start."""
    text = ""
    starts: list[tuple[int, int]] = []
    for ln in lines:
        t = ln.text
        if not text:
            starts.append((0, ln.page))
            text = t
            continue
        if text.endswith("-") and len(text) > 1 and text[-2].isalpha() and t[:1].isalpha():
            joined = vocab.join(text, t)
            starts.append((len(joined) - len(t), ln.page))
            text = joined
        elif text.endswith(("—", "–", "/")):
            starts.append((len(text), ln.page))
            text += t
        else:
            starts.append((len(text) + 1, ln.page))
            text += " " + t
    return text, starts


def build_units(pages: list[PageText]) -> list[Unit]:
    """Blocks in reading order -> units; a paragraph cut by a column or page break
    (no sentence end, or the next block starts in lower case) continues, across
    captions and tables in between. A paragraph left unfinished before a heading
    that names no section (a table's header row, a figure's label) takes up the
    first body block after it that starts in lower case."""
    body_size = body_font_size(pages)
    units: list[Unit] = []
    section = "front"
    pending: Unit | None = None
    dangling: Unit | None = None  # unfinished paragraph closed by such a heading
    caption: Unit | None = None  # the caption whose explanation may go on below it
    small = 0.9 * body_size  # footnotes, captions, notes in figures
    in_refs = False

    def close() -> None:
        nonlocal pending
        if pending is not None:
            units.append(pending)
            pending = None

    for p in pages:
        for b in make_blocks(p.lines, body_size):
            if b.kind == "heading":
                if b.section:
                    section = b.section
                    in_refs = section == "references"
                    dangling = None
                elif pending is not None and not ends_sentence(pending.lines[-1].text):
                    dangling = pending
                close()
                units.append(Unit("heading", section, b.lines))
                continue
            if b.kind in ("caption", "table"):
                if b.kind == "table":
                    for row in _rows(b.lines):
                        units.append(Unit("table", section, row))
                else:
                    caption = Unit("caption", section, b.lines)
                    units.append(caption)
                continue
            # a figure's explanation in paragraphs under its caption, in the
            # caption's size or smaller: still the caption (under a table's
            # caption come its cells)
            first = b.lines[0]
            font = max(ln.font for ln in b.lines)
            if (caption is not None and _FIGURE_RE.match(caption.lines[0].text)
                    and first.page == caption.lines[-1].page and first.col == caption.lines[-1].col
                    and font < small and font <= max(ln.font for ln in caption.lines) + 0.3):
                caption.lines.extend(b.lines)
                continue
            caption = None
            # body; small print (footnotes, affiliations, notes in figures) and
            # margin sidebars stay out of the paragraph they may interrupt, unless
            # the paragraph runs on into them (a URL set in a smaller font)
            below = pending is not None and _right_below(pending.lines[-1], b.lines[0])
            if not (below and not ends_sentence(pending.lines[-1].text)) and (
                    b.lines[0].col == "S"
                    or (font < small and section not in ("references",))):
                units.append(Unit("body", section, b.lines))
                continue
            m = _INLINE_ABSTRACT_RE.match(b.lines[0].text)
            if m and section in ("front", "abstract", "keywords"):
                close()
                section = "abstract"
            if in_refs:
                close()
                units.extend(Unit("reference", section, ls) for ls in _reference_entries(b.lines))
                continue
            if pending is None and dangling is not None:
                if b.lines[0].text[:1].islower() and b.lines[0].page - dangling.lines[-1].page <= 1:
                    dangling.lines.extend(b.lines)
                    if ends_sentence(b.lines[-1].text):
                        dangling = None
                    continue
                dangling = None
            if pending is not None:
                prev = pending.lines[-1].text
                nxt = b.lines[0].text
                # a sentence left open runs on past a column or page break, or
                # over a change of font; not into a new paragraph in upper case
                # after a paragraph gap (the last item of a list)
                gap_after = (pending.lines[-1].page == b.lines[0].page and pending.lines[-1].col == b.lines[0].col
                             and not below and nxt[:1].isupper())
                if (not ends_sentence(prev) and not gap_after) or nxt[:1].islower():
                    pending.lines.extend(b.lines)
                    continue
                close()
            pending = Unit("body", section, list(b.lines))
    close()
    return units


def _right_below(p: Line, ln: Line) -> bool:
    """Is ln the next line under p in the same column (no paragraph gap)?"""
    gap = p.y0 - ln.y1
    return p.page == ln.page and p.col == ln.col and -0.5 * p.font < gap < 0.8 * min(p.font, ln.font)


_REF_START_RE = re.compile(r"^(?:\[\d+\]|\d{1,3}\.\s|[A-Z][^\s,.]+(?:[ -][A-Z][^\s,.]+)*,\s*(?:[A-Z]\.|[A-Z][a-z]+\s[A-Z]\.))")


def _reference_entries(lines: list[Line]) -> list[list[Line]]:
    """Split a reference-list block into entries: by hanging indent when the block
    has one, else by 'Author, X.' / '[n]' at a line start after a line ending an entry."""
    x_min = min(ln.x0 for ln in lines)
    indented = [ln.x0 > x_min + 4 for ln in lines]
    hanging = any(indented) and not all(indented[1:]) or False
    entries: list[list[Line]] = []
    for i, ln in enumerate(lines):
        if not entries:
            entries.append([ln])
            continue
        if hanging and sum(indented) >= len(lines) / 3:
            start = not indented[i]
        else:
            prev = entries[-1][-1].text
            start = bool(_REF_START_RE.match(ln.text)) and prev.rstrip().endswith((".", ")", "]")) or prev[-1:].isdigit()
        if start:
            entries.append([ln])
        else:
            entries[-1].append(ln)
    return entries

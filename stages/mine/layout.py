"""Page layout: headers/footers, line numbers, columns, sidebars, blocks and sections."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from .text import _SPACES_RE, Line, PageText

# --- layout --------------------------------------------------------------------

_NUM_RE = re.compile(r"^\(?\d{1,4}\)?$")
_PAGE_NUM_RE = re.compile(r"^(page\s*)?\d{1,4}(\s*(of|/)\s*\d{1,4})?$|^[ivxlc]{1,6}$", re.I)
_DIGITS_RE = re.compile(r"\d+")


def _drop_line_numbers(lines: list[Line]) -> list[Line]:
    """Margin line numbers: a column of >= 5 bare numbers at one x, left or right of
    the text; also cut from the start of lines PDFium glued them to."""
    nums = [ln for ln in lines if _NUM_RE.match(ln.text)]
    if len(nums) < 5:
        return lines
    by_x = Counter(round(ln.x0 / 6) for ln in nums)
    cols = [x for x, c in by_x.items() if c >= 5]
    if not cols:
        return lines
    text_x0 = sorted(ln.x0 for ln in lines if not _NUM_RE.match(ln.text))
    if not text_x0:
        return lines
    body_x0 = text_x0[len(text_x0) // 2]
    body_x1 = sorted(ln.x1 for ln in lines)[len(lines) // 2]
    margin_x = [x * 6 for x in cols]
    out = []
    for ln in lines:
        at_col = any(abs(ln.x0 - mx) <= 6 for mx in margin_x)
        if _NUM_RE.match(ln.text) and at_col and (ln.x1 <= body_x0 + 2 or ln.x0 >= body_x1 - 2):
            continue
        if at_col and ln.x0 < body_x0 - 4:
            m = _LEAD_NUM_RE.match(ln.text)
            if m:
                ln.text = ln.text[m.end():]
                if not ln.text:
                    continue
        out.append(ln)
    return out


_LEAD_NUM_RE = re.compile(r"^\d{1,4}\s+")


# page furniture that need not repeat to be known: a bare journal URL, a
# proceedings line with its page range, a short copyright line
_FURNITURE_RE = re.compile(
    r"^(?:(?:https?://|www\.)\S+|[\w-]+(?:\.[\w-]+)*\.(?:org|com|net|edu|gov|int|info|io)(?:/[\w./-]*)?"
    r"|proceedings of .{3,80},\s*pages?\s*\d+\s*[–-]\s*\d+"
    r"|(?:©|\(c\)|copyright\b).{0,50})$",
    re.I,
)


def _edge_key(ln: Line) -> str:
    return _DIGITS_RE.sub("#", ln.text.lower()).replace(" ", "")


def drop_headers_footers(pages: list[PageText], body_size: float | None = None) -> int:
    """Remove running headers/footers (edge lines whose text, digits aside, repeats
    on other pages) and page numbers; returns how many lines were dropped. The
    four lines nearest each edge are candidates, and the next two when in small
    print (a footer of licence lines over a copyright line)."""
    small = 0.9 * (body_size or body_font_size(pages))

    def nearest(lines: list[Line]) -> list[Line]:
        return lines[:4] + [ln for ln in lines[4:6] if ln.font < small]

    def edge_lines(p: PageText) -> list[Line]:
        if not p.lines:
            return []
        top = nearest(sorted(p.lines, key=lambda ln: -ln.y1))
        bottom = nearest(sorted(p.lines, key=lambda ln: ln.y0))
        band = 0.1 * p.height
        return [ln for ln in top if ln.y0 > p.height - band - 30] + [ln for ln in bottom if ln.y1 < band + 30]

    edges = {p.number: edge_lines(p) for p in pages}
    counts: Counter[str] = Counter()
    for lns in edges.values():
        counts.update({_edge_key(ln) for ln in lns})
    need = 2 if len(pages) <= 6 else 3
    dropped = 0
    for p in pages:
        bad = {
            id(ln) for ln in edges[p.number]
            if counts[_edge_key(ln)] >= need or _PAGE_NUM_RE.match(ln.text.strip()) or _FURNITURE_RE.match(ln.text)
        }
        if bad:
            dropped += len(bad)
            p.lines = [ln for ln in p.lines if id(ln) not in bad]
    return dropped


def _rows(lines: list[Line]) -> list[list[Line]]:
    """Group lines into rows (overlapping baselines), top to bottom, each row left to right."""
    rows: list[list[Line]] = []
    for ln in sorted(lines, key=lambda ln: -(ln.y0 + ln.y1)):
        yc = (ln.y0 + ln.y1) / 2
        if rows:
            r0 = rows[-1][0]
            if abs((r0.y0 + r0.y1) / 2 - yc) < 0.45 * min(r0.size, ln.size):
                rows[-1].append(ln)
                continue
        rows.append([ln])
    for r in rows:
        r.sort(key=lambda ln: ln.x0)
    return rows


def find_gutter(lines: list[Line]) -> float | None:
    """x of the gap between two columns, or None for a single-column page.

    The gutter is the x near the middle crossed by the fewest lines, with
    column-wide lines wholly on both sides; lines crossing it (titles,
    abstracts, wide captions and tables) may not outnumber the column lines.
    When none is found, a second look ignores short fragments (a figure's
    labels set over the gutter).
    """
    g = _find_gutter(lines, 0.0)
    if g is None and len(lines) >= 8:
        x_lo = min(ln.x0 for ln in lines)
        x_hi = max(ln.x1 for ln in lines)
        g = _find_gutter(lines, 0.2 * (x_hi - x_lo))
        if g is not None and not _justified_edges(lines, g):
            g = None
    return g


def _justified_edges(lines: list[Line], g: float) -> bool:
    """Do many lines end just left of x = g and many start just right of it (the
    inner edges of two justified columns)?"""
    ends = sum(1 for ln in lines if g - 20 <= ln.x1 <= g)
    starts = sum(1 for ln in lines if g <= ln.x0 <= g + 20)
    return ends >= 8 and starts >= 8


def _find_gutter(lines: list[Line], min_width: float) -> float | None:
    if len(lines) < 8:
        return None
    x_lo = min(ln.x0 for ln in lines)
    x_hi = max(ln.x1 for ln in lines)
    tw = x_hi - x_lo
    if tw < 200:
        return None
    lo, hi = int(x_lo + 0.3 * tw), int(x_lo + 0.7 * tw)
    n = hi - lo + 1
    diff = [0] * (n + 1)
    for ln in lines:
        if ln.width < min_width:
            continue
        a = max(int(ln.x0) + 1, lo)
        b = min(int(ln.x1), hi)
        if a <= b:
            diff[a - lo] += 1
            diff[b - lo + 1] -= 1
    cross, run = [], 0
    for d in diff[:n]:
        run += d
        cross.append(run)
    best = min(cross)
    # middle of the longest run of minimal crossing
    best_len, best_mid, i = 0, None, 0
    while i < n:
        if cross[i] == best:
            j = i
            while j + 1 < n and cross[j + 1] == best:
                j += 1
            if j - i + 1 > best_len:
                best_len, best_mid = j - i + 1, lo + (i + j) / 2
            i = j + 1
        else:
            i += 1
    if best_mid is None or best_len < 3:
        return None
    g = best_mid
    if best_len < 4:
        # a narrow gap (a first page's wider licence box reaching into it) is a
        # gutter only between justified columns: many lines end just left of it
        # and many start just right of it
        if not _justified_edges(lines, g):
            return None
    wide = 0.25 * tw
    left = sum(1 for ln in lines if ln.x1 <= g and ln.width >= wide)
    right = sum(1 for ln in lines if ln.x0 >= g and ln.width >= wide)
    crossing_wide = sum(1 for ln in lines if ln.x0 < g < ln.x1 and ln.width >= wide)
    if left >= 3 and right >= 3 and left + right >= 0.5 * crossing_wide:
        return g
    return None


def _split_sidebar(lines: list[Line]) -> tuple[list[Line], list[Line]]:
    """(main text, sidebar): a sidebar is a stack of >= 4 lines set wholly left of
    the left edge of every wide line (a journal's margin column: licence, dates,
    editor), at least 10 pt away from it."""
    if len(lines) < 12:
        return lines, []
    x_lo = min(ln.x0 for ln in lines)
    x_hi = max(ln.x1 for ln in lines)
    wide = [ln.x0 for ln in lines if ln.width >= 0.4 * (x_hi - x_lo)]
    if len(wide) < 5:
        return lines, []
    body_x0 = min(wide)
    gap = 10.0
    side = [ln for ln in lines if ln.x1 < body_x0 - gap]
    if len(side) < 4 or sum(len(ln.text) for ln in side) > 0.3 * sum(len(ln.text) for ln in lines):
        return lines, []
    ids = {id(ln) for ln in side}
    for ln in side:
        ln.col = "S"
    # a bare journal URL or copyright line in the margin is page furniture
    return [ln for ln in lines if id(ln) not in ids], [ln for ln in side if not _FURNITURE_RE.match(ln.text)]


def _join_drop_caps(lines: list[Line]) -> list[Line]:
    """A drop capital (one big letter beside the first lines of a paragraph) goes
    back in front of the line it starts: "F" + "unctional differentiation ..."."""
    caps = [ln for ln in lines if len(ln.text) == 1 and ln.text.isupper() and ln.size > 12]
    if not caps:
        return lines
    out = set()
    for cap in caps:
        best = None
        for ln in lines:
            if (ln is not cap and ln.text[:1].islower() and 0 <= ln.x0 - cap.x1 < 8
                    and cap.y0 <= ln.y0 and ln.y1 <= cap.y1 + 2 and ln.font < 0.6 * cap.size
                    and (best is None or ln.y1 > best.y1)):
                best = ln
        if best is not None:
            best.text = cap.text + best.text
            best.x0 = cap.x0
            out.add(id(cap))
    return [ln for ln in lines if id(ln) not in out]


def _side_captions(lines: list[Line]) -> None:
    """A wide caption (or other text over the gutter) beside a narrowed column,
    as when a figure spans one column and part of the other: each run of such
    lines (same left edge, line after line) that has text of one column only
    beside it, on its other side, reads with the other column."""
    wide = sorted((ln for ln in lines if ln.col == "F"), key=lambda ln: -ln.y1)
    if not wide:
        return
    runs: list[list[Line]] = []
    for ln in wide:
        for run in runs:
            last = run[-1]
            if abs(last.x0 - ln.x0) < 4 and -0.5 * ln.size < last.y0 - ln.y1 < 1.5 * ln.size:
                run.append(ln)
                break
        else:
            runs.append([ln])
    cols = [ln for ln in lines if ln.col in ("L", "R")]
    for run in runs:
        sides = set()
        for ln in run:
            for o in cols:
                if min(ln.y1, o.y1) - max(ln.y0, o.y0) > 0.5 * min(ln.size, o.size):
                    sides.add("R" if o.x0 >= ln.x1 else "L" if o.x1 <= ln.x0 else "X")
        if sides == {"R"}:
            new = "L"
        elif sides == {"L"}:
            new = "R"
        else:
            continue
        for ln in run:
            ln.col = new
        # the run's short last line ("indicated by the spike symbol.") does not
        # reach over the gutter but belongs with it
        last = run[-1]
        for ln in lines:
            if (ln.col != new and abs(ln.x0 - last.x0) < 4 and -0.5 * ln.size < last.y0 - ln.y1 < 1.5 * ln.size
                    and ln.width < last.width):
                ln.col = new
                break


def order_page(lines: list[Line]) -> list[Line]:
    """Reading order: bands of full-width lines in place; inside a band the left
    column then the right one; a margin sidebar after the page's text. Marks table
    rows (several fragments on one row of one column)."""
    lines, side = _split_sidebar(_join_drop_caps(lines))
    g = find_gutter(lines)
    if g is None:
        for ln in lines:
            ln.col = "F"
    else:
        for ln in lines:
            ln.col = "L" if ln.x1 <= g + 1 else "R" if ln.x0 >= g - 1 else "F"
        _side_captions(lines)
    out: list[Line] = []
    left: list[Line] = []
    right: list[Line] = []
    tw = (max(ln.x1 for ln in lines) - min(ln.x0 for ln in lines)) if lines else 0.0
    col_w = tw / 2 if g is not None else tw

    def flush() -> None:
        for part in (left, right):
            for row in _rows(part):
                _mark_table(row, col_w)
                out.extend(row)
            part.clear()

    for row in _rows(lines):
        full = [ln for ln in row if ln.col == "F"]
        if full:
            flush()
            if len(row) > 1:  # a row crossing the gutter with cells on both sides: a table
                for ln in row:
                    ln.col = "F"
            _mark_table(row, tw)
            out.extend(row)
        else:
            for ln in row:
                (left if ln.col == "L" else right).append(ln)
    flush()
    out.extend(sorted(side, key=lambda ln: -ln.y1))
    return out


def _mark_table(row: list[Line], width: float = 0.0) -> None:
    """Several fragments on a row are table cells, unless one of them spans most
    of the column (a line of prose beside a margin number or a stray mark)."""
    if len(row) >= 2 and not (width and any(ln.width > 0.6 * width for ln in row)):
        for ln in row:
            ln.table = True
            ln.cells = len(row)


# --- blocks, sections --------------------------------------------------------

_SECTIONS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(rf"(?:{pat})$", re.I))
    for name, pat in [
        ("abstract", r"abstract|summary|synopsis"),
        ("keywords", r"key ?words?|index terms"),
        ("introduction", r"introduction|background|introduction and background"),
        ("geological setting", r"(?:regional |local )?geolog\w*(?: setting| background| framework| context| overview)?"
                               r"|(?:geographic\w*|geological|stratigraphic\w*) (?:setting|location|framework|position)"
                               r"|location and geolog\w+.*|study (?:area|site|sections?)|localit(?:y|ies)"
                               r"|geography and .*|stratigraphy(?: and .*)?"),
        ("methods", r"(?:materials?|data|samples?)(?: and| &) (?:methods?|methodology)|methods?|methodology"
                    r"|materials?|data|experimental(?: design| procedures?| setup)?|analytical methods"),
        ("systematic palaeontology", r"systematic pal(?:a)?eontology|systematics|taxonomy|descriptions?"),
        ("results", r"results?(?: and .*)?|findings"),
        ("discussion", r"discussions?(?: and .*)?"),
        ("conclusions", r"conclusions?|concluding remarks|summary and conclusions?"),
        ("acknowledgements", r"acknowledge?ments?|funding|author contributions?|competing interests"
                             r"|data availability(?: statement)?|conflicts? of interest"),
        ("references", r"references?(?: cited)?|literature cited|bibliography|works cited|cited literature"),
        ("appendix", r"appendix.*|appendices|supplementary (?:material|information|data).*|supporting information"),
    ]
]
_HEADING_NUM_RE = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[IVX]+\.|[A-H]\.)\s+")
_INLINE_ABSTRACT_RE = re.compile(r"^(?:abstract|summary)\s*[.:—–-]\s*|^ABSTRACT\s+", re.I)
_CAPTION_RE = re.compile(
    r"^(?i:fig(?:ure)?s?\.?|table|plate|text-fig(?:ure)?\.?|supplementary (?:figure|table))\s*"
    r"(?:[A-Z]?\d+[A-Za-z]?|[IVX]+)(?:\s*[.:|—]|\s+[A-Z(])"
)
_FIGURE_RE = re.compile(r"^(?i:fig|plate|text-fig)")
_TERMINAL_RE = re.compile(r"[.?!][\"'”’)\]]{0,3}$")


def ends_sentence(text: str) -> bool:
    return bool(_TERMINAL_RE.search(text[-5:]))


def section_of(heading: str) -> str | None:
    """Canonical section name for a heading's text, or None."""
    t = _HEADING_NUM_RE.sub("", heading.strip()).strip(" .:")
    t = _SPACES_RE.sub(" ", t)
    if not t or len(t) > 60:
        return None
    for name, pat in _SECTIONS:
        if pat.match(t):
            return name
    return None


@dataclass
class Block:
    lines: list[Line]
    kind: str = "body"  # body | heading | caption | table
    section: str | None = None  # set on headings that name a section

    @property
    def text(self) -> str:
        return " ".join(ln.text for ln in self.lines)


def make_blocks(lines: list[Line], body_size: float) -> list[Block]:
    """Consecutive lines of one column, close together and of one size, form a block."""
    blocks: list[Block] = []
    cur: list[Line] = []
    tail_added = False
    for ln in lines:
        if cur:
            p = cur[-1]
            gap = p.y0 - ln.y1
            same = (
                ln.page == p.page
                and ln.col == p.col
                and ln.table == p.table
                and -0.6 * min(ln.size, p.size) < gap < 0.9 * min(ln.size, p.size) + 1
                and abs(ln.font - p.font) < 1.0
                and not (_CAPTION_RE.match(ln.text) and (ends_sentence(p.text) or p.width < 0.5 * ln.width))
                and section_of(ln.text) is None
                and section_of(p.text) is None
                and not (p.bold and not ln.bold and len(p.text) < 60)
                and not (len(cur) == 1 and _run_in_heading(p, ln))
            )
            if ln.table and p.table and ln.page == p.page and ln.col == p.col and 0 <= gap < 2.5 * ln.size:
                same = True  # table rows stay together across wider row spacing
            if tail_added:
                same = False
            tail_added = False
            if (not same and ln.col != p.col and p.col == "F" and _CAPTION_RE.match(cur[0].text)
                    and ln.page == p.page and abs(ln.x0 - p.x0) < 4 and 0 <= gap < 0.9 * p.size + 1
                    and abs(ln.font - p.font) < 0.5 and ln.width < 0.5 * p.width and not ends_sentence(p.text)):
                same = tail_added = True  # a wide caption's short last line, which fits in one column
            if not same:
                blocks.append(Block(cur))
                cur = []
        cur.append(ln)
    if cur:
        blocks.append(Block(cur))
    for b in blocks:
        _classify(b, body_size)
    for b, nxt in zip(blocks, blocks[1:]):
        if b.kind == "body" and len(b.lines) == 1 and _run_in_heading(b.lines[0], nxt.lines[0]):
            b.kind = "heading"
            b.section = section_of(b.text)
    return blocks


def _run_in_heading(p: Line, ln: Line) -> bool:
    """Is p a heading line set in its own font (bold or italic without "bold" in
    the font's name) over the first line of a paragraph? A short line with no
    end punctuation, in a different font, starting in upper case, followed by a
    line in upper case that is wider."""
    head = _HEADING_NUM_RE.sub("", p.text)
    return (
        bool(p.fontname) and bool(ln.fontname) and p.fontname != ln.fontname
        and len(p.text) < 60 and head[:1].isupper() and ln.text[:1].isupper()
        and not p.text.endswith((".", ",", ";", ":")) and p.width < 0.8 * ln.width
        and p.page == ln.page and p.col == ln.col and any(c.isalpha() for c in p.text)
    )


def _classify(b: Block, body_size: float) -> None:
    first = b.lines[0].text
    text = b.text
    if _CAPTION_RE.match(first):
        b.kind = "caption"
        return
    if sum(ln.table for ln in b.lines) > len(b.lines) / 2:
        b.kind = "table"
        return
    sec = section_of(text) if len(b.lines) <= 2 else None
    if sec is not None and not ends_sentence(text) or (sec is not None and len(text) < 40):
        b.kind, b.section = "heading", sec
        return
    size = max(ln.font for ln in b.lines)
    looks_heading = (
        len(b.lines) <= 2
        and len(text) < 90
        and not text.endswith((".", ",", ";"))
        and any(c.isalpha() for c in text)
        and (all(ln.bold for ln in b.lines) or size > body_size + 1.2)
        and not text[:1].islower()
    )
    if looks_heading:
        b.kind = "heading"


_REFS_HINT_RE = re.compile(r"(?i)ref|literat|bibliog|cited")


def body_font_size(pages: list[PageText]) -> float:
    """The type size carrying most text before the reference list (which some
    journals set smaller, and which can outweigh a short paper's body)."""
    c: Counter[float] = Counter()
    before: Counter[float] | None = None
    for p in pages:
        for ln in p.lines:
            if (before is None and len(ln.text) < 40 and _REFS_HINT_RE.search(ln.text)
                    and section_of(ln.text) == "references"):
                before = c.copy()
            c[round(ln.font * 2) / 2] += len(ln.text)
    if before is not None and sum(before.values()) >= 2000:
        c = before
    return c.most_common(1)[0][0] if c else 10.0

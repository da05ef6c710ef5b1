"""Text of a PDF page through PDFium: normalisation, lines with their boxes, accents."""
from __future__ import annotations

import ctypes
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Iterable

# --- text normalisation --------------------------------------------------------

# chars whose NFKC form starts with a space (spacing accents: ´ ¨ ¸ ...) would
# become " ́"; keep them as they are
_NFKC_PROTECT = {
    c: c for c in map(chr, range(0xA0, 0x3000))
    if len(unicodedata.normalize("NFKC", c)) > 1 and unicodedata.normalize("NFKC", c)[0] == " "
}
_CHAR_FIXES = str.maketrans({
    "\u00ad": "",  # soft hyphen inside a line
    "\ufffe": "-",  # PDFium's mark for a hyphen it joined across lines
    "\x02": "-",
    "\t": " ",
    "\u00a0": " ",
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\ufb01": "fi", "\ufb02": "fl", "\ufb00": "ff", "\ufb03": "ffi", "\ufb04": "ffl",
})
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufeff\ufffd\ud800-\udfff]")
_SPACES_RE = re.compile(r"\s+")


def normalize_text(s: str) -> str:
    """NFKC (ligatures, full-width letters, compatibility chars), no control chars,
    single spaces."""
    s = s.translate(_CHAR_FIXES)
    if not s.isascii():
        if any(c in _NFKC_PROTECT for c in s):
            parts = re.split(f"([{''.join(_NFKC_PROTECT)}])", s)
            s = "".join(p if p in _NFKC_PROTECT else unicodedata.normalize("NFKC", p) for p in parts)
        else:
            s = unicodedata.normalize("NFKC", s)
    s = _CONTROL_RE.sub("", s)
    return _SPACES_RE.sub(" ", s).strip()


# --- geometry ----------------------------------------------------------------


@dataclass(slots=True)
class Line:
    """A visual line fragment; PDF coordinates (y grows upwards)."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    page: int  # 1-based
    bold: bool = False
    col: str = "F"  # column after layout: L, R or F (full width / single column)
    table: bool = False  # one of several fragments on the same row in one column
    em: float = 0.0  # height of the font's box (ascent + descent); 0: unknown, use the ink height
    fontname: str = ""  # font of the line's first char ("" for OCR)
    cells: int = 1  # fragments on its table row

    @property
    def size(self) -> float:
        return self.y1 - self.y0

    @property
    def font(self) -> float:
        """Type size for comparing lines: the font's box height, which (unlike the
        ink box) does not shrink on a line without ascenders or descenders."""
        return self.em or self.y1 - self.y0

    @property
    def width(self) -> float:
        return self.x1 - self.x0


@dataclass
class PageText:
    number: int
    width: float
    height: float
    lines: list[Line]
    source: str = "text"  # text | ocr
    skipped: str | None = None  # reason when the page gave no text


_pdfium_lock = threading.Lock()  # PDFium is not thread-safe: one thread in it at a time


def _load_pdfium():
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    return pdfium, raw


class _PdfiumCalls:
    """Pre-bound raw calls and reusable out-params (avoid wrapper overhead per line)."""

    def __init__(self):
        _, raw = _load_pdfium()
        self.raw = raw
        self.l, self.t, self.r, self.b = (ctypes.c_double() for _ in range(4))
        self.refs = tuple(ctypes.byref(v) for v in (self.l, self.t, self.r, self.b))
        self.box = raw.FS_RECTF()
        self.box_ref = ctypes.byref(self.box)
        self._loose = raw.FPDFText_GetLooseCharBox
        self.last_em = -1.0
        self._unicode = raw.FPDFText_GetUnicode
        self.fontbuf = ctypes.create_string_buffer(128)
        self.flags = ctypes.c_int()
        self.turned = False  # the last page read was turned (sideways text)

    def rect(self, tp, i: int) -> tuple[float, float, float, float]:
        self.raw.FPDFText_GetRect(tp, i, *self.refs)  # left, top, right, bottom
        return self.l.value, self.b.value, self.r.value, self.t.value

    def charbox(self, tp, i: int) -> tuple[float, float, float, float]:
        l, t, r, b = self.refs
        self.raw.FPDFText_GetCharBox(tp, i, l, r, b, t)  # left, right, bottom, top
        return self.l.value, self.b.value, self.r.value, self.t.value

    def em(self, tp, i: int) -> float:
        """Height of char i's loose box (the font's ascent to descent at its size)."""
        if not self._loose(tp, i, self.box_ref):
            return 0.0
        return self.box.top - self.box.bottom

    def line_em(self, tp, first: int, last: int, ink: float) -> float:
        """Font box height of a line: the median over three letters or digits spread
        along it (brackets, symbols, superscripts and small caps may come from other
        fonts or sizes); 0 when the font's metrics look broken (far from the ink height)."""
        n = last - first
        hs = []
        unicode, loose, box, ref = self._unicode, self._loose, self.box, self.box_ref
        for k in (2, 1, 3):
            i = first + n * k // 4
            for j in range(i, min(i + 4, last + 1)):  # the next letter or digit
                code = unicode(tp, j)
                if 0 < code < 0xD800 and chr(code).isalnum():
                    if loose(tp, j, ref) and box.top > box.bottom:
                        hs.append(box.top - box.bottom)
                    break
            if k == 2 and hs and abs(hs[0] - self.last_em) < 0.05:
                break  # the middle char agrees with the line before: same font
        if not hs:
            return 0.0
        hs.sort()
        h = hs[len(hs) // 2]
        self.last_em = h
        return h if 0.6 * ink <= h <= 3.0 * ink + 2 else 0.0

    def fontname(self, tp, i: int) -> str:
        n = self.raw.FPDFText_GetFontInfo(tp, i, self.fontbuf, 128, ctypes.byref(self.flags))
        return self.fontbuf.raw[: max(n - 1, 0)].decode("latin-1", "replace")

    def bold(self, tp, i: int, name: str | None = None) -> bool:
        if self.raw.FPDFText_GetFontWeight(tp, i) >= 600:
            return True
        name = (self.fontname(tp, i) if name is None else name).lower()
        return "bold" in name or "black" in name or "heavy" in name or name.endswith((",b", "-b", "-bd"))


def _page_text(tp, raw) -> str:
    n = raw.FPDFText_CountChars(tp)
    if n <= 0:
        return ""
    buf = (ctypes.c_ushort * (n + 1))()
    m = raw.FPDFText_GetText(tp, 0, n, buf)
    return bytes(buf)[: 2 * max(m - 1, 0)].decode("utf-16-le", "replace")


# spacing accents some PDFs set as separate glyphs over a letter (TeX's \H{o}, \"a ...):
# the combining mark each stands for
_SPACING_ACCENTS = {
    "\u02dd": "\u030b", "\u00b4": "\u0301", "`": "\u0300", "\u00a8": "\u0308", "\u02c6": "\u0302",
    "\u02dc": "\u0303", "\u00b8": "\u0327", "\u02d8": "\u0306", "\u02c7": "\u030c", "\u02da": "\u030a",
    "\u02d9": "\u0307", "\u00af": "\u0304", "\u02db": "\u0328",
}
_ACCENT_RE = re.compile(f"[{''.join(_SPACING_ACCENTS)}]")


def _attach_accents(tp, raw, text: str, calls: "_PdfiumCalls") -> str:
    """Compose each spacing accent set over a letter with that letter ("Erdo" + "˝"
    above its "o" -> "Erdő"); the accent's place in the text becomes a control
    char (dropped by normalize_text), so text offsets stay valid. An accent over
    no letter (a prime after digits) stays."""
    chars = list(text)
    n = raw.FPDFText_CountChars(tp)
    for m in _ACCENT_RE.finditer(text):
        ci = raw.FPDFText_GetCharIndexFromTextIndex(tp, m.start())
        if ci < 0:
            continue
        ax0, ay0, ax1, ay1 = calls.charbox(tp, ci)
        xc = (ax0 + ax1) / 2
        best, best_dy = -1, 1e9
        for cj in range(max(ci - 150, 0), min(ci + 150, n)):
            if cj == ci:
                continue
            code = raw.FPDFText_GetUnicode(tp, cj)
            if not (0 < code < 0xD800 and chr(code).isalpha()):
                continue
            x0, y0, x1, y1 = calls.charbox(tp, cj)
            h = y1 - y0
            # over the letter: centred within it, its bottom near the letter's top
            # and its top well above it (a prime beside a capital is not)
            if not (x0 - 0.5 <= xc <= x1 + 0.5) or not (y1 - 0.15 * h <= ay0 <= y1 + 0.6 * h) or ay1 < y1 + 0.2 * h:
                continue
            dy = abs(ay0 - y1)
            if dy < best_dy:
                best, best_dy = cj, dy
        if best < 0:
            continue
        tj = raw.FPDFText_GetTextIndexFromCharIndex(tp, best)
        if not 0 <= tj < len(chars):
            continue
        composed = unicodedata.normalize("NFC", chars[tj] + _SPACING_ACCENTS[m.group()])
        if len(composed) == 1:
            chars[tj] = composed
            chars[m.start()] = "\x01"  # a control char: normalize_text drops it
    return "".join(chars)


_LINE_SPLIT_RE = re.compile(r"\r\n|\r|\n|(?<=\ufffe)")


def _pieces(text: str) -> Iterable[tuple[int, str]]:
    """(text offset, piece) for PDFium's lines, also split after its hyphen joins."""
    pos = 0
    for m in _LINE_SPLIT_RE.finditer(text):
        if m.start() > pos or m.end() > m.start():
            yield pos, text[pos : m.start()]
            pos = m.end()
    if pos < len(text):
        yield pos, text[pos:]


def extract_page_lines(page, tp, number: int, calls: _PdfiumCalls) -> list[Line]:
    """Line fragments of one page from PDFium's text layer."""
    raw = calls.raw
    text = _page_text(tp, raw)
    if _ACCENT_RE.search(text):
        text = _attach_accents(tp, raw, text, calls)
    width, height = page.get_size()
    pieces = []
    flow_x = flow_y = 0.0  # how far text runs move along x and along y
    for off, piece in _pieces(text):
        stripped = piece.strip()
        if not stripped:
            continue
        a = off + len(piece) - len(piece.lstrip())
        b = a + len(stripped) - 1
        cs = raw.FPDFText_GetCharIndexFromTextIndex(tp, a)
        ce = raw.FPDFText_GetCharIndexFromTextIndex(tp, b)
        if cs < 0 or ce < cs:
            continue
        k = raw.FPDFText_CountRects(tp, cs, ce - cs + 1)
        if k <= 0:
            continue
        rects = [calls.rect(tp, j) for j in range(k)]
        dx = (rects[-1][0] + rects[-1][2] - rects[0][0] - rects[0][2]) / 2
        dy = (rects[-1][1] + rects[-1][3] - rects[0][1] - rects[0][3]) / 2
        flow_x += abs(dx)
        flow_y += dy
        pieces.append((stripped, a, b, cs, ce, rects, dx, dy))
    # text set sideways (a landscape table or caption, /Rotate pages): turn the
    # page so that text runs left to right
    turn = 0
    if abs(flow_y) > 2 * flow_x:
        turn = 1 if flow_y > 0 else -1
    calls.turned = bool(turn)
    lines: list[Line] = []
    for stripped, a, b, cs, ce, rects, dx, dy in pieces:
        if turn:
            rects = [_turn(r, turn, width, height) for r in rects]
        elif abs(dy) > 20 and abs(dy) > 2 * abs(dx):
            continue  # vertical text on an upright page: margin stamps, axis labels
        h = max(r[3] - r[1] for r in rects)
        # PDFium glued visual lines (two columns, a margin line number, table
        # cells, another baseline): cut where the next text run jumps
        groups = [[rects[0]]]
        lo, hi = rects[0][1], rects[0][3]  # vertical extent of the current group
        for p, q in zip(rects, rects[1:]):
            if _breaks(p, q, h, lo, hi):
                groups.append([q])
                lo, hi = q[1], q[3]
            else:
                groups[-1].append(q)
                lo, hi = min(lo, q[1]), max(hi, q[3])
        font = calls.fontname(tp, cs)
        bold = len(stripped) < 120 and calls.bold(tp, cs, font) and calls.bold(tp, ce)
        if len(groups) == 1:
            lines.append(_line(stripped, rects, number, bold, 0.0 if turn else calls.line_em(tp, cs, ce, h), font))
            continue
        cuts = None if turn else _cut_indices(tp, raw, groups, cs, ce)
        if cuts is None:
            if turn:
                lines.append(_line(stripped, rects, number, bold))
            else:
                lines.extend(_split_by_chars(tp, text, a, b, cs, ce, h, number, bold, calls))
            continue
        bounds = [a, *cuts, b + 1]
        for g, (s0, s1) in zip(groups, zip(bounds, bounds[1:])):
            t = text[s0:s1].strip()
            if t:
                c0 = raw.FPDFText_GetCharIndexFromTextIndex(tp, s0)
                c1 = raw.FPDFText_GetCharIndexFromTextIndex(tp, s1 - 1)
                em = calls.line_em(tp, c0, c1, max(r[3] - r[1] for r in g)) if 0 <= c0 <= c1 else 0.0
                lines.append(_line(t, g, number, bold, em, calls.fontname(tp, c0) if c0 >= 0 else ""))
    return lines


def _turn(r: tuple[float, float, float, float], turn: int, width: float, height: float) -> tuple[float, float, float, float]:
    """Rotate a box so that sideways text reads left to right (turn=1: text ran up the page)."""
    x0, y0, x1, y1 = r
    if turn > 0:
        return (y0, width - x1, y1, width - x0)
    return (height - y1, x0, height - y0, x1)


def _line(text: str, rects: list[tuple[float, float, float, float]], number: int, bold: bool,
          em: float = 0.0, fontname: str = "") -> Line:
    return Line(
        text,
        min(r[0] for r in rects), min(r[1] for r in rects),
        max(r[2] for r in rects), max(r[3] for r in rects),
        number, bold, em=em, fontname=fontname,
    )


def _cut_indices(tp, raw, groups, cs: int, ce: int) -> list[int] | None:
    """Text index where each group after the first starts (the char at the left
    edge of its first rect), or None when that cannot be found reliably."""
    cuts: list[int] = []
    last = cs
    for g in groups[1:]:
        r = g[0]
        w = min(1.0, (r[2] - r[0]) / 2)
        ci = raw.FPDFText_GetCharIndexAtPos(tp, r[0] + w, (r[1] + r[3]) / 2, 0.5, 0.5)
        if ci <= last or ci > ce:
            return None
        ti = raw.FPDFText_GetTextIndexFromCharIndex(tp, ci)
        if ti < 0 or (cuts and ti <= cuts[-1]):
            return None
        cuts.append(ti)
        last = ci
    return cuts


def _breaks(p: tuple[float, float, float, float], q: tuple[float, float, float, float], h: float,
            lo: float | None = None, hi: float | None = None) -> bool:
    """Does box q (next in text order) start a new visual line after box p?
    (lo, hi): vertical extent of the line so far, so superscripts don't cut it."""
    lo = p[1] if lo is None else lo
    hi = p[3] if hi is None else hi
    return (
        q[0] - p[2] > max(1.5 * h, 8.0)
        or min(hi, q[3]) - max(lo, q[1]) < -0.5
        or q[2] < p[0] - 1
    )


def _split_by_chars(tp, text: str, a: int, b: int, cs: int, ce: int, h: float, number: int, bold: bool,
                    calls: _PdfiumCalls) -> list[Line]:
    """Per-char boxes for a glued line the rect cut could not place."""
    raw = calls.raw
    same_len = (ce - cs) == (b - a)
    out: list[Line] = []
    chars: list[str] = []
    box: list[float] | None = None
    prev: tuple[float, float, float, float] | None = None

    first = last = -1  # char indices of the fragment's first and last inked chars

    def emit() -> None:
        t = "".join(chars).strip()
        if box is not None and t:
            em = calls.line_em(tp, first, last, box[3] - box[1])
            out.append(Line(t, box[0], box[1], box[2], box[3], number, bold, em=em,
                            fontname=calls.fontname(tp, first)))

    for i in range(cs, ce + 1):
        if same_len:
            ch = text[a + i - cs]
        else:
            code = raw.FPDFText_GetUnicode(tp, i)
            ch = chr(code) if 0 < code < 0xD800 or 0xE000 <= code < 0x110000 else ""
        if ch in ("\r", "\n"):
            continue
        if ch.isspace():
            chars.append(" ")
            continue
        bx = calls.charbox(tp, i)
        if bx[2] - bx[0] <= 0 and bx[3] - bx[1] <= 0:
            chars.append(ch)
            continue
        if prev is not None and box is not None and _breaks(prev, bx, h, box[1], box[3]):
            emit()
            chars, box = [], None
        chars.append(ch)
        last = i
        if box is None:
            first = i
            box = [bx[0], bx[1], bx[2], bx[3]]
        else:
            box = [min(box[0], bx[0]), min(box[1], bx[1]), max(box[2], bx[2]), max(box[3], bx[3])]
        prev = bx
    emit()
    return out

"""Mine PDFs into clean, layout-aware sentences (pure logic: no Prefect, no DVC).

Engine: pypdfium2 (PDFium; BSD-3/Apache-2.0). PyMuPDF is faster on some
layouts but AGPL; pdfplumber is MIT but ~50x slower (pure Python per char).

Per page we take PDFium's text (one call) and its line breaks, split PDFium's
"lines" where it glued two visual lines (its own hyphen joins, marked U+FFFE)
or two columns (a large horizontal gap between text runs), and give every
line fragment a box from PDFium's text rectangles (a few ctypes calls per
line, never a Python loop over every character except on the rare lines that
must be split). A line's type size is the height of the font's box (PDFium's
loose char box), not of its ink: a line without ascenders or descenders is not
smaller print. Spacing accents set over a letter are composed with it. Then,
per document:

* drop running headers/footers (edge lines repeated across pages, page
  numbers, bare journal URLs and copyright lines), margin line numbers and
  rotated margin text;
* find the gutter of two-column pages (the x with no line crossing it, with
  column-wide lines on both sides) and read band by band: full-width lines
  (titles, abstracts, wide tables and captions) in place, between them the
  left column then the right one; a caption beside a narrowed column reads
  with the other column, a margin sidebar after the page's text;
* group lines into blocks, tag headings (-> section), captions (with a
  figure's explanation under them), tables and references; carry a paragraph
  across column and page breaks, and past captions, tables, footnotes and
  sidebars, when it did not end a sentence;
* NFKC-normalise, rejoin hyphenated words with the document's own vocabulary,
  split sentences with spaCy (blank English tokenizer + a rule component that
  knows scientific abbreviations); a body "sentence" without sentence
  structure (table cells laid out as prose) is given kind "table".

See docs/mining.md for the rules and the sentence check that measures them.

Pages without a text layer (or with a garbled one: an OCR layer without word
spaces) are OCR'd with the ``tesseract`` CLI when installed and ``ocr`` is on,
else reported as skipped with a reason.

Time limit: ``mine_paper`` checks a deadline between pages (and gives
tesseract only the time left); ``mine_paper_isolated`` runs it in a reusable
worker subprocess (``python -m stages.mine --worker``) that is killed when the
deadline passes, so even a page stuck inside PDFium cannot hold a paper longer
than the limit.
"""
from __future__ import annotations

import atexit
import bisect
import ctypes
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .records import Sentence

# --- params -----------------------------------------------------------------


@dataclass
class MineParams:
    """``mine`` section of params.yaml."""

    papers_dir: str = "data/papers"
    papers: list[str] = field(default_factory=lambda: ["*.pdf"])  # file-name patterns in papers_dir
    out_dir: str = "data/mined"
    report: str = "reports/mine.json"
    paper_timeout_s: float = 120.0  # a paper taking longer is reported as failed
    strict: bool = False  # true: any unreadable paper fails the stage
    isolate: bool = True  # run each paper in a worker process the time limit can kill
    ocr: bool = True  # OCR pages without a text layer when tesseract is installed
    ocr_garbled: bool = True  # ... and pages whose text layer has no word spaces
    ocr_lang: str = "eng"
    ocr_dpi: int = 200
    min_sentence_chars: int = 20
    max_sentence_chars: int = 1500  # longer "sentences" (run-on tables) are cut at this length

    def check(self) -> None:
        if self.paper_timeout_s <= 0:
            raise ValueError("paper_timeout_s must be > 0")
        if not 50 <= self.ocr_dpi <= 600:
            raise ValueError("ocr_dpi must be between 50 and 600")
        if self.min_sentence_chars < 0 or self.max_sentence_chars < 50:
            raise ValueError("min_sentence_chars must be >= 0 and max_sentence_chars >= 50")

    def key(self) -> dict[str, Any]:
        """The params that change what is mined (the cache key part)."""
        d = asdict(self)
        for k in ("papers_dir", "papers", "out_dir", "report", "paper_timeout_s", "strict", "isolate"):
            d.pop(k)
        if self.ocr:
            d["tesseract"] = tesseract_version()
        return d


class PaperError(Exception):
    """A paper that cannot be mined; the message is the reason for the report."""


class PaperTimeout(PaperError):
    pass


@dataclass
class PaperResult:
    doc_id: str
    path: str
    sentences: list[Sentence] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # reason when the paper could not be mined

    def to_json(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "path": self.path,
            "sentences": [asdict(s) for s in self.sentences],
            "stats": self.stats,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PaperResult":
        return cls(d["doc_id"], d["path"], [Sentence(**s) for s in d["sentences"]], d["stats"], d["error"])


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


# --- OCR ----------------------------------------------------------------------

_tess_version: str | None = None


def tesseract_version() -> str:
    """'tesseract 5.3.0' or '' when the CLI is not installed."""
    global _tess_version
    if _tess_version is None:
        exe = shutil.which("tesseract")
        _tess_version = ""
        if exe:
            try:
                out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20)
                _tess_version = (out.stdout or out.stderr).splitlines()[0].strip()
            except (OSError, subprocess.SubprocessError, IndexError):
                _tess_version = ""
    return _tess_version


def ocr_page_lines(page, number: int, width: float, height: float, params: MineParams, timeout: float) -> list[Line]:
    """Render one page and OCR it with tesseract (TSV: a box per word) into Lines."""
    scale = params.ocr_dpi / 72.0
    with _pdfium_lock:
        image = page.render(scale=scale, grayscale=True).to_pil()
    with tempfile.TemporaryDirectory(prefix="relmine-ocr-") as tmp:
        png = Path(tmp) / "page.png"
        image.save(png)
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one core per page: workers run in parallel
        try:
            out = subprocess.run(
                ["tesseract", str(png), "stdout", "-l", params.ocr_lang, "--psm", "3", "tsv"],
                capture_output=True, text=True, timeout=max(timeout, 1.0), env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise PaperTimeout(f"timeout: OCR of page {number} ran past the paper time limit") from exc
    if out.returncode != 0:
        raise PaperError(f"tesseract failed on page {number}: {out.stderr.strip()[:200]}")
    words: dict[tuple[str, str, str], list[tuple[float, float, float, float, str]]] = {}
    for row in out.stdout.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        try:
            left, top, w, h, conf = float(cols[6]), float(cols[7]), float(cols[8]), float(cols[9]), float(cols[10])
        except ValueError:
            continue
        if conf < 10:  # noise from pictures
            continue
        words.setdefault((cols[2], cols[3], cols[4]), []).append((left, top, w, h, cols[11]))
    lines = []
    for ws in words.values():
        x0 = min(w[0] for w in ws) / scale
        x1 = max(w[0] + w[2] for w in ws) / scale
        top = min(w[1] for w in ws) / scale
        bottom = max(w[1] + w[3] for w in ws) / scale
        text = " ".join(w[4] for w in ws)
        lines.append(Line(text, x0, height - bottom, x1, height - top, number))
    return lines


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


# --- one paper -------------------------------------------------------------------


_LETTER_RE = re.compile(r"[^\W\d_]")


def _garbled(lines: list[Line]) -> bool:
    """An OCR text layer without word spaces (brasier1994): few spaces per letter."""
    text = "".join(ln.text for ln in lines)
    letters = len(_LETTER_RE.findall(text))
    return letters >= 300 and text.count(" ") < 0.05 * letters


def _has_images(page, raw) -> bool:
    n = raw.FPDFPage_CountObjects(page)
    for i in range(n):
        obj = raw.FPDFPage_GetObject(page, i)
        if raw.FPDFPageObj_GetType(obj) == raw.FPDF_PAGEOBJ_IMAGE:
            return True
    return False


def read_pages(path: Path, params: MineParams, deadline: float | None = None) -> tuple[list[PageText], dict[str, Any]]:
    """Text lines of every page; OCR or skip pages without a (usable) text layer."""
    pdfium, raw = _load_pdfium()
    data = path.read_bytes()
    if not data:
        raise PaperError("empty file (0 bytes)")
    if b"%PDF-" not in data[:1024]:
        raise PaperError("not a PDF (no %PDF- header)")
    calls = _PdfiumCalls()
    pages: list[PageText] = []
    stats: dict[str, Any] = {"skipped_pages": [], "ocr_pages": []}
    tess = bool(params.ocr and tesseract_version())
    with _pdfium_lock:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            msg = str(exc)
            if "password" in msg.lower():
                raise PaperError("encrypted: needs a password") from exc
            raise PaperError(f"corrupt or truncated PDF ({msg})") from exc
    try:
        with _pdfium_lock:
            n_pages = len(doc)
        if n_pages == 0:
            raise PaperError("no pages")
        for i in range(n_pages):
            if deadline is not None and time.monotonic() > deadline:
                raise PaperTimeout(f"timeout: over {params.paper_timeout_s:g} s (stopped at page {i + 1} of {n_pages})")
            with _pdfium_lock:
                try:
                    page = doc[i]
                    width, height = page.get_size()
                    tp = page.get_textpage()
                except pdfium.PdfiumError as exc:
                    stats["skipped_pages"].append({"page": i + 1, "reason": f"unreadable page ({exc})"})
                    continue
                lines = extract_page_lines(page, tp, i + 1, calls)
                no_text = not lines
                images = no_text and _has_images(page, raw)
                tp.close()
            if calls.turned:
                width, height = height, width
            pt = PageText(i + 1, width, height, lines)
            reason = None
            if no_text:
                reason = "no text layer (image only)" if images else "blank page"
            elif _garbled(lines) and params.ocr_garbled:
                reason = "garbled text layer (no word spaces)"
            if reason and reason != "blank page":
                if tess:
                    left = (deadline - time.monotonic()) if deadline else params.paper_timeout_s
                    pt.lines = ocr_page_lines(page, i + 1, width, height, params, left)
                    pt.source = "ocr"
                    stats["ocr_pages"].append({"page": i + 1, "reason": reason})
                elif no_text:
                    why = "OCR off" if not params.ocr else "tesseract not installed"
                    pt.skipped = f"{reason}; {why}"
                    stats["skipped_pages"].append({"page": i + 1, "reason": pt.skipped})
                # a garbled layer without OCR is kept: poor text beats none
            elif reason == "blank page":
                pt.skipped = reason
                stats["skipped_pages"].append({"page": i + 1, "reason": reason})
            with _pdfium_lock:
                page.close()
            pages.append(pt)
    finally:
        with _pdfium_lock:
            doc.close()
    stats["pages"] = n_pages
    return pages, stats


def mine_paper(path: str | Path, params: MineParams, deadline: float | None = None) -> PaperResult:
    """Mine one PDF; never raises for a bad paper: the result carries the reason."""
    path = Path(path)
    t0 = time.monotonic()
    if deadline is None:
        deadline = t0 + params.paper_timeout_s
    res = PaperResult(path.stem, str(path))
    try:
        pages, stats = read_pages(path, params, deadline)
        for p in pages:
            for ln in p.lines:
                ln.text = normalize_text(ln.text)
            p.lines = [ln for ln in p.lines if ln.text and not _rotated(ln)]
            p.lines = _drop_line_numbers(p.lines)
        stats["header_footer_lines"] = drop_headers_footers(pages)
        for p in pages:
            p.lines = order_page(p.lines)
        if time.monotonic() > deadline:
            raise PaperTimeout(f"timeout: over {params.paper_timeout_s:g} s")
        vocab = Vocabulary(ln.text for p in pages for ln in p.lines)
        units = build_units(pages)
        res.sentences = units_to_sentences(units, res.doc_id, params, vocab, table_pages(pages))
        if not res.sentences and not stats["skipped_pages"]:
            raise PaperError("no text found")
        stats.update(
            sentences=len(res.sentences),
            characters=sum(len(s.text) for s in res.sentences),
            sections=sorted({s.section for s in res.sentences}),
            seconds=round(time.monotonic() - t0, 3),
        )
        res.stats = stats
    except PaperError as exc:
        res.error = str(exc)
    except Exception as exc:  # a bug or a PDFium surprise on one paper must not stop the others
        res.error = f"{type(exc).__name__}: {exc}"
    return res


def _rotated(ln: Line) -> bool:
    """Vertical text in margins ("Downloaded from ..."): taller than wide."""
    return len(ln.text) > 3 and ln.size > 2 * ln.width


# --- isolation: a worker process the time limit can kill ------------------------


class _Worker:
    def __init__(self):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stages.mine", "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env, cwd=root,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def request(self, path: str, params: MineParams, timeout: float) -> dict[str, Any] | None:
        """The worker's answer, or None when it did not answer in time (it is then killed)."""
        assert self.proc.stdin and self.proc.stdout
        msg = json.dumps({"path": path, "params": asdict(params)}) + "\n"
        self.proc.stdin.write(msg.encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.kill()
            return None
        line = self.proc.stdout.readline()
        if not line:
            self.kill()
            raise PaperError(f"worker process died (exit code {self.proc.poll()})")
        return json.loads(line)


class WorkerPool:
    """Reusable worker processes (one per concurrent caller); a worker that runs past
    a paper's time limit is killed and replaced."""

    def __init__(self):
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def run(self, path: str, params: MineParams) -> PaperResult:
        with self._lock:
            w = self._idle.pop() if self._idle else None
        if w is None or not w.alive():
            w = _Worker()
        # start-up (imports) is not the paper's fault: allow for it on top of the limit
        grace = 30.0
        try:
            # the worker runs in the project root: a relative path would resolve there, not
            # in the caller's working folder (flows run elsewhere, e.g. the benchmarks')
            answer = w.request(str(Path(path).resolve()), params, params.paper_timeout_s + grace)
        except (OSError, PaperError) as exc:
            w.kill()
            return PaperResult(Path(path).stem, path, error=f"worker failed: {exc}")
        if answer is None:
            return PaperResult(Path(path).stem, path, error=f"timeout: over {params.paper_timeout_s:g} s (worker killed)")
        with self._lock:
            self._idle.append(w)
        res = PaperResult.from_json(answer)
        res.path = path  # as the caller named it
        return res

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            try:
                if w.proc.stdin:
                    w.proc.stdin.close()
                w.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                w.kill()


_POOL = WorkerPool()
atexit.register(_POOL.close)


def mine_paper_isolated(path: str | Path, params: MineParams) -> PaperResult:
    """``mine_paper`` in a worker process: the time limit holds even inside PDFium."""
    if not params.isolate:
        return mine_paper(path, params)
    return _POOL.run(str(path), params)


def close_workers() -> None:
    _POOL.close()


def _worker_main() -> None:
    """Serve JSON requests on stdin, one answer line each on the original stdout."""
    sys.modules.setdefault("torch", None)  # type: ignore[arg-type]  # spaCy/thinc import torch if present: ~4 s we don't need
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray prints from libraries go to stderr, never into the answers
    get_nlp()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        params = MineParams(**req["params"])
        started = time.monotonic()
        res = mine_paper(req["path"], params, deadline=started + params.paper_timeout_s)
        out.write(json.dumps(res.to_json(), ensure_ascii=False) + "\n")
        out.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker_main()
    else:
        print("usage: python -m stages.mine --worker   (used by the mine flow)", file=sys.stderr)
        sys.exit(2)

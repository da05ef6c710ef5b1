"""One paper: pages -> layout -> paragraphs -> sentences, within a deadline."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from .layout import _drop_line_numbers, drop_headers_footers, order_page
from .ocr import ocr_page_lines, tesseract_version
from .paragraphs import Vocabulary, build_units
from .params import MineParams, PaperError, PaperResult, PaperTimeout
from .sentences import table_pages, units_to_sentences
from .text import Line, PageText, _load_pdfium, _pdfium_lock, _PdfiumCalls, extract_page_lines, normalize_text

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

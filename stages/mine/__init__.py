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

from .ocr import tesseract_version
from .paper import mine_paper, read_pages
from .params import MineParams, PaperError, PaperResult, PaperTimeout
from .sentences import get_nlp, split_sentences
from .text import normalize_text
from .workers import close_workers, mine_paper_isolated

__all__ = ["MineParams", "PaperError", "PaperResult", "PaperTimeout", "close_workers", "get_nlp", "mine_paper",
           "mine_paper_isolated", "normalize_text", "read_pages", "split_sentences", "tesseract_version"]

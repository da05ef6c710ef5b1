"""OCR of pages without a usable text layer (the ``tesseract`` CLI)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .params import MineParams, PaperError, PaperTimeout
from .text import Line, _pdfium_lock

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

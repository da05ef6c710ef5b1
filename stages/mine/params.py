"""The ``mine`` params and a paper's result record."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..records import Sentence

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
            from .ocr import tesseract_version

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

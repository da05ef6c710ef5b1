"""A paper's mining result in the per-paper cache, shared by the ``mine`` stage and ``extract``.

The key is the PDF's content hash, the mining params and the code version of
``stages.mine``: a rerun mines only new or changed papers, and ``extract`` reuses
what ``mine`` already did for the same file. Sentences stay on disk (JSONL in the
cache), so Dask workers ship back only the small stats record.

The key holds the content, not the name: a renamed paper, or a copy of one under
another name, hits the entry its first name filled. So a cached entry's ``doc_id``
(in the stats and in every sentence) is that first name's, and readers must put the
current file's doc_id back: ``sentences_for`` and ``sentences_text_for`` do.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import mine as mine_mod
from . import records as records_mod
from .cache import ResultCache, code_version, file_digest, make_key
from .mine import MineParams, PaperResult, mine_paper_isolated
from .records import Sentence


def paper_key(pdf: Path, params: MineParams) -> str:
    return make_key("mine", file_digest(pdf), params.key(), code_version(mine_mod, records_mod))


def mine_caches(cache_dir: str) -> tuple[ResultCache, ResultCache]:
    """(sentences JSONL, stats JSON) caches of the mine stage."""
    return ResultCache(cache_dir, "mine", ".jsonl"), ResultCache(cache_dir, "mine", ".stats.json")


def mine_one(pdf: str, params: MineParams, cache_dir: str, key: str) -> dict[str, Any]:
    """Mine one paper into the cache; returns its stats (plus doc_id/error), never raises
    for a bad paper."""
    t0 = time.monotonic()
    res: PaperResult = mine_paper_isolated(pdf, params)
    stats = dict(res.stats)
    stats.update(doc_id=res.doc_id, file=pdf, error=res.error, seconds=round(time.monotonic() - t0, 3))
    sent_cache, stats_cache = mine_caches(cache_dir)
    # timeouts depend on the machine's load: retry them next run instead of caching
    if res.error is None or not res.error.startswith("timeout"):
        text = "".join(json.dumps(asdict(s), ensure_ascii=False) + "\n" for s in res.sentences)
        sent_cache.put_text(key, text)
        stats_cache.put_text(key, json.dumps(stats))
    return stats


def sentences_for(path: str | Path, doc_id: str) -> list[Sentence]:
    """The cached sentences of ``path``, carrying ``doc_id`` (the file being mined now)."""
    sentences = records_mod.read_records(path, Sentence)
    for s in sentences:
        s.doc_id = doc_id
    return sentences


def sentences_text_for(path: str | Path, doc_id: str) -> str:
    """The cached sentences JSONL of ``path`` with ``doc_id`` in every record."""
    text = Path(path).read_text(encoding="utf-8")
    first = text.split("\n", 1)[0]
    if not first or json.loads(first).get("doc_id") == doc_id:
        return text  # the name it was mined under: copied as it is
    return "".join(json.dumps(asdict(s), ensure_ascii=False) + "\n" for s in sentences_for(path, doc_id))


def cached_mine(pdf: str, params: MineParams, cache_dir: str) -> tuple[dict[str, Any], Path, bool]:
    """Mine ``pdf`` unless the cache has it: (stats, sentences file, whether it was cached).
    The stats' doc_id/file are the current file's; read the sentences with ``sentences_for``."""
    key = paper_key(Path(pdf), params)
    sent_cache, stats_cache = mine_caches(cache_dir)
    if sent_cache.get(key) and stats_cache.get(key):
        stats = json.loads(stats_cache.path(key).read_text())
        stats.update(doc_id=Path(pdf).stem, file=pdf)
        return stats, sent_cache.path(key), True
    return mine_one(pdf, params, cache_dir, key), sent_cache.path(key), False

"""Per-item result cache, so a stage redoes only the papers whose inputs changed.

A result is keyed by a hash of everything that determines it: the input's
content, the params the stage reads and the version of the stage's code. DVC
reruns a whole stage when any dependency changes; this cache makes that rerun
cost only the changed items. Outputs are rebuilt from the cache on each run, so
an item removed from the inputs simply disappears from the outputs.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

from .records import atomic_write_text, to_dict


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: str | Path, pattern: str = "*") -> str:
    """Digest of every file under root matching pattern (names and contents)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(root.rglob(pattern)):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(file_digest(p).encode())
    return h.hexdigest()


def code_version(*modules: Any) -> str:
    """Hash of the source files of the given modules (every .py file of a package): a code
    edit invalidates the cache."""
    h = hashlib.sha256()
    for m in modules:
        src = Path(m.__file__)
        files = sorted(src.parent.rglob("*.py")) if src.name == "__init__.py" else [src]
        for f in files:
            h.update(f.relative_to(src.parent).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def make_key(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            h.update(part)
        elif isinstance(part, str):
            h.update(part.encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


class ResultCache:
    """Text results stored as <root>/<namespace>/<key[:2]>/<key><suffix>."""

    def __init__(self, root: str | Path, namespace: str, suffix: str = ".jsonl"):
        self.dir = Path(root) / namespace
        self.suffix = suffix

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}{self.suffix}"

    def get(self, key: str) -> Path | None:
        p = self.path(key)
        return p if p.exists() else None

    def put_text(self, key: str, text: str) -> Path:
        p = self.path(key)
        atomic_write_text(p, text)
        return p

    def put_records(self, key: str, records: Iterable[Any]) -> Path:
        """Records (dataclasses) as JSONL, one per line."""
        return self.put_text(key, "".join(json.dumps(to_dict(r), ensure_ascii=False) + "\n" for r in records))

    def get_json(self, key: str) -> Any:
        """The JSON stored under ``key``, or None when there is none."""
        p = self.path(key)
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None

    def copy_to(self, key: str, dest: str | Path) -> None:
        src = self.path(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)

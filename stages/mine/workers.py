"""Worker processes the time limit can kill (``python -m stages.mine --worker``)."""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .paper import mine_paper
from .params import MineParams, PaperError, PaperResult
from .sentences import get_nlp

# --- isolation: a worker process the time limit can kill ------------------------


class _Worker:
    def __init__(self):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        root = str(Path(__file__).resolve().parents[2])  # the project root (stages/mine/workers.py)
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


def worker_main() -> None:
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

"""`make bench` smoke test: the runner on tiny inputs writes well-formed figures and a summary.

The real benchmark (30 minutes) is not part of the suite; this checks the plumbing on the two
cheapest benchmarks in quick mode, writing to a temp folder instead of reports/bench/.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_runner_writes_figures_and_summary_on_tiny_inputs(tmp_path, sample_papers):
    env = {**os.environ, "RELMINE_BENCH_DIR": str(tmp_path / "bench")}
    md = tmp_path / "bench.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "annotate,mine", "--out", str(md)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    annotate = json.loads((tmp_path / "bench" / "annotate.json").read_text())
    assert annotate["sentences"] > 0 and annotate["entities"]["sentences_per_s"] > 0
    mine = json.loads((tmp_path / "bench" / "mine.json").read_text())
    assert set(mine["engines"]) >= {"relmine", "pypdfium2_plain", "pdfplumber"}
    assert mine["engines"]["relmine"]["pages"] > 0
    assert mine["machine"]["cores"] >= 1
    summary = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert summary["quick"] is True and all(r["ok"] for r in summary["results"].values())
    text = md.read_text()
    assert "| mining, pages/s |" in text and "| entities, sentences/s (1 core) |" in text
    assert "Quick mode" in text

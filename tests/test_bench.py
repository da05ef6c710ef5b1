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


def test_cuda_check_runs_its_code_on_cpu_and_packs_what_the_gpu_machine_needs(tmp_path, gold_dir):
    """bench_cuda is run on a lent GPU; here its --cpu-dry-run runs the same code on tiny sizes
    from the fp16 encoder that --pack writes (the device tool carries 64 MiB at most)."""
    import torch

    folder = gold_dir / "semeval2010_task8"
    env = {**os.environ, "RELMINE_BENCH_DIR": str(tmp_path / "bench")}
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_cuda
    from safetensors.torch import load_file

    packed = tmp_path / "gpu" / "minilm"
    bench_cuda.pack_encoder(packed)  # pack() also downloads wheels: not needed to test the encoder
    weights = load_file(str(packed / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    assert (packed / "model.safetensors").stat().st_size < 48 * 2**20
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_cuda", "--cpu-dry-run", "--model", str(packed),
         "--data", str(folder), "--train-size", "48", "--test-size", "32", "--epochs", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fig = json.loads((tmp_path / "bench" / "cuda.json").read_text())
    assert fig["mixed_precision"] == fig["lora"]["mixed_precision"] == "no" and fig["semeval"]["n_test"] == 32
    assert fig["lora"]["train_samples"] == 48 and 0.0 <= fig["lora"]["auto_agreement_with_float32"] <= 1.0
    assert (tmp_path / "bench" / "semeval_cuda.json").exists()
    assert set(bench_cuda.SEMEVAL_FILES) <= {p.name for p in folder.iterdir()}

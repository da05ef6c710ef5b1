"""`make bench` smoke test: the runner on tiny inputs writes well-formed figures and a summary.

The real benchmark is not part of the suite; the default suite checks the plumbing on the two
cheapest benchmarks in quick mode, writing to a temp folder instead of reports/bench/. The GPU
check's dry runs are marked ``bench`` (``pytest -m bench``).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def packed_encoder(tmp_path_factory):
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_cuda

    packed = tmp_path_factory.mktemp("gpu") / "minilm"
    bench_cuda.pack_encoder(packed)  # pack() also downloads wheels: not needed to test the encoder
    return packed


def test_bench_report_keeps_its_hand_written_notes(tmp_path):
    from benchmarks.run import NOTES_MARK, kept_notes

    report = tmp_path / "bench.md"
    assert kept_notes(report) == ""  # no report yet
    report.write_text(f"# old figures\n| a | 1 |\n\n{NOTES_MARK}\n\n## What the figures mean\n")
    assert kept_notes(report) == f"\n{NOTES_MARK}\n\n## What the figures mean\n"
    report.write_text("# figures without notes\n")
    assert kept_notes(report) == ""


@pytest.mark.bench
def test_cuda_check_packs_the_encoder_in_fp16(packed_encoder):
    """The device tool carries 64 MiB at most: the encoder travels in fp16 (relmine loads it in float32)."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(packed_encoder / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    assert (packed_encoder / "model.safetensors").stat().st_size < 48 * 2**20


@pytest.mark.bench
@pytest.mark.parametrize("evaluate_breaks", [False, True], ids=["evaluate-ok", "evaluate-unimportable"])
def test_cuda_check_runs_its_code_on_cpu(tmp_path, gold_dir, packed_encoder, evaluate_breaks):
    """bench_cuda is run on a lent GPU; here its --cpu-dry-run runs the same code on tiny sizes
    from the packed encoder. The GPU image's pyarrow may not suit the carried datasets wheel: with
    `datasets` unimportable the check still trains and scores (the official score is plain Python)
    and says why relmine's own metric figures are missing."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_cuda

    folder = gold_dir / "semeval2010_task8"
    env = {**os.environ, "RELMINE_BENCH_DIR": str(tmp_path / "bench")}
    if evaluate_breaks:
        fake = tmp_path / "fake" / "datasets"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text('raise ImportError("pyarrow>=24.0.0 is required")\n')
        env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_cuda", "--cpu-dry-run", "--model", str(packed_encoder),
         "--data", str(folder), "--train-size", "48", "--test-size", "32", "--epochs", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fig = json.loads((tmp_path / "bench" / "cuda.json").read_text())
    assert "partial" not in fig  # the partial file written after SemEval was replaced by the whole one
    assert fig["mixed_precision"] == fig["lora"]["mixed_precision"] == "no" and fig["semeval"]["n_test"] == 32
    assert fig["lora"]["train_samples"] == 48 and 0.0 <= fig["lora"]["auto_agreement_with_float32"] <= 1.0
    assert 0.0 <= fig["semeval"]["official_macro_f1"] <= 100.0
    sem = json.loads((tmp_path / "bench" / "semeval_cuda.json").read_text())
    if evaluate_breaks:
        assert fig["evaluate"].startswith("unavailable") and "pyarrow>=24.0.0" in fig["evaluate"]
        assert sem["relmine_metrics"] is None
    else:
        assert fig["evaluate"] == "ok" and 0.0 <= sem["relmine_metrics"]["macro_f1"] <= 1.0
    assert set(bench_cuda.SEMEVAL_FILES) <= {p.name for p in folder.iterdir()}


def test_gold_curve_folds_keep_each_sentence_whole_and_balanced(tmp_path):
    """The learning curve's folds split the gold by sentence: the pairs of one sentence (not
    independent) are never on both sides, and the folds differ by at most one sentence."""
    from benchmarks.gold_curve import fold_plan
    from stages.records import Example, Span

    texts = [f"Xus {i} is from Utah and Nevada." for i in range(9)]
    gold = [Example(f"{i}-{j}", "d", i, t, Span(0, 3, "TAXON", "Xus"), Span(17 + 4 * j, 21 + 4 * j, "LOC", "Utah"),
                    "found_at", origin="gold") for i, t in enumerate(texts) for j in range(2)]
    plan = fold_plan(gold, 4)
    assert set(plan) == set(texts) and set(plan.values()) == {0, 1, 2, 3}
    sizes = [list(plan.values()).count(f) for f in range(4)]
    assert max(sizes) - min(sizes) <= 1
    assert fold_plan(gold, 4) == plan and fold_plan(gold, 4, seed=1) != plan  # seeded, not order-bound


def test_label_sources_benchmark_scores_a_curator_sample(tmp_path):
    """`benchmarks.bench_label_sources` on the held-out curator sample, with the label model fitted
    on the sample's own sentences as the corpus (the real run reads data/entities)."""
    sample = ROOT / "tests/data/relations_curator_holdout.jsonl"
    ents = tmp_path / "entities"
    ents.mkdir()
    seen: set = set()
    with open(ents / "sample.jsonl", "w", encoding="utf-8") as fh:
        for line in sample.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if (r["doc_id"], r["sent_id"]) not in seen:
                seen.add((r["doc_id"], r["sent_id"]))
                fh.write(json.dumps({"doc_id": r["doc_id"], "sent_id": r["sent_id"], "page": r["page"],
                                     "section": r["section"], "text": r["text"], "mentions": r["mentions"]}) + "\n")
    env = {**os.environ, "RELMINE_BENCH_DIR": str(tmp_path / "bench")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_label_sources", "--sample", str(sample),
         "--entities-dir", str(ents), "--name", "holdout"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "bench" / "holdout.json").read_text())
    truth = [json.loads(x)["label"] for x in sample.read_text(encoding="utf-8").splitlines()]
    assert res["pairs"] == len(truth) == 150 and res["labels"]["found_at"] == truth.count("found_at")
    # every candidate is the relation its types allow: recall 1, precision the related share
    co = res["labellers"]["cooccurrence"]
    assert co["recall"] == 1.0 and co["precision"] == round(sum(t != "NO_RELATION" for t in truth) / len(truth), 4)
    assert res["labellers"]["patterns"]["precision"] > co["precision"]
    assert set(res["label_model"]) == {"shipped", "estimated_prior", "curator_prior"}

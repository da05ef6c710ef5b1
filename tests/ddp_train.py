"""Run by test_train.py under torchrun: one rank of a 2-process (DDP, gloo) training on CPU,
the path `accelerate launch -m flows.train` takes on a multi-GPU machine.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_train.py TINY_BERT OUT_DIR RESULTS_DIR
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stages.train import TrainParams, train_model  # noqa: E402
from helpers import made_examples  # noqa: E402

model, out_dir, results = sys.argv[1:4]
examples = made_examples(repeat=8)
p = TrainParams(model=model, out_dir=out_dir, epochs=2, batch_size=4, lr=5e-3, lora_r=4, lora_alpha=8,
                lora_target_modules=["query", "value", "dense"], warmup_ratio=0.0, device="cpu", log_every=1000)
r = train_model(p, examples[:44], examples[48:])  # 11 batches of 4: uneven across the two ranks
rank = os.environ["RANK"]
Path(results, f"rank{rank}.json").write_text(json.dumps(
    {"world_size": int(os.environ["WORLD_SIZE"]), "train_samples": r.train_samples,
     "best_dev_macro_f1": r.best_dev_macro_f1, "history": r.history}))

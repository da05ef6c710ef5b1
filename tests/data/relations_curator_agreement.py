"""Agreement between the two annotators of the curator relation sample.

Reads tests/data/relations_curator.jsonl (annotator 1, field `label`) and
tests/data/relations_curator_second.jsonl (annotator 2, blind, field `label`),
matched by `id`, and prints raw agreement, Cohen's kappa (4+1 labels and
related vs NO_RELATION), the confusion table, per-type-pair related shares and
the list of disagreements, with the adjudicated label of each disagreement
(ADJUDICATION below; see relations_curator_agreement.md) and the add-one
smoothed NO_RELATION share that benchmarks/bench_label_sources.py turns into
label_model.no_relation_prior.

    python tests/data/relations_curator_agreement.py
"""
import argparse
import collections
import json
from pathlib import Path

HERE = Path(__file__).parent
NO = "NO_RELATION"
# id -> adjudicated label, for every pair the two annotators label differently
ADJUDICATION = {
    "claybourn2019_JPaleontol_ShackletonLimestoneMollusks_CambrianSeries2:341:201-208:62-82": NO,
}
PAIR = {("TAXON", "LOC"): "LOC-TAXON", ("TAXON", "STRAT"): "STRAT-TAXON",
        ("STRAT", "CHRONO"): "CHRONO-STRAT", ("STRAT", "STRAT"): "STRAT-STRAT"}


def load(path):
    return {r["id"]: r for r in map(json.loads, open(path, encoding="utf-8"))}


def kappa(x, y):
    n = len(x)
    po = sum(a == b for a, b in zip(x, y)) / n
    cx, cy = collections.Counter(x), collections.Counter(y)
    pe = sum(cx[k] * cy[k] for k in set(cx) | set(cy)) / n / n
    return po, pe, (po - pe) / (1 - pe) if pe < 1 else 1.0


def pair_of(r):
    return PAIR.get((r["subj"]["type"], r["obj"]["type"]), "other")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--first", default=HERE / "relations_curator.jsonl")
    ap.add_argument("--second", default=HERE / "relations_curator_second.jsonl")
    a = ap.parse_args()
    one, two = load(a.first), load(a.second)
    assert set(one) == set(two), "the two files hold different ids"
    ids = list(two)
    adj = ADJUDICATION
    missing = [i for i in ids if one[i]["label"] != two[i]["label"] and i not in adj]
    assert not missing, f"disagreements without adjudication: {missing}"

    def final(i):
        return adj.get(i, one[i]["label"])
    l1 = [one[i]["label"] for i in ids]
    l2 = [two[i]["label"] for i in ids]
    po, pe, k = kappa(l1, l2)
    print(f"n={len(ids)} raw agreement={po:.3f} expected={pe:.3f} kappa={k:.3f}")
    b1 = ["rel" if x != NO else NO for x in l1]
    b2 = ["rel" if x != NO else NO for x in l2]
    po, pe, k = kappa(b1, b2)
    print(f"related vs NO_RELATION: raw={po:.3f} expected={pe:.3f} kappa={k:.3f}")
    labels = sorted(set(l1) | set(l2))
    conf = collections.Counter(zip(l1, l2))
    print("\nconfusion (rows annotator 1, columns annotator 2)")
    print("%-12s" % "" + "".join("%13s" % x for x in labels))
    for x in labels:
        print("%-12s" % x + "".join("%13d" % conf[(x, y)] for y in labels))
    print("\nper type pair: related share (annotator 1 / 2 / adjudicated), kappa;"
          " NO_RELATION prior (n_no + 1) / (n + 2) (annotator 1 / 2 / adjudicated)")
    for p in ["LOC-TAXON", "STRAT-TAXON", "CHRONO-STRAT", "STRAT-STRAT"]:
        sub = [i for i in ids if pair_of(two[i]) == p]
        n = len(sub)
        rel = [sum(f(i) != NO for i in sub) for f in
               (lambda i: one[i]["label"], lambda i: two[i]["label"], final)]
        _, _, kk = kappa([one[i]["label"] for i in sub], [two[i]["label"] for i in sub])
        shares = " / ".join(f"{r / n:.3f}" for r in rel)
        priors = " / ".join(f"{(n - r + 1) / (n + 2):.3f}" for r in rel)
        print(f"{p:13s} n={n:3d}  {shares}  kappa={kk:.3f}  prior {priors}")
    print("\ndisagreements")
    for n, i in enumerate(ids):
        if one[i]["label"] != two[i]["label"]:
            print(f"#{n} {i}: A1={one[i]['label']} A2={two[i]['label']} adj={adj[i]}")


if __name__ == "__main__":
    main()

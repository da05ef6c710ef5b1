"""split stage: groups kept whole, stratification, small classes, gold kept apart, the flow."""
from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from stages.records import NO_RELATION, Example, Span, read_records, write_jsonl
from stages.split import (
    SplitParams,
    fraction_error,
    group_key,
    leaked_groups,
    split_counts,
    split_examples,
)

TAXA = ["Olenellus", "Elrathia kingii", "Paradoxides", "Ptychagnostus atavus", "Redlichia", "Peronopsis"]
STRAT = ["Pioche Formation", "Wheeler Shale", "Marjum Formation", "Burgess Shale", "Weeks Formation",
         "Spence Shale Member", "Langston Formation", "Swasey Limestone"]
CHRONO = ["Drumian", "Wuliuan", "Guzhangian", "Stage 4"]
LOC = ["Nevada", "Utah", "the House Range", "British Columbia", "Idaho"]


def _ex(doc: str, sid: int, k: int, text: str, subj: tuple[str, str], obj: tuple[str, str], label: str,
        origin: str = "auto") -> Example:
    s, o = text.index(subj[0]), text.rindex(obj[0])
    return Example(
        id=f"{doc}:{sid}:{k}", doc_id=doc, sent_id=sid, text=text,
        subj=Span(s, s + len(subj[0]), subj[1], subj[0]), obj=Span(o, o + len(obj[0]), obj[1], obj[0]),
        label=label, origin=origin, rules=[] if label == NO_RELATION else [f"r_{label}"],
    )


def make_corpus(n_sentences: int = 400, seed: int = 0, n_docs: int = 12) -> list[Example]:
    """Palaeontology sentences with several pairs each; label mix like the real one:
    NO_RELATION majority, found_at/occurs_in common, assigned_to/part_of ~2-3%."""
    r = random.Random(seed)
    out: list[Example] = []
    for sid in range(n_sentences):
        doc = f"paper{sid % n_docs:02d}"
        t, s, s2, c, loc = r.choice(TAXA), r.choice(STRAT), r.choice(STRAT), r.choice(CHRONO), r.choice(LOC)
        while s2 == s:
            s2 = r.choice(STRAT)
        roll = r.random()
        if roll < 0.05:
            text = f"The {s} is assigned to the {c} Stage in {loc}."
            pairs = [((s, "STRAT"), (c, "CHRONO"), "assigned_to"), ((c, "CHRONO"), (loc, "LOC"), NO_RELATION)]
        elif roll < 0.10:
            text = f"The {s} is part of the {s2} near {loc}."
            pairs = [((s, "STRAT"), (s2, "STRAT"), "part_of"), ((s2, "STRAT"), (loc, "LOC"), NO_RELATION)]
        else:
            text = f"{t} was found in the {s} of {loc}."
            pairs = [((t, "TAXON"), (loc, "LOC"), "found_at"), ((t, "TAXON"), (s, "STRAT"), "occurs_in"),
                     ((s, "STRAT"), (loc, "LOC"), NO_RELATION)]
            if r.random() < 0.6:  # many mined sentences carry no relation at all
                pairs = [(a, b, NO_RELATION) for a, b, _ in pairs]
        out += [_ex(doc, sid, k, text, a, b, lbl) for k, (a, b, lbl) in enumerate(pairs)]
    return out


def test_corpus_has_realistic_imbalance():
    shares = {k: v / len(c) for c in [make_corpus()] for k, v in Counter(e.label for e in c).items()}
    assert shares[NO_RELATION] > 0.5
    assert 0.01 < shares["assigned_to"] < 0.04 and 0.01 < shares["part_of"] < 0.04
    assert shares["found_at"] > 0.1 and shares["occurs_in"] > 0.1


@pytest.mark.parametrize("group_by", ["sentence", "paper"])
def test_no_group_crosses_splits(group_by):
    exs = make_corpus(n_docs=20)
    res = split_examples(exs, SplitParams(group_by=group_by, dev_fraction=0.15, test_fraction=0.15))
    assert leaked_groups(res, group_by) == set()
    assert len(res.train) + len(res.dev) + len(res.test) == len(exs)
    assert res.dev and res.test
    if group_by == "paper":
        docs = {name: {e.doc_id for e in getattr(res, name)} for name in ("train", "dev", "test")}
        assert not (docs["train"] & docs["dev"]) and not (docs["train"] & docs["test"]) and not (docs["dev"] & docs["test"])


def test_stratified_within_tolerance():
    exs = make_corpus(n_sentences=800)
    res = split_examples(exs, SplitParams(dev_fraction=0.15, test_fraction=0.15))
    assert fraction_error(res) < 0.03
    n = len(exs)
    assert abs(len(res.test) / n - 0.15) < 0.04
    assert abs(len(res.dev) / n - 0.15) < 0.04
    # the rare positive classes reach dev and test
    for name in ("dev", "test"):
        labels = Counter(e.label for e in getattr(res, name))
        assert labels["assigned_to"] > 0 and labels["part_of"] > 0


def test_singleton_class_stays_in_train_with_warning(caplog):
    exs = make_corpus(n_sentences=200)
    lonely = _ex("paper99", 1, 0, "The Weeks Formation overlies the Marjum Formation.",
                 ("Weeks Formation", "STRAT"), ("Marjum Formation", "STRAT"), "overlies")
    sibling = _ex("paper99", 1, 1, lonely.text, ("Marjum Formation", "STRAT"), ("Weeks Formation", "STRAT"),
                  NO_RELATION)
    with caplog.at_level(logging.WARNING):
        res = split_examples(exs + [lonely, sibling], SplitParams(min_class_count=3))
    assert lonely in res.train and sibling in res.train  # its whole sentence stays in train
    assert res.train_only_classes == ["overlies"]
    assert "overlies (1)" in caplog.text
    assert any("overlies" in w for w in res.warnings)


def test_deterministic_and_order_independent():
    exs = make_corpus()
    p = SplitParams(seed=7)
    a = split_examples(exs, p)
    shuffled = exs[:]
    random.Random(1).shuffle(shuffled)
    b = split_examples(shuffled, p)
    assert [e.id for e in a.test] == [e.id for e in b.test]
    assert [e.id for e in a.dev] == [e.id for e in b.dev]
    c = split_examples(exs, SplitParams(seed=8))
    assert {e.id for e in c.test} != {e.id for e in a.test}


def test_gold_kept_apart_and_augmented_only_in_train():
    exs = make_corpus(n_sentences=200)
    gold = [_ex("goldpaper", 1, 0, "Olenellus was found in the Pioche Formation of Nevada.",
                  ("Olenellus", "TAXON"), ("Nevada", "LOC"), "found_at", origin="gold")]
    aug = _ex("paper01", 1, 5, "Olenellus was discovered in the Pioche Formation of Nevada.",
              ("Olenellus", "TAXON"), ("Nevada", "LOC"), "found_at", origin="augmented")
    res = split_examples(exs + gold + [aug], SplitParams())
    assert res.gold == gold
    for name in ("train", "dev", "test"):
        assert all(e.origin != "gold" for e in getattr(res, name))
    assert aug in res.train
    assert all(e.origin == "auto" for e in res.dev + res.test)

    # train_on_gold: gold joins train, and auto pairs of a gold sentence stay out of dev/test
    shared = next(e for e in exs if e.label == "found_at")
    g2 = Example(**{**shared.__dict__, "id": "gold-x", "origin": "gold"})
    res2 = split_examples(exs + [g2], SplitParams(train_on_gold=True))
    assert g2 in res2.train and res2.gold == [g2]
    key = group_key(shared, "sentence")
    assert all(group_key(e, "sentence") != key for e in res2.dev + res2.test)


def test_split_counts_match_the_splits():
    res = split_examples(make_corpus(n_sentences=150), SplitParams())
    counts = split_counts(res)
    for name in ("train", "dev", "test", "gold"):
        assert counts["splits"][name]["total"] == len(getattr(res, name))
        assert sum(counts["splits"][name]["by_label"].values()) == len(getattr(res, name))
    assert counts["labels"]["found_at"]["test"] == sum(e.label == "found_at" for e in res.test)
    assert abs(sum(counts["fractions"].values()) - 1) < 1e-3


def test_tiny_input_does_not_crash():
    exs = make_corpus(n_sentences=2)
    res = split_examples(exs, SplitParams())
    assert len(res.train) + len(res.dev) + len(res.test) == len(exs)
    assert leaked_groups(res, "sentence") == set()


def write_params(tmp: Path, **split) -> Path:
    params = {
        "run": {"task_runner": "threads", "max_workers": 2, "cache_dir": str(tmp / "cache")},
        "split": {"relations_dir": str(tmp / "relations"), "gold_dir": str(tmp / "gold"),
                  "out_dir": str(tmp / "split"), **split},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_split_flow(prefect_server, tmp_path):
    from flows.split import run_split

    exs = make_corpus(n_sentences=300)
    for doc in sorted({e.doc_id for e in exs}):
        write_jsonl(tmp_path / "relations" / f"{doc}.jsonl", [e for e in exs if e.doc_id == doc])
    gold = _ex("goldpaper", 1, 0, "Elrathia kingii occurs in the Wheeler Shale of Utah.",
               ("Elrathia kingii", "TAXON"), ("Wheeler Shale", "STRAT"), "occurs_in", origin="auto")
    (tmp_path / "gold").mkdir()
    bad = {**json.loads(json.dumps(gold.__dict__, default=lambda o: o.__dict__)), "id": "bad"}
    bad["subj"]["end"] = 3  # span text no longer matches
    (tmp_path / "gold" / "g.jsonl").write_text(
        json.dumps(gold.__dict__, default=lambda o: o.__dict__) + "\n" + json.dumps(bad) + "\n")

    report_path = tmp_path / "reports" / "split.json"
    report = run_split(str(write_params(tmp_path)), report_path=str(report_path))

    out = {n: read_records(tmp_path / "split" / f"{n}.jsonl", Example) for n in ("train", "dev", "test", "gold")}
    assert [e.id for e in out["gold"]] == [gold.id] and out["gold"][0].origin == "gold"
    assert sum(len(out[n]) for n in ("train", "dev", "test")) == len(exs)
    assert json.loads(report_path.read_text()) == report
    assert report["splits"]["test"]["total"] == len(out["test"]) > 0
    assert len(report["skipped_records"]) == 1 and "g.jsonl: record 2" in report["skipped_records"][0]
    sent = {n: {(e.doc_id, e.sent_id) for e in out[n]} for n in ("train", "dev", "test")}
    assert not (sent["train"] & sent["test"]) and not (sent["dev"] & sent["test"])

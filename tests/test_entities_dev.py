"""The hand-marked entity dev set (tests/data/entities_dev*.jsonl) and its scorer
(benchmarks/bench_entities_dev.py): every span points at its text, the types are the
domain's, the papers are not those of the relation gold set, and the scorer counts exact
and overlap matches as documented."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_entities_dev import DEV_SET, HELDOUT, HELDOUT2, HELDOUT3, annotate_dev, read_dev_set, run, score_dev
from stages.entities import EntityAnnotator
from stages.errors import InputError
from stages.patterns import load_entity_spec
from stages.records import Mention

ROOT = Path(__file__).resolve().parents[1]
RELATION_GOLD_PAPERS = ("babcock2007", "peng2012", "ICS2015", "brasier1994", "cohen2013")


PARTS = {"dev": (DEV_SET, 150), "heldout": (HELDOUT, 95), "heldout2": (HELDOUT2, 43), "heldout3": (HELDOUT3, 26)}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return read_dev_set()


@pytest.mark.parametrize("part", PARTS)
def test_every_span_points_at_its_text(part):
    path, at_least = PARTS[part]
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(raw) == len(read_dev_set(path)) >= at_least
    for r in raw:
        for m in r["mentions"]:
            assert 0 <= m["start"] < m["end"] <= len(r["text"])
            assert r["text"][m["start"]:m["end"]] == m["text"], (r["doc_id"], r["sent_id"], m)


@pytest.mark.parametrize("part", PARTS)
def test_mentions_are_typed_sorted_and_never_overlap(part):
    types = set(load_entity_spec(ROOT / "data/patterns/entities.yaml", base_dir=ROOT).types)
    counts = {t: 0 for t in types}
    for r in read_dev_set(PARTS[part][0]):
        ms = r["mentions"]
        assert [m["start"] for m in ms] == sorted(m["start"] for m in ms)
        for a, b in zip(ms, ms[1:]):
            assert a["end"] <= b["start"], (r["sent_id"], a, b)
        for m in ms:
            assert m["type"] in types
            assert m["text"] == m["text"].strip() and m["text"]
            counts[m["type"]] += 1
    assert all(n >= 5 for n in counts.values()), counts  # every type is measured


def test_nine_papers_none_of_the_relation_gold_set_none_in_both_parts():
    dev = {r["doc_id"] for r in read_dev_set(DEV_SET)}
    held = {r["doc_id"] for r in read_dev_set(HELDOUT)}
    assert len(dev) == 4 and len(held) == 5 and not dev & held  # held-out: 4 papers, and bergstrom2000 for STRAT
    assert not any(p.startswith(RELATION_GOLD_PAPERS) for p in dev | held)
    for path in (DEV_SET, HELDOUT):
        keys = [(r["doc_id"], r["sent_id"]) for r in read_dev_set(path)]
        assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("part", ["heldout2", "heldout3"])
def test_later_blind_parts_share_no_text_with_the_others_and_no_gold_paper(part):
    """The second and third blind STRAT parts (each drawn after the earlier ones were scored)
    hold no sentence, nor a 60-character stretch of one, of the earlier parts, and no paper of
    the relation gold set."""
    new = read_dev_set(PARTS[part][0])
    earlier = [DEV_SET, HELDOUT] + ([HELDOUT2] if part == "heldout3" else [])
    old = [r for path in earlier for r in read_dev_set(path)]
    assert not any(r["doc_id"].startswith(RELATION_GOLD_PAPERS) for r in new)
    for r in new:
        t = r["text"]
        for o in old:
            if o["doc_id"] == r["doc_id"]:
                assert not any(t[i:i + 60] in o["text"] for i in range(0, max(1, len(t) - 60), 10)), (r["sent_id"], o["sent_id"])
    keys = [(r["doc_id"], r["sent_id"]) for r in new]
    assert len(set(keys)) == len(keys)
    assert sum(m["type"] == "STRAT" for r in new for m in r["mentions"]) >= 30


def test_conventions_direction_words_and_stage_words_outside_spans(rows):
    texts = [(m["type"], m["text"]) for r in rows for m in r["mentions"]]
    assert not any(t == "LOC" and w.split()[0].lower() in {"southern", "southernmost", "central", "western", "eastern"}
                   for t, w in texts)
    assert ("STRAT", "Fillmore Formation") in texts and ("CHRONO", "Ibexian") in texts


def test_a_broken_span_is_reported_with_line_and_fix(tmp_path):
    bad = tmp_path / "dev.jsonl"
    bad.write_text(json.dumps({"doc_id": "d", "sent_id": 0, "text": "Found in Utah.",
                               "mentions": [{"start": 0, "end": 4, "type": "LOC", "text": "Utah"}]}) + "\n")
    with pytest.raises(InputError, match=r"dev.jsonl:1: .*'Utah'.*fix"):
        read_dev_set(bad)


def test_scorer_exact_and_overlap_on_the_dev_set(rows):
    gold_as_pred = [[Mention(m["start"], m["end"], m["text"], m["type"], "gold") for m in r["mentions"]] for r in rows]
    perfect = score_dev(rows, gold_as_pred)
    assert all(sc["exact"]["f1"] == 1.0 and sc["overlap"]["f1"] == 1.0 for sc in perfect.values())
    # each prediction one character short: no exact match, every overlap kept
    short = [[Mention(m.start, m.end - 1, m.text[:-1], m.type, "x") for m in ms] for ms in gold_as_pred]
    sc = score_dev(rows, short)
    assert all(s["exact"]["recall"] == 0.0 and s["overlap"]["recall"] == 1.0 for s in sc.values())
    # a right span with the wrong type counts for neither type
    retyped = [[Mention(m.start, m.end, m.text, "LOC" if m.type == "TAXON" else m.type, "x") for m in ms]
               for ms in gold_as_pred]
    sc = score_dev(rows, retyped)
    assert sc["TAXON"]["overlap"]["recall"] == 0.0 and sc["LOC"]["overlap"]["precision"] < 1.0


def test_patterns_on_the_dev_set_sentence_by_sentence(rows, gazetteers, tmp_path):
    annotator = EntityAnnotator(load_entity_spec(ROOT / "data/patterns/entities.yaml", base_dir=ROOT))
    predicted, context = annotate_dev(annotator, rows, mined_dir=None)
    assert set(context.values()) == {"sentence"}
    for r, ms in zip(rows, predicted):
        assert all(r["text"][m.start:m.end] == m.text for m in ms)
    sc = score_dev(rows, predicted)
    for ty in ("TAXON", "STRAT", "CHRONO", "LOC"):
        assert sc[ty]["overlap"]["precision"] >= sc[ty]["exact"]["precision"]
        assert sc[ty]["overlap"]["precision"] >= 0.85, (ty, sc[ty])


def test_bench_keeps_the_bgs_figures_of_the_report(gazetteers, tmp_path):
    report = tmp_path / "entities_gold.json"
    report.write_text(json.dumps({"scores": {"LEXICON": {"exact": {"f1": 0.9}}}, "gold_file": "bgs"}))
    res = run(key="entities_dev", report=report, mined_dir=None)
    out = json.loads(report.read_text())
    assert out["scores"] == {"LEXICON": {"exact": {"f1": 0.9}}} and out["gold_file"] == "bgs"
    assert set(res) == {"entities_dev", "entities_dev_heldout", "entities_dev_heldout2", "entities_dev_heldout3"}
    for key, path in (("entities_dev", DEV_SET), ("entities_dev_heldout", HELDOUT), ("entities_dev_heldout2", HELDOUT2),
                      ("entities_dev_heldout3", HELDOUT3)):
        assert out[key]["scores"] == res[key]["scores"] and res[key]["sentences"] == len(read_dev_set(path))


def test_tagger_labels_round_trip_to_the_hand_marked_spans(rows):
    """The tagger's BIO encoding on its tokens decodes back to the hand-marked spans
    (stages/tagger.py), so training on mentions loses almost none of their boundaries."""
    from stages import tagger as T

    same = total = 0
    for r in rows:
        gold = [Mention(m["start"], m["end"], m["text"], m["type"], "gold") for m in r["mentions"]]
        toks = T.tokenize(r["text"])
        back = [m for m, _ in T.decode(r["text"], toks, T.bio(toks, gold))]
        total += len(gold)
        same += len({(m.start, m.end, m.type) for m in gold} & {(m.start, m.end, m.type) for m in back})
    assert same / total >= 0.95, (same, total)


def test_a_dev_row_the_mining_now_splits_otherwise_is_annotated_within_its_paper(tmp_path):
    """A row whose text is no longer one of the mined paper's sentences is added to the paper,
    so the paper-level passes (here: the genus taught by a binomial) still reach it."""
    from stages.records import Sentence, write_jsonl

    mined = tmp_path / "mined"
    write_jsonl(mined / "p.jsonl", [Sentence("p", 0, 1, "body", "Ptychagnostus atavus occurs in the Wheeler Formation."),
                                    Sentence("p", 1, 1, "body", "Ptychagnostus is common.")])
    rows = [{"doc_id": "p", "sent_id": 1, "text": "Ptychagnostus is common.", "mentions": []},
            {"doc_id": "p", "sent_id": 7, "text": "Specimens of Ptychagnostus were found", "mentions": []}]
    annotator = EntityAnnotator(load_entity_spec(ROOT / "data/patterns/entities.yaml", base_dir=ROOT))
    predicted, context = annotate_dev(annotator, rows, mined)
    assert context == {"p": "paper, 1 rows added"}
    assert [[(m.text, m.type) for m in ms] for ms in predicted] == [[("Ptychagnostus", "TAXON")]] * 2
    alone, ctx = annotate_dev(annotator, rows, None)
    assert ctx == {"p": "sentence"} and alone == [[], []]

"""SemEval-2010 Task 8 importer on the real files, and the official scorer on made predictions."""
from __future__ import annotations

from collections import Counter

import pytest

from stages.records import NO_RELATION
from benchmarks.semeval import load_semeval, official_score, parse_tagged


@pytest.fixture(scope="module")
def semeval(gold_dir):
    folder = gold_dir / "semeval2010_task8"
    if not folder.exists():
        pytest.skip(f"{folder} not found: needs ../shared/gold/semeval2010_task8")
    return load_semeval(folder)


def test_parse_tagged_spans():
    text, e1, e2 = parse_tagged("The <e1>company</e1> fabricates plastic <e2>chairs</e2>.")
    assert text == "The company fabricates plastic chairs."
    assert text[e1[0]:e1[1]] == "company" and text[e2[0]:e2[1]] == "chairs"
    with pytest.raises(ValueError):
        parse_tagged("no <e1>tags</e1> for e2")


def test_importer_reads_the_real_files(semeval):
    train, test = semeval
    assert len(train) == 8000 and len(test) == 2717
    labels = Counter(e.label for e in train)
    assert len(labels) == 19 and "Other" not in labels  # 9 relations x 2 directions + NO_RELATION
    assert labels[NO_RELATION] == 1410  # "Other" in the official statistics
    assert labels["Entity-Destination(e2,e1)"] == 1  # the famously rare direction
    assert Counter(e.label for e in test)[NO_RELATION] == 454
    first = train[0]  # 1 "...arrayed <e1>configuration</e1> of antenna <e2>elements</e2>."
    assert first.label == "Component-Whole(e2,e1)"
    assert first.subj.text == "configuration" and first.obj.text == "elements"
    assert first.subj.start < first.obj.start
    for ex in train[:500] + test[:500]:
        ex.validate()  # spans point at their text
        assert "<e1>" not in ex.text and "</e2>" not in ex.text
    assert test[0].id == "semeval-8001" and test[0].label == "Message-Topic(e1,e2)"


def test_official_score_on_made_predictions():
    gold = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Cause-Effect(e1,e2)",
            "Component-Whole(e1,e2)", "Component-Whole(e1,e2)", NO_RELATION, NO_RELATION]
    pred = ["Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)", NO_RELATION,   # hit, wrong direction, miss
            "Component-Whole(e1,e2)", "Cause-Effect(e1,e2)", "Component-Whole(e2,e1)", NO_RELATION]
    s = official_score(gold, pred)
    # Cause-Effect: correct 1; predicted as C-E (any direction) 3 -> P 1/3; gold 3 -> R 1/3
    ce = s["per_relation"]["Cause-Effect"]
    assert ce["precision"] == pytest.approx(100 / 3) and ce["recall"] == pytest.approx(100 / 3)
    # Component-Whole: correct 1; predicted 2 (one on an Other sentence) -> P 1/2; gold 2 -> R 1/2
    cw = s["per_relation"]["Component-Whole"]
    assert cw["f1"] == pytest.approx(50.0)
    assert s["official_macro_f1"] == pytest.approx((100 / 3 + 50) / 2)  # Other excluded
    perfect = official_score(gold, gold)
    assert perfect["official_macro_f1"] == pytest.approx(100.0)
    # direction matters: swapping every direction scores 0 on those relations
    flipped = [g.replace("e1,e2", "X").replace("e2,e1", "e1,e2").replace("X", "e2,e1") for g in gold]
    assert official_score(gold, flipped)["official_macro_f1"] == 0.0

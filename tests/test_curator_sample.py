"""The curator relation sample and its second, blind annotation (tests/data/relations_curator*.md):
both files label the same pairs of the same sentences, with labels of the schema, and every
pair the annotators label differently has an adjudicated label."""
import importlib.util
import json
from pathlib import Path

DATA = Path(__file__).parent / "data"
LABELS = {"found_at", "occurs_in", "assigned_to", "part_of", "NO_RELATION"}


def _load(name):
    return {r["id"]: r for r in map(json.loads, (DATA / name).read_text(encoding="utf-8").splitlines())}


def test_second_annotation_covers_the_same_pairs_and_every_disagreement_is_adjudicated():
    one, two = _load("relations_curator.jsonl"), _load("relations_curator_second.jsonl")
    assert set(one) == set(two) and len(two) == 150
    for i, r in two.items():
        assert r["label"] in LABELS and r["origin"] == "curator2"
        assert (r["text"], r["subj"], r["obj"]) == (one[i]["text"], one[i]["subj"], one[i]["obj"])
        for m in (r["subj"], r["obj"]):
            assert r["text"][m["start"]:m["end"]] == m["text"]
    spec = importlib.util.spec_from_file_location("agreement", DATA / "relations_curator_agreement.py")
    agreement = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agreement)
    differ = {i for i in two if two[i]["label"] != one[i]["label"]}
    assert differ == set(agreement.ADJUDICATION)
    po, _, k = agreement.kappa([one[i]["label"] for i in two], [two[i]["label"] for i in two])
    assert po == 1 - len(differ) / len(two) and 0 < k <= 1

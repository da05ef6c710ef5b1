"""Weak supervision: veto rules, the label model, knowledge and consistency sources, soft-label
training targets, the gold table, and params that agree with their dataclasses."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages import gold as G
from stages import weak as W
from stages.errors import InputError
from stages.evaluate import EvalParams, relation_scores
from stages.labelmodel import LabelModelParams, fit
from stages.patterns import load_entity_types, load_relations_spec
from stages.records import NO_RELATION, AnnotatedSentence, Example, Mention, Span
from stages.relations import RelationLabeller

ROOT = Path(__file__).resolve().parents[1]
ENTITIES = ROOT / "data/patterns/entities.yaml"
RELATIONS = ROOT / "data/patterns/relations.yaml"

SMALL = """
version: 1
relations:
  found_at:
    args: [[TAXON, LOC]]
    templates:
      - id: found_at.from
        pattern: '{TAXON} from {LOC}'
  part_of:
    args: [[STRAT, STRAT]]
    templates:
      - id: part_of.of
        pattern: '{STRAT:subj} of the {STRAT:obj}'
vetoes:
  - id: veto.semicolon
    pattern: ';'
  - id: veto.cf
    relations: [found_at]
    scope: before_subj
    pattern: '\\bcf\\.\\s*\\Z'
  - id: veto.same
    same_text: true
  - id: veto.table
    kinds: [table]
  - id: veto.inner_taxon
    relations: [found_at]
    pattern: '<TAXON>'
  - id: veto.after
    scope: after
    pattern: '^ \\(museum\\)'
"""


def _spec(tmp_path: Path, text: str = SMALL):
    p = tmp_path / "relations.yaml"
    p.write_text(text)
    return load_relations_spec(p, {"TAXON", "LOC", "STRAT", "CHRONO"})


def _sentence(text: str, names: list[tuple[str, str]], kind: str = "body", sent_id: int = 0,
              doc: str = "d") -> AnnotatedSentence:
    ms, pos = [], 0
    for name, typ in names:
        start = text.index(name, pos)
        ms.append(Mention(start, start + len(name), name, typ, "test"))
        pos = start + len(name)
    return AnnotatedSentence(doc, sent_id, 1, "results", text, kind, ms)


def _rules(spec, s: AnnotatedSentence) -> dict[tuple[str, str], list[str]]:
    return {(e.subj.text, e.obj.text): e.rules for e in RelationLabeller(spec).label_sentence(s)}


# --- veto rules --------------------------------------------------------------------------


def test_vetoes_fire_on_their_scope_and_never_change_the_pattern_label(tmp_path):
    spec = _spec(tmp_path)
    r = _rules(spec, _sentence("Xus from Utah; Yus cf. Zus from Texas (museum).",
                               [("Xus", "TAXON"), ("Utah", "LOC"), ("Zus", "TAXON"), ("Texas", "LOC")]))
    assert r[("Xus", "Utah")] == ["found_at.from"]
    assert set(r[("Xus", "Texas")]) == {"veto.semicolon", "veto.inner_taxon", "veto.after"}
    assert set(r[("Zus", "Texas")]) == {"found_at.from", "veto.cf", "veto.after"}  # cf. right before Zus
    labs = {(e.subj.text, e.obj.text): e.label for e in RelationLabeller(spec).label_sentence(
        _sentence("Yus cf. Zus from Texas.", [("Zus", "TAXON"), ("Texas", "LOC")]))}
    assert labs[("Zus", "Texas")] == "found_at"  # the patterns' own label stays; the label model weighs the veto


def test_same_text_and_kind_conditions(tmp_path):
    spec = _spec(tmp_path)
    r = _rules(spec, _sentence("The Wheeler Formation and the wheeler  formation again",
                               [("Wheeler Formation", "STRAT"), ("wheeler  formation", "STRAT")]))
    assert r[("Wheeler Formation", "wheeler  formation")] == ["veto.same"]
    table = _sentence("Xus from Utah", [("Xus", "TAXON"), ("Utah", "LOC")], kind="table")
    assert _rules(spec, table)[("Xus", "Utah")] == ["found_at.from", "veto.table"]


@pytest.mark.parametrize("veto, message", [
    ("{id: v, scope: inside, pattern: x}", "scope = 'inside'"),
    ("{id: v, relations: [occurs_in], pattern: x}", "relations names 'occurs_in'"),
    ("{id: v}", "no condition"),
    ("{id: v, pattern: '{TAXON} x'}", "no typed slots"),
    ("{id: v, pattern: '(x'}", "does not compile"),
    ("{id: v, same_text: maybe}", "same_text"),
    ("{id: v, shape: {}}", "expected a mapping of thresholds"),
    ("{id: v, shape: {min_tokens: 0}}", "min_tokens = 0"),
    ("{id: v, shape: {terminated: no_stop}}", "terminated = 'no_stop'"),
    ("{id: v, shape: {min_capital_share: 30}}", "min_capital_share = 30"),
    ("{id: v, shape: {max_function_share: 0.1}}", "needs the words it counts"),
    ("{id: v, shape: {min_words: 3}}", "min_words"),
    ("{id: v, pattern: x, exclude: yes please}", "exclude = 'yes please'"),
    ("{id: v, pattern: x, subj_first: maybe}", "subj_first = 'maybe'"),
])
def test_bad_vetoes_name_the_rule_and_the_fix(tmp_path, veto, message):
    text = SMALL.split("vetoes:")[0] + f"vetoes:\n  - {veto}\n"
    with pytest.raises(InputError) as err:
        _spec(tmp_path, text)
    assert "veto 'v'" in str(err.value) and message in str(err.value) and "fix:" in str(err.value)


def test_no_relation_as_a_relation_points_to_vetoes(tmp_path):
    text = SMALL.replace("  part_of:", "  NO_RELATION:\n    args: [[TAXON, LOC]]\n    templates: []\n  part_of:")
    with pytest.raises(InputError, match="vetoes"):
        _spec(tmp_path, text)


def test_shipped_vetoes_on_real_sentences():
    spec = load_relations_spec(RELATIONS, load_entity_types(ENTITIES))
    lab = RelationLabeller(spec)
    # open nomenclature (claybourn2019): the species after aff. is not identified as it
    s = _sentence("Pelagiella aff. P. subangulata occurring in the Montenegro Member.",
                  [("P. subangulata", "TAXON"), ("Montenegro Member", "STRAT")])
    assert "veto.open_nomenclature" in lab.label_sentence(s)[0].rules
    # a place that belongs to a nearer taxon (peng2009 style)
    s = _sentence("Xianfengella prima is known from Yunnan, and Anabarella plana from Siberia.",
                  [("Xianfengella prima", "TAXON"), ("Yunnan", "LOC"), ("Anabarella plana", "TAXON"), ("Siberia", "LOC")])
    rules = {(e.subj.text, e.obj.text): e.rules for e in lab.label_sentence(s)}
    assert "veto.other_taxon_first" in rules[("Xianfengella prima", "Siberia")]
    assert not any(r.startswith("veto.") for r in rules[("Anabarella plana", "Siberia")])
    # a genus entry's type species and a bracketed synonym share the genus's occurrence (claybourn2019)
    s = _sentence("Genus Pelagiella Matthew, 1895 Type species.—Cyrtolites atlanticus Matthew, 1894 by original "
                  "designation, from the St. John Group of New Brunswick.",
                  [("Pelagiella", "TAXON"), ("Cyrtolites atlanticus", "TAXON"), ("St. John Group", "STRAT")])
    rules = {(e.subj.text, e.obj.text): e.rules for e in lab.label_sentence(s)}
    assert "veto.other_taxon_first" not in rules[("Pelagiella", "St. John Group")]


# Real shapes: a row of the ICS2015 GSSP table as the mine stage reads it (its columns run
# together, no full stop), a prose sentence of peng2009, and prose cut by a page break (brasier1994).
TABLE_RUN = ("Berriasella jacobi Jurassic System Upper Jurassic Series candidate is Ammonite near base of zone of "
             "Boreal realm Scotland) candidates are Ammonite Cardioceras Redcliff Point redcliffense Horizon at base "
             "(Dorset, SW of the Cardioceras scarburgense Subzone Savouron (Quenstedtoceras mariae (Provence, SE "
             "Zone) France) Middle Jurassic Series")
PROSE = ("Lejopyge laevigata is known from the Huaqiao Formation in Hunan, South China, and from sections in "
         "Kazakhstan, Siberia, Australia and Sweden, where it marks the base of the Guzhangian Stage.")
CUT_PROSE = ("Until the late 1940s, it was assumed that the Precambrian was without fossils and that the base of "
             "the Cambrian was marked")
SHAPED = SMALL + """  - id: veto.run
    shape: {min_tokens: 20, terminated: false, min_capital_share: 0.3}
    exclude: true
  - id: veto.numbers
    shape: {min_tokens: 3, min_digit_share: 0.5}
  - id: veto.few_function_words
    shape: {min_tokens: 5, max_function_share: 0.1, function_words: [the, of, and, in, from, is]}
"""


def test_text_shape_vetoes_fire_on_the_sentence_text_of_any_record(tmp_path):
    spec = _spec(tmp_path, SHAPED)
    table = _sentence(TABLE_RUN, [("Cardioceras scarburgense", "TAXON"), ("France", "LOC")])
    run = {(e.subj.text, e.obj.text): e.rules for e in RelationLabeller(spec).label_sentence(table, keep_excluded=True)}
    assert "veto.run" in run[("Cardioceras scarburgense", "France")]
    for text, names in [(PROSE, [("Lejopyge laevigata", "TAXON"), ("Siberia", "LOC")]),
                        (CUT_PROSE, [("Precambrian", "TAXON"), ("Cambrian", "LOC")])]:
        assert "veto.run" not in _rules(spec, _sentence(text, names))[(names[0][0], names[1][0])]
    # a full stop inside closing quotes still ends a sentence; a short unterminated heading is no run
    from stages.patterns import TextShape
    assert TextShape().measure("referred to only as a ‘euomphalid mollusk.’")["terminated"]
    assert not TextShape(min_tokens=20, terminated=False).holds("Mollusks from the upper Shackleton Limestone")
    nums = _rules(spec, _sentence("Xus 12 34 56 78 Utah", [("Xus", "TAXON"), ("Utah", "LOC")]))
    assert set(nums[("Xus", "Utah")]) >= {"veto.numbers", "veto.few_function_words"}
    prose = _rules(spec, _sentence("Xus is from the Utah of 1990.", [("Xus", "TAXON"), ("Utah", "LOC")]))
    assert not {"veto.numbers", "veto.few_function_words"} & set(prose[("Xus", "Utah")])


def test_excluded_pairs_are_not_annotated_and_every_decision_says_no_relation(tmp_path):
    """Gold records carry no `kind`: the shape alone excludes their table text, from training (the
    labeller makes no candidate there) and from every labeller but co-occurrence in the gold table."""
    spec = _spec(tmp_path, SHAPED)
    lab = RelationLabeller(spec)
    table = _sentence(TABLE_RUN.replace("scarburgense Subzone", "scarburgense from France"), [("Cardioceras scarburgense", "TAXON"),
                                                                      ("France", "LOC")])
    prose = _sentence("Xus from Utah.", [("Xus", "TAXON"), ("Utah", "LOC")], sent_id=1)
    assert lab.label_sentence(table) == [] and lab.stats.excluded == {"veto.run": 1}  # no candidate there
    exs = lab.label_sentence(table, keep_excluded=True) + lab.label_sentence(prose)
    assert [e.text for e in exs] == [table.text, prose.text] and lab.stats.excluded == {"veto.run": 1}
    assert exs[0].label == "found_at" and "veto.run" in exs[0].rules  # the pattern fired; the pair is still excluded
    gold = [Example("t", "d", 0, table.text, *(Span(m.start, m.end, m.type, m.text) for m in table.mentions),
                    NO_RELATION, origin="gold"),
            Example("p", "d", 1, prose.text, *(Span(m.start, m.end, m.type, m.text) for m in prose.mentions),
                    "found_at", origin="gold")]
    rules = G.RuleLabellers(lab, {n: list(r.args) for n, r in spec.relations.items()})
    preds, extra = G.label_gold(gold, rules, lambda exs: (["found_at"] * len(exs), [0.9] * len(exs)))
    assert preds["model"] == [NO_RELATION, "found_at"] and preds["patterns"] == [NO_RELATION, "found_at"]
    assert preds["cooccurrence"] == ["found_at", "found_at"] and extra["not_prose"] == [True, False]


def test_shipped_age_of_another_unit_veto_on_real_lists():
    """jones2025 / claybourn2019: an age in brackets belongs to the unit before the bracket; a synonym
    and the formation a member belongs to share it."""
    spec = load_relations_spec(RELATIONS, load_entity_types(ENTITIES))
    lab = RelationLabeller(spec)
    text = ("The study area includes major Cambrian formations such as the Huaqiao Formation (middle Cambrian "
            "carbonate), Kaili Formation (middle Cambrian), and Hsuchuang Formation (middle Cambrian).")
    names = [("Huaqiao Formation", "STRAT"), ("Cambrian", "CHRONO"), ("Kaili Formation", "STRAT"), ("Cambrian", "CHRONO")]
    s = _sentence(text, [("Cambrian", "CHRONO")] + names)
    rules = {(e.subj.start, e.obj.start): e.rules for e in lab.label_sentence(s)}
    huaqiao, kaili = s.mentions[1], s.mentions[3]
    own, kailis = s.mentions[2], s.mentions[4]
    assert "veto.age_of_another_unit" in rules[(kaili.start, own.start)]  # Huaqiao's age, seen from Kaili
    assert "veto.age_of_another_unit" in rules[(huaqiao.start, kailis.start)]  # Kaili's age, seen from Huaqiao
    assert "veto.age_of_another_unit" not in rules[(huaqiao.start, own.start)]
    member = _sentence("Galeaclavus from the Third Plains Creek Member of the Mernmerna Formation (Cambrian Series 2, "
                       "Stage 3) of South Australia.", [("Third Plains Creek Member", "STRAT"),
                                                       ("Mernmerna Formation", "STRAT"), ("Cambrian Series 2", "CHRONO")])
    rules = {(e.subj.text, e.obj.text): e.rules for e in lab.label_sentence(member)}
    assert "veto.age_of_another_unit" not in rules[("Third Plains Creek Member", "Cambrian Series 2")]


def test_shipped_shape_veto_on_real_table_runs():
    spec = load_relations_spec(RELATIONS, load_entity_types(ENTITIES))
    lab = RelationLabeller(spec)
    s = _sentence(TABLE_RUN, [("Cardioceras scarburgense", "TAXON"), ("France", "LOC")])
    assert lab.label_sentence(s) == [] and lab.excluded(lab.label_sentence(s, keep_excluded=True)[0].rules)
    prose = lab.label_sentence(_sentence(PROSE, [("Lejopyge laevigata", "TAXON"), ("Siberia", "LOC")]))
    assert prose and not any(lab.excluded(e.rules) for e in prose)
    run = next(v for v in spec.vetoes if v.id == "veto.unterminated_run")
    assert run.exclude and run.shape.holds(TABLE_RUN) and not run.shape.holds(CUT_PROSE)


# --- the label model ---------------------------------------------------------------------


def test_label_model_recovers_truth_better_than_any_single_source():
    """Synthetic votes with known accuracies: the posteriors beat the best source and the
    unvoted candidates take the class balance."""
    rng = random.Random(0)
    n = 3000
    truth = ["r" if rng.random() < 0.6 else NO_RELATION for _ in range(n)]
    spec = {"t1": ("r", 0.3, 0.02), "t2": ("r", 0.4, 0.05), "v1": (NO_RELATION, 0.5, 0.05),
            "v2": (NO_RELATION, 0.3, 0.1)}  # source: (class, P(fire | its class), P(fire | other))
    votes = []
    for y in truth:
        v = {}
        for s, (c, hit, miss) in spec.items():
            if rng.random() < (hit if y == c else miss):
                v[s] = c
        votes.append(v)
    allowed = [[NO_RELATION, "r"]] * n
    f = fit(votes, allowed, ["g"] * n, [set(spec)] * n, {s: c for s, (c, _, _) in spec.items()},
            [NO_RELATION, "r"], LabelModelParams(prior_strength=5))
    pred = [f.classes[int(k)] for k in f.posteriors.argmax(1)]
    acc = np.mean([p == t for p, t in zip(pred, truth)])
    assert acc > 0.75
    assert abs(f.pi["g"][1] - 0.6) < 0.1
    assert f.stats["v1"]["estimated_accuracy"] > 0.8 and f.stats["t1"]["coverage"] > 0
    # a class a candidate's types do not allow gets probability 0
    f2 = fit([{}], [[NO_RELATION]], ["g"], [set()], {"t1": "r"}, [NO_RELATION, "r"])
    assert f2.posteriors[0].tolist() == [1.0, 0.0]


def test_fixed_no_relation_prior_and_params_checks():
    votes = [{}] * 10
    f = fit(votes, [[NO_RELATION, "r"]] * 10, ["g"] * 10, [set()] * 10, {}, [NO_RELATION, "r"],
            LabelModelParams(no_relation_prior=0.3))
    assert f.pi["g"][0] == pytest.approx(0.3)
    assert f.posteriors[0][0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="label_model.prior_accuracy"):
        LabelModelParams(prior_accuracy=0.4).check()
    with pytest.raises(ValueError, match="no_relation_prior"):
        W.WeakParams(no_relation_prior=1.5).check()


def test_no_relation_prior_per_type_pair(tmp_path, caplog):
    """A share per type pair (either type order) fixes that pair's balance; the others are estimated."""
    rng = random.Random(3)
    groups = ["LOC-TAXON"] * 40 + ["CHRONO-STRAT"] * 40
    votes = [{"t": "r"} if rng.random() < 0.5 else {} for _ in groups]
    f = fit(votes, [[NO_RELATION, "r"]] * 80, groups, [{"t"}] * 80, {"t": "r"}, [NO_RELATION, "r"],
            LabelModelParams(no_relation_prior={"TAXON-LOC": 0.2}))
    assert f.pi["LOC-TAXON"][0] == pytest.approx(0.2)
    assert f.pi["CHRONO-STRAT"][0] != pytest.approx(0.2)
    unvoted = [i for i, v in enumerate(votes) if not v]
    assert f.posteriors[unvoted[0]][0] != f.posteriors[[i for i in unvoted if i >= 40][0]][0]
    for bad, msg in [({"LOC": 0.2}, "must name a type pair"), ({"LOC-TAXON": 1.0}, "share in \\(0, 1\\)")]:
        with pytest.raises(ValueError, match=msg):
            W.WeakParams(no_relation_prior=bad).check()
    spec = _spec(tmp_path)
    with caplog.at_level("WARNING"):
        W.check_prior_pairs(W.WeakParams(no_relation_prior={"LOC-TAXON": 0.3, "CHRONO-LOC": 0.5}), spec)
    assert "'CHRONO-LOC'" in caplog.text and "fix:" in caplog.text and "'LOC-TAXON'" not in caplog.text


def test_subj_first_narrows_a_veto_to_one_text_order(tmp_path):
    spec = _spec(tmp_path, SMALL + """  - id: veto.taxon_then_other
    relations: [found_at]
    subj_first: true
    pattern: '<TAXON>'
""")
    first = _rules(spec, _sentence("Xus and Yus from Utah.", [("Xus", "TAXON"), ("Yus", "TAXON"), ("Utah", "LOC")]))
    assert "veto.taxon_then_other" in first[("Xus", "Utah")]
    after = _rules(spec, _sentence("Utah yields Xus and Yus.", [("Utah", "LOC"), ("Xus", "TAXON"), ("Yus", "TAXON")]))
    assert "veto.taxon_then_other" not in after[("Yus", "Utah")] and "veto.inner_taxon" in after[("Yus", "Utah")]


def test_curator_sample_is_well_formed_and_outside_the_gold():
    """tests/data/relations_curator.jsonl: spans match their text, labels are the relations their
    types allow, every pair's mentions are among its sentence's, and no pair is from a gold paper."""
    import json

    spec = load_relations_spec(RELATIONS, load_entity_types(ENTITIES))
    gold_papers = ("babcock2007", "peng2012", "ICS2015", "brasier1994", "cohen2013")
    recs = [json.loads(x) for x in (ROOT / "tests/data/relations_curator.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(recs) == 150 and len({r["id"] for r in recs}) == 150
    for r in recs:
        assert not r["doc_id"].startswith(gold_papers), r["id"]
        ms = {(m["start"], m["end"], m["type"]) for m in r["mentions"]}
        for sp in (r["subj"], r["obj"]):
            assert r["text"][sp["start"]:sp["end"]] == sp["text"] and (sp["start"], sp["end"], sp["type"]) in ms
        pair = (r["subj"]["type"], r["obj"]["type"])
        assert r["label"] == NO_RELATION or pair in spec.relations[r["label"]].args, r["id"]


def test_a_source_is_never_evidence_against_its_own_class():
    """A source that fires more often on the other class than on its own (as the consistency
    source did beside the vetoes) is held to uninformative: its vote never lowers its class."""
    rng = random.Random(1)
    n = 2000
    truth = ["r" if rng.random() < 0.5 else NO_RELATION for _ in range(n)]
    spec = {"t": ("r", 0.4, 0.02), "v": (NO_RELATION, 0.6, 0.05), "bad": ("r", 0.1, 0.4)}
    votes = []
    for y in truth:
        votes.append({s: c for s, (c, hit, miss) in spec.items() if rng.random() < (hit if y == c else miss)})
    f = fit(votes, [[NO_RELATION, "r"]] * n, ["g"] * n, [set(spec)] * n, {s: c for s, (c, _, _) in spec.items()},
            [NO_RELATION, "r"], LabelModelParams())
    for j, s in enumerate(f.sources):
        assert f.beta[j, f.source_class[j]] >= f.beta[j].max() - 1e-12, s
    j = f.sources.index("bad")
    assert f.beta[j, 0] == pytest.approx(f.beta[j, 1])
    alone = [i for i, v in enumerate(votes) if set(v) == {"bad"}]
    none = [i for i, v in enumerate(votes) if not v]
    assert f.posteriors[alone[0], 1] == pytest.approx(f.posteriors[none[0], 1], abs=1e-6)


def _examples(spec, sentences):
    lab = RelationLabeller(spec)
    return [e for s in sentences for e in lab.label_sentence(s)]


def test_knowledge_and_consistency_vote(tmp_path):
    spec = _spec(tmp_path)
    kfile = tmp_path / "k.csv"
    kfile.write_text("subject,relation,object\nYus,found_at,Texas\n")
    knowledge = W.load_knowledge([str(tmp_path / "k.csv")], set(spec.relations))
    src = W.Sources(spec, knowledge, consistency=True)
    exs = _examples(spec, [
        _sentence("Xus from Utah is common.", [("Xus", "TAXON"), ("Utah", "LOC")], sent_id=0),
        _sentence("In Utah Xus is rare, and Yus lives in Texas.", [("Utah", "LOC"), ("Xus", "TAXON"), ("Yus", "TAXON"), ("Texas", "LOC")], sent_id=1),
    ])
    cons = src.templated_pairs(exs)
    v = {(e.sent_id, e.subj.text, e.obj.text): src.votes(e, cons) for e in exs}
    assert v[(0, "Xus", "Utah")] == {"found_at.from": "found_at"}
    assert v[(1, "Xus", "Utah")] == {"consistency:found_at": "found_at"}
    assert v[(1, "Yus", "Texas")] == {"knowledge:found_at": "found_at"}
    res = W.weak_label(exs, src, W.WeakParams())
    by = {(e.sent_id, e.subj.text, e.obj.text): e for e in res.examples}
    assert by[(0, "Xus", "Utah")].label == "found_at" and sum(by[(0, "Xus", "Utah")].probs.values()) == pytest.approx(1, abs=1e-3)
    assert set(by[(1, "Yus", "Texas")].probs) <= {NO_RELATION, "found_at"}
    kfile.write_text("Yus,lives_in,Texas\n")
    with pytest.raises(InputError, match=r"k.csv:1: relation 'lives_in'"):
        W.load_knowledge([str(kfile)], set(spec.relations))
    assert W.load_knowledge([str(tmp_path / "missing")], set(spec.relations)) == {}  # not built yet: skipped


def test_knowledge_built_from_a_gazetteer_table(tmp_path):
    from stages.knowledge import KnowledgeParams, build_rows, to_csv

    src = tmp_path / "formations.csv"
    src.write_text("LEX_CODE,UNIT_NAME,OLDEST_AGE_TRANS,YOUNGEST_AGE_TRANS\n"
                   "ABI,Abbotsbury Ironstone Formation,Kimmeridgian Age,Kimmeridgian Age\n"
                   "ADS,Ardnish Formation,Hettangian Age,Sinemurian Age\n")
    source = {"name": "t", "file": str(src), "subject": "UNIT_NAME", "relation": "assigned_to",
              "objects": ["OLDEST_AGE_TRANS", "YOUNGEST_AGE_TRANS"], "strip": " Age$", "variants": ["{name}", "{name} Stage"]}
    rows = build_rows(source)
    assert rows[:2] == [("Abbotsbury Ironstone Formation", "assigned_to", "Kimmeridgian"),
                        ("Abbotsbury Ironstone Formation", "assigned_to", "Kimmeridgian Stage")]
    assert len(rows) == 6  # Kimmeridgian twice is one fact
    out = tmp_path / "k" / "t.csv"
    out.parent.mkdir()
    out.write_text(to_csv(rows))
    facts = W.load_knowledge([str(out.parent)], {"assigned_to"})
    assert facts[("ardnish formation", "sinemurian stage")] == {"assigned_to"}
    with pytest.raises(InputError, match="UNIT"):
        build_rows({**source, "subject": "UNIT"})
    with pytest.raises(ValueError, match=r"knowledge.sources\[0\]: missing"):
        KnowledgeParams(sources=[{"name": "x"}]).check()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    shipped = KnowledgeParams(**params["knowledge"])
    shipped.check()
    assert shipped.out_dir == KnowledgeParams(sources=[]).out_dir


def test_fitted_model_round_trips_and_scores_new_pairs(tmp_path):
    spec = _spec(tmp_path)
    src = W.Sources(spec, {}, True)
    exs = _examples(spec, [_sentence(f"Xus from Utah{i}; Yus from Texas{i}.",
                                     [("Xus", "TAXON"), (f"Utah{i}", "LOC"), ("Yus", "TAXON"), (f"Texas{i}", "LOC")],
                                     sent_id=i) for i in range(10)])
    res = W.weak_label(exs, src, W.WeakParams())
    W.save_fitted(tmp_path / "lm.json", res.fitted)
    back = W.load_fitted(tmp_path / "lm.json")
    again = W.posteriors(back, src, exs)
    assert [max(p, key=p.get) for p in again] == [e.label for e in res.examples]
    labels = {(e.subj.text, e.obj.text[:4]): e.label for e in res.examples}
    assert labels[("Xus", "Utah")] == "found_at" and labels[("Xus", "Texa")] == NO_RELATION
    with pytest.raises(InputError, match="dvc repro relations"):
        W.load_fitted(tmp_path / "none.json")


# --- soft-label training targets -------------------------------------------------------------


def test_soft_targets_and_loss():
    import torch

    from stages.train import classification_loss, soft_loss, soft_targets

    sp = Span(0, 1, "TAXON", "X")
    a = Example("a", "d", 0, "X Y", sp, Span(2, 3, "LOC", "Y"), "found_at", probs={"found_at": 0.6, NO_RELATION: 0.3, "x": 0.1})
    b = Example("b", "d", 0, "X Y", sp, Span(2, 3, "LOC", "Y"), NO_RELATION)
    t = soft_targets([a, b], {NO_RELATION: 0, "found_at": 1})
    assert t[0].tolist() == pytest.approx([1 / 3, 2 / 3]) and t[1].tolist() == [1.0, 0.0]
    logits = torch.tensor([[0.2, 1.0], [2.0, -1.0]])
    labels = torch.tensor([1, 0])
    hard = classification_loss(logits, labels)
    assert soft_loss(logits, torch.eye(2)[labels], labels).item() == pytest.approx(hard.item(), abs=1e-6)
    w = torch.tensor([1.0, 3.0])
    assert soft_loss(logits, t, labels, w).item() != pytest.approx(soft_loss(logits, t, labels).item())


# --- the gold table -----------------------------------------------------------------------------


def _gold_records():
    text = "Xus from Utah; Yus from Texas."
    spans = {"Xus": Span(0, 3, "TAXON", "Xus"), "Utah": Span(9, 13, "LOC", "Utah"),
             "Yus": Span(15, 18, "TAXON", "Yus"), "Texas": Span(24, 29, "LOC", "Texas")}
    out = []
    for i, (s, o, lab) in enumerate([("Xus", "Utah", "found_at"), ("Xus", "Texas", NO_RELATION),
                                     ("Yus", "Texas", "found_at"), ("Yus", "Utah", NO_RELATION)]):
        out.append(Example(f"g{i}", "d", 0, text, spans[s], spans[o], lab, origin="gold"))
    out.append(Example("h", "e", 3, "Zus in Peru.", Span(0, 3, "TAXON", "Zus"), Span(7, 11, "LOC", "Peru"),
                       "found_at", origin="gold"))
    return out


def test_gold_table_recomputes_patterns_and_bootstraps_sentences(tmp_path):
    spec = _spec(tmp_path)
    gold = _gold_records()
    view = G.pattern_view(gold, RelationLabeller(spec))
    assert [v.label for v in view] == ["found_at", NO_RELATION, "found_at", NO_RELATION, NO_RELATION]
    assert "veto.semicolon" in view[1].rules  # the sentence's other gold spans are its mentions
    args = {n: r.args for n, r in spec.relations.items()}
    preds = {"patterns": [v.label for v in view], "cooccurrence": [G.cooccurrence_label(g, args) for g in gold]}
    assert preds["cooccurrence"] == ["found_at"] * 5
    res = G.score_gold_set(gold, preds, relation_scores, bootstrap=50, seed=1, seen_sentences={gold[0].text})
    pat = res["labellers"]["patterns"]
    assert (pat["micro_precision"], pat["micro_recall"]) == (1.0, pytest.approx(2 / 3, abs=1e-3))
    assert res["sentences"] == 2 and res["bootstrap"]["unit"] == "sentence"
    # resampling sentences: recall is 2/3, or 1 (sentence 1 alone twice), or 0 (Peru alone twice); never pair mixes
    ci = pat["ci95"]["micro_recall"]
    assert ci["low"] in (0.0, pytest.approx(2 / 3, abs=1e-3)) and ci["high"] in (1.0, pytest.approx(2 / 3, abs=1e-3))
    assert res["unseen"]["n"] == 1 and res["unseen"]["labellers"]["patterns"]["micro_recall"] == 0.0
    txt = G.markdown_table("toy", res)
    assert "patterns" in txt and "cooccurrence" in txt
    recs = G.prediction_records(gold, preds, {"rules": [v.rules for v in view]}, {gold[0].text})
    assert recs[1]["patterns"] == NO_RELATION and recs[0]["sentence_in_training"] and not recs[4]["sentence_in_training"]


def test_score_gold_sets_fills_every_column_and_notes_what_is_missing(tmp_path):
    """stages.gold.score_gold_sets, what evaluate writes: each set scored by the patterns, the
    label model, co-occurrence and the model's decision; a missing set, or a label model not
    built, is a note."""
    from stages.records import write_jsonl

    (tmp_path / "relations.yaml").write_text(SMALL)
    ents = ROOT / "data/patterns/entities.yaml"
    gold = _gold_records()
    write_jsonl(tmp_path / "g" / "a.jsonl", gold)
    decide = lambda exs: (["found_at"] * len(exs), [0.7] * len(exs))  # a made model: every pair related
    sets = {"g": str(tmp_path / "g"), "absent": str(tmp_path / "nope")}
    rules = G.load_rule_labellers(tmp_path / "relations.yaml", ents, tmp_path / "label_model.json")
    assert rules.fitted is None and "no label model" in rules.notes[0]
    results, notes = G.score_gold_sets(sets, rules, decide, relation_scores, 0, 1, None, "argmax")
    assert [r.name for r in results] == ["g"] and notes == [f"gold set absent: {tmp_path / 'nope'} not found, skipped"]
    res = results[0].result
    assert set(res["labellers"]) == {"patterns", "cooccurrence", "model"} and res["n"] == 5
    assert res["labellers"]["model"]["micro_precision"] == pytest.approx(3 / 5)
    assert len(results[0].records) == 5 and results[0].records[0]["model_confidence"] == 0.7
    assert "gold set g" in results[0].table

    # with a fitted label model its column and per-pair probabilities appear
    spec = _spec(tmp_path)
    sources = W.Sources(spec, {}, True, True)
    view = G.pattern_view(gold, RelationLabeller(spec))
    wp = W.WeakParams(knowledge=[])
    W.save_fitted(tmp_path / "label_model.json", W.weak_label(view, sources, wp).fitted, wp)
    rules = G.load_rule_labellers(tmp_path / "relations.yaml", ents, tmp_path / "label_model.json")
    results, _ = G.score_gold_sets({"g": str(tmp_path / "g")}, rules, decide, relation_scores, 0, 1, None, "argmax")
    assert "label_model" in results[0].result["labellers"] and "label_model_probs" in results[0].records[0]


# --- params.yaml agrees with the dataclasses --------------------------------------------------------


def test_new_params_agree_with_their_dataclasses():
    from stages.calibrate import CalibrateParams
    from stages.train import TrainParams

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, cls, keys in [
        ("label_model", W.WeakParams, None),
        ("train", TrainParams, ["soft_labels"]),
        ("evaluate", EvalParams, ["gold_sets", "label_model", "train_data"]),
        ("calibrate", CalibrateParams, ["gold_dir", "min_dev_support"]),
    ]:
        default = cls()
        for k in keys or params[section]:
            assert params[section][k] == getattr(default, k), f"{section}.{k}"


# --- calibration never switches a relation off ---------------------------------------------------


def test_calibration_keeps_argmax_where_a_threshold_would_switch_a_relation_off():
    from stages.calibrate import fit_calibration

    labels = [NO_RELATION, "r", "s"]
    allowed = {"r": [["A", "B"]], "s": [["A", "B"]]}
    rng = np.random.default_rng(0)
    logits, gold = [], []
    for i in range(60):  # s: 2 dev examples only; r: its dev positives score lower than its dev negatives
        y = "s" if i < 2 else ("r" if i % 3 == 0 else NO_RELATION)
        r_score = 0.2 if y == "r" else 1.5
        logits.append([1.0 + rng.normal(0, 0.01), r_score, 3.0 if y == "s" else -2.0])
        gold.append(y)
    cal = fit_calibration(np.array(logits), gold, labels, ["A"] * 60, ["B"] * 60, allowed,
                          cross_fit_repeats=0, min_dev_support=3)
    assert cal.thresholds["s"] is None
    assert any(w.startswith("s: 2 dev example") for w in cal.report["warnings"])
    probs = cal.proba(np.array(logits), ["A"] * 60, ["B"] * 60)
    decided, _ = cal.decide(probs)
    argmax = [labels[k] for k in probs.argmax(1)]
    for rel in ("r", "s"):
        assert (rel in argmax) <= (rel in decided), rel  # never switched off


def test_shipped_list_item_and_correspondence_vetoes_on_real_sentences():
    """peng2009 / claybourn2019: in a list of "the <unit> in <place>" items each place is its own
    item's, and a boundary corresponding to another places no taxon; a zone restricted to one
    place, or placed in a place that opens the sentence, keeps its relation."""
    spec = load_relations_spec(RELATIONS, load_entity_types(ENTITIES))
    lab = RelationLabeller(spec)

    new = {"veto.later_item_place", "veto.earlier_item_place", "veto.correspondence"}

    def vetoes_of(text, names):
        return {(e.subj.text, e.obj.text): new & set(e.rules) for e in lab.label_sentence(_sentence(text, names))}

    listed = vetoes_of("Faunal turnovers close to the base of the Guzhangian Stage are recognized as near the base "
                       "of the Boomerangian Stage in Australia, the base of the Aldanaspis Zone (polymerid "
                       "trilobites) in Siberia, and the base of the Paradoxides forchhammeri Zone in western Avalonia.",
                       [("Boomerangian Stage", "CHRONO"), ("Australia", "LOC"), ("Aldanaspis", "TAXON"),
                        ("Siberia", "LOC"), ("Paradoxides forchhammeri", "TAXON"), ("Avalonia", "LOC")])
    assert "veto.earlier_item_place" in listed[("Paradoxides forchhammeri", "Australia")]
    # the item right before the taxon's is left to the other sources: "In western Avalonia, the base
    # of the ... Zone" (below) reads the same between the two mentions
    assert not listed[("Aldanaspis", "Australia")]
    assert listed[("Aldanaspis", "Avalonia")] == {"veto.later_item_place"}
    assert not listed[("Aldanaspis", "Siberia")] and not listed[("Paradoxides forchhammeri", "Avalonia")]
    matched = vetoes_of("The base of the Boomerangian Stage in Australia corresponds to the base of the "
                        "L. laevigata Zone (Öpik, 1967).", [("Australia", "LOC"), ("L. laevigata", "TAXON")])
    assert "veto.correspondence" in matched[("L. laevigata", "Australia")]
    restricted = vetoes_of("Xianfengella, Yochelcionella, and Stenotheca are all restricted to the D. odyssei Zone "
                           "in South Australia, allowing for stronger correlation.",
                           [("Stenotheca", "TAXON"), ("D. odyssei", "TAXON"), ("South Australia", "LOC")])
    assert not restricted[("Stenotheca", "South Australia")]
    opening = vetoes_of("In western Avalonia, the base of the Paradoxides forchhammeri Zone is taken.",
                        [("Avalonia", "LOC"), ("Paradoxides forchhammeri", "TAXON")])
    assert not opening[("Paradoxides forchhammeri", "Avalonia")]


def test_shipped_superposition_veto_on_real_sentences():
    """peng2009: units in contact are not nested; a member of its formation keeps its relation."""
    lab = RelationLabeller(load_relations_spec(RELATIONS, load_entity_types(ENTITIES)))

    def rules_of(text, names):
        return [set(e.rules) for e in lab.label_sentence(_sentence(text, names))]

    assert "veto.superposition" in rules_of("The Huaqiao Formation rests on the Aoxi Formation.",
                                            [("Huaqiao Formation", "STRAT"), ("Aoxi Formation", "STRAT")])[0]
    assert "veto.superposition" in rules_of(
        "The section exposes the Aoxi Formation and more than 200 m of the overlying Huaqiao Formation.",
        [("Aoxi Formation", "STRAT"), ("Huaqiao Formation", "STRAT")])[0]
    member = rules_of("The Lower Broom Point Member of the Green Point Formation is exposed.",
                      [("Lower Broom Point Member", "STRAT"), ("Green Point Formation", "STRAT")])[0]
    assert not any(r.startswith("veto.") for r in member)


def test_shipped_vetoes_spare_references_in_brackets_and_a_zone_gloss():
    """A semicolon between references in brackets ends no statement, one before a caption's next
    item does; a group named in brackets after a zone is no other taxon; an ICS chart's header run
    is not annotated."""
    lab = RelationLabeller(load_relations_spec(RELATIONS, load_entity_types(ENTITIES)))

    def rules_of(text, names):
        return {(e.subj.text, e.obj.text): set(e.rules) for e in lab.label_sentence(_sentence(text, names),
                                                                                  keep_excluded=True)}

    cited = rules_of("Comparative work on sections near Paibi, Hunan Province (Peng and Robison, 2000; Peng et al., "
                     "2001a), shows that P. atavus first appears there.",
                     [("Hunan Province", "LOC"), ("P. atavus", "TAXON")])
    assert "veto.clause_break" not in cited[("P. atavus", "Hunan Province")]
    caption = rules_of("Rhabdinopora flabelliformis, Öland, Sweden, × 0.9; b–c), Rhabdinopora from Norway.",
                       [("Rhabdinopora flabelliformis", "TAXON"), ("Sweden", "LOC"), ("Norway", "LOC")])
    assert "veto.clause_break" in caption[("Rhabdinopora flabelliformis", "Norway")]
    gloss = rules_of("Faunal turnovers are recognized as the base of the Aldanaspis Zone (polymerid trilobites) in "
                     "Siberia.", [("Aldanaspis", "TAXON"), ("trilobites", "TAXON"), ("Siberia", "LOC")])
    assert "veto.other_taxon_first" not in gloss[("Aldanaspis", "Siberia")]
    other = rules_of("Xus is found with Yus in Siberia.", [("Xus", "TAXON"), ("Yus", "TAXON"), ("Siberia", "LOC")])
    assert "veto.other_taxon_first" in other[("Xus", "Siberia")]
    header = rules_of("Mississippian Subsystem Upper Mississippian Series candidates are Verkhnyaya (Urals) "
                      "Palmatolepis triangularis Coumiac Quarry.",
                      [("Palmatolepis triangularis", "TAXON"), ("Coumiac Quarry", "LOC")])
    assert "veto.chart_header" in header[("Palmatolepis triangularis", "Coumiac Quarry")]
    assert lab.excluded(header[("Palmatolepis triangularis", "Coumiac Quarry")])
    prose = rules_of("The base of the Cambrian System lies in Newfoundland, where Treptichnus pedum occurs.",
                     [("Newfoundland", "LOC"), ("Treptichnus pedum", "TAXON")])
    assert "veto.chart_header" not in next(iter(prose.values()))


def test_other_taxon_first_spares_a_zone_named_as_a_level():
    """peng2009's captions: a zone named as a level before the place chain is no other taxon's place;
    babcock2007's "close to the base of the ... Zone in South China": that place is the other zone's."""
    lab = RelationLabeller(load_relations_spec(RELATIONS, load_entity_types(ENTITIES)))

    def rules_of(text, names):
        return {(e.subj.text, e.obj.text): set(e.rules) for e in lab.label_sentence(_sentence(text, names))}

    level = rules_of("Observed stratigraphic distribution of trilobites in the Huaqiao Formation near the base of the "
                     "Lejopyge laevigata Zone, Luoyixi section, Guzhang County, Hunan Province, China.",
                     [("trilobites", "TAXON"), ("Lejopyge laevigata", "TAXON"), ("Hunan Province", "LOC")])
    assert "veto.other_taxon_first" not in level[("trilobites", "Hunan Province")]
    owned = rules_of("The base of the P. atavus Zone is close to the base of the Dorypyge richthofeni Zone in South "
                     "China.", [("P. atavus", "TAXON"), ("Dorypyge richthofeni", "TAXON"), ("South China", "LOC")])
    assert "veto.other_taxon_first" in owned[("P. atavus", "South China")]


# --- the label model's veto in the decision ---------------------------------------------------------


class _RelatesEverything:
    """A made model: every candidate gets the relation its types allow (the type prior, which is what
    a model trained on few list sentences does on one it has not seen)."""

    labels = [NO_RELATION, "assigned_to", "found_at", "occurs_in", "part_of"]

    def logits(self, examples, batch_size=32):
        return np.tile(np.array([0.0, 4.0, 4.0, 4.0, 4.0]), (len(examples), 1))


def test_label_model_veto_makes_no_relation_where_the_label_model_is_sure(tmp_path):
    """stages.weak.LabelModelVeto through stages.extract.Decider, on the shipped rules and a label
    model fitted on the curator sample's sentences: the pairs of peng2009's correlation list that a
    veto reads as another item's place become NO_RELATION; a pair nothing voted against keeps the
    model's relation; the calibration file carries the label model, and no veto leaves the model alone."""
    from stages.calibrate import Calibration, CalibrateParams, load_calibration, save_calibration
    from stages.extract import Decider, decision_veto
    from stages.patterns import schema_args
    from stages.records import read_records

    spec = load_relations_spec(RELATIONS, load_entity_types(ENTITIES))
    curator = read_records(ROOT / "tests/data/relations_curator.jsonl", Example)
    view = G.pattern_view(curator, RelationLabeller(spec))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["label_model"]
    wp = W.WeakParams(knowledge=[], no_relation_prior=params["no_relation_prior"])
    W.save_fitted(tmp_path / "label_model.json", W.weak_label(view, W.Sources(spec, {}, True, True), wp).fitted, wp)
    fitted = yaml.safe_load((tmp_path / "label_model.json").read_text())

    text = ("Faunal turnovers close to the base of the Guzhangian Stage are recognized as near the base of the "
            "Boomerangian Stage in Australia, the base of the Aldanaspis Zone (polymerid trilobites) in Siberia, and "
            "the base of the Paradoxides forchhammeri Zone in western Avalonia.")
    cands = RelationLabeller(spec).label_sentence(_sentence(text, [
        ("Boomerangian Stage", "CHRONO"), ("Australia", "LOC"), ("Aldanaspis", "TAXON"), ("Siberia", "LOC"),
        ("Paradoxides forchhammeri", "TAXON"), ("Avalonia", "LOC")]))
    allowed = schema_args(RELATIONS, ENTITIES)
    cal = Calibration(labels=_RelatesEverything.labels, veto_no_relation=0.5, label_model=fitted)
    save_calibration(tmp_path / "cal.json", cal)
    back = load_calibration(tmp_path / "cal.json")
    assert back.veto_no_relation == 0.5 and back.label_model["classes"] == fitted["classes"]
    veto = decision_veto(back, RELATIONS, ENTITIES)
    d = Decider(_RelatesEverything(), back, allowed, veto=veto).detail(cands)
    by_pair = {(e.subj.text, e.obj.text): (m, l) for e, m, l in zip(cands, d.model_labels, d.labels)}
    assert all(m != NO_RELATION for m, _ in by_pair.values() if m)  # the made model relates every pair
    assert by_pair[("Paradoxides forchhammeri", "Australia")] == ("found_at", NO_RELATION)  # earlier item's place
    assert by_pair[("Aldanaspis", "Avalonia")] == ("found_at", NO_RELATION)  # a later item's place
    assert by_pair[("Aldanaspis", "Siberia")] == ("found_at", "found_at")  # its own place: nothing against it
    q = veto.no_relation(cands)
    assert d.vetoed == sum(x >= 0.5 for x in q) > 0
    assert [l for l, x in zip(d.labels, q) if x >= 0.5] == [NO_RELATION] * d.vetoed
    assert Decider(_RelatesEverything(), back, allowed).detail(cands).labels == d.model_labels  # no veto given
    assert decision_veto(Calibration(labels=cal.labels, label_model=fitted), RELATIONS, ENTITIES) is None  # off
    # a candidate the relations stage labelled keeps the posterior it computed over the whole corpus
    # (consistency votes from the paper's other sentences), instead of one recomputed from this subset
    stored = [dataclasses.replace(e, probs={NO_RELATION: 0.2, "found_at": 0.8}) if i == 0 else e
              for i, e in enumerate(cands)]
    q_stored = veto.no_relation(stored)
    assert q_stored[0] == 0.2 and q_stored[1:] == q[1:]
    own = next(i for i, e in enumerate(cands) if (e.subj.text, e.obj.text) == ("Aldanaspis", "Siberia"))
    sure = [dataclasses.replace(e, probs={NO_RELATION: 0.9, "found_at": 0.1}) if i == own else e
            for i, e in enumerate(cands)]
    assert Decider(_RelatesEverything(), back, allowed, veto=veto).detail(sure).labels[own] == NO_RELATION
    assert "label-model veto" in Decider(_RelatesEverything(), back, allowed, veto=veto).name
    with pytest.raises(ValueError, match="calibrate.veto_no_relation"):
        CalibrateParams(veto_no_relation=0.3).check()

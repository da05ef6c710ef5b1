"""The learned entity tagger (stages/tagger.py): trained on a few pattern-annotated sentences,
it finds a name no pattern or list holds from the name's shape and its context."""
from __future__ import annotations

from pathlib import Path

import pytest

from stages import tagger as T
from stages.entities import EntitiesParams
from stages.errors import InputError
from stages.records import AnnotatedSentence, Mention

GENERA = ["Olenellus", "Paradoxides", "Elrathia", "Agnostus", "Redlichia", "Ptychagnostus", "Peronopsis",
          "Bathyuriscus", "Ogygopsis", "Asaphiscus", "Modocia", "Alokistocare"]
EPITHETS = ["gilberti", "harlani", "kingii", "pisiformis", "chinensis", "atavus", "interstricta",
            "fimbriatus", "klotzi", "wheeleri", "typicalis", "piochensis"]
PLACES = ["Utah", "Nevada", "Sweden", "Norway", "Wales", "Quebec", "Texas", "Yunnan", "Hunan", "Bohemia",
          "Siberia", "Greenland"]
TEMPLATES = ["Specimens of {t} were collected from {l} by the survey.",
             "We describe {t} from {l}, where it is common.",
             "The trilobite {t} occurs in {l} and nowhere else."]


def _sentence(i: int, template: str, taxon: str, place: str) -> AnnotatedSentence:
    text = template.format(t=taxon, l=place)
    ts, ls = text.index(taxon), text.index(place)
    return AnnotatedSentence("doc", i, 1, "body", text, "prose",
                             [Mention(ts, ts + len(taxon), taxon, "TAXON", "p"),
                              Mention(ls, ls + len(place), place, "LOC", "p")])


def _corpus() -> list[AnnotatedSentence]:
    out = []
    for i, (g, e, pl) in enumerate(zip(GENERA, EPITHETS, PLACES)):
        for j, tpl in enumerate(TEMPLATES):
            out.append(_sentence(3 * i + j, tpl, f"{g} {e}", PLACES[(i + j) % len(PLACES)]))
    out.append(AnnotatedSentence("doc", 999, 1, "body", "The section was measured again in the summer.", "prose", []))
    return out


def test_tagger_learns_an_unseen_name_from_shape_and_context(tmp_path):
    p = T.TaggerParams()
    seqs = T.training_sequences(_corpus(), p, ["references"])
    assert len(seqs) == 2 * 36 + 1  # each sentence with mentions twice (name dropout), one without
    info = T.train(seqs, p, tmp_path / "m.crfsuite")
    assert info["sentences"] == len(seqs) and (tmp_path / "m.crfsuite").stat().st_size > 0
    tagger = T.EntityTagger(tmp_path / "m.crfsuite", p)
    text = "Specimens of Zacanthoides spinosus were collected from Idaho by the survey."
    found = {(m.text, m.type) for m in tagger.tag(text)}
    assert ("Zacanthoides spinosus", "TAXON") in found
    assert ("Idaho", "LOC") in found
    assert not tagger.tag("The section was measured again in the summer.")
    # only the allowed types, and only confident mentions
    assert {m.type for m in T.EntityTagger(tmp_path / "m.crfsuite", T.TaggerParams(types=["LOC"])).tag(text)} == {"LOC"}


def test_union_keeps_the_pattern_spans_and_skips_sections(tmp_path):
    p = T.TaggerParams()
    T.train(T.training_sequences(_corpus(), p), p, tmp_path / "m.crfsuite")
    tagger = T.EntityTagger(tmp_path / "m.crfsuite", p)
    text = "We describe Zacanthoides spinosus from Idaho, where it is common."
    # a pattern mention with other boundaries than the tagger's wins
    pattern = Mention(text.index("Zacanthoides"), text.index("Zacanthoides") + len("Zacanthoides"), "Zacanthoides",
                      "TAXON", "taxon.genus")
    body = AnnotatedSentence("doc", 1, 1, "body", text, "prose", [pattern])
    refs = AnnotatedSentence("doc", 2, 9, "references", text, "prose", [])
    added = T.tag_sentences(tagger, [body, refs], ["references"])
    assert added == 1 and refs.mentions == []
    assert [(m.text, m.source) for m in body.mentions] == [("Zacanthoides", "taxon.genus"), ("Idaho", T.SOURCE)]


def test_bio_and_decode_round_trip():
    text = "Fossils of P. atavus occur near Oslo, U.S.A."
    ms = [Mention(11, 20, "P. atavus", "TAXON", "p"), Mention(32, 36, "Oslo", "LOC", "p"),
          Mention(38, 44, "U.S.A.", "LOC", "p")]
    toks = T.tokenize(text)
    got = [(m.text, m.type) for m, _ in T.decode(text, toks, T.bio(toks, ms))]
    assert got == [("P. atavus", "TAXON"), ("Oslo", "LOC"), ("U.S.A.", "LOC")]


def test_tagger_params_and_model_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="entities.tagger_min_confidence"):
        EntitiesParams(tagger_min_confidence=1.5).check()
    with pytest.raises(ValueError, match="entities.tagger_name_dropout"):
        EntitiesParams(tagger_name_dropout=-0.1).check()
    with pytest.raises(ValueError, match="entities.tagger_folds"):
        EntitiesParams(tagger_folds=1).check()
    with pytest.raises(InputError, match="entities.tagger: true"):
        T.EntityTagger(tmp_path / "missing.crfsuite")
    bad = tmp_path / "bad.crfsuite"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a CRFsuite model"):
        T.EntityTagger(bad)
    with pytest.raises(InputError, match="no pattern mention"):
        T.train(T.training_sequences([_corpus()[-1]], T.TaggerParams()), T.TaggerParams(), tmp_path / "m.crfsuite")


def test_folds_split_the_papers_so_none_is_tagged_by_a_model_trained_on_it():
    papers = [f"paper{i}" for i in range(7)]
    folds = T.assign_folds(papers, 2)
    assert set(folds) == set(papers) and sorted(set(folds.values())) == [0, 1]
    assert sorted(list(folds.values()).count(f) for f in (0, 1)) == [3, 4]
    assert T.assign_folds(reversed(papers), 2) == folds  # the order papers come in does not matter
    assert set(T.assign_folds(papers[:2], 5).values()) == {0, 1}  # never more folds than papers
    assert T.assign_folds(["only"], 2) == {"only": 0}
    plan = T.fold_plan([{"doc_id": d} for d in papers], lambda x: x["doc_id"], 2)
    for tagged, train in plan:  # each fold's model trains on every paper outside the fold
        assert {x["doc_id"] for x in tagged}.isdisjoint(x["doc_id"] for x in train)
        assert len(tagged) + len(train) == len(papers)
    assert sorted(x["doc_id"] for tagged, _ in plan for x in tagged) == sorted(papers)
    assert T.fold_plan(["only"], str, 2) == [(["only"], ["only"])]  # one paper: trained on itself


def test_entities_stage_with_the_tagger_cross_fits_caches_and_switches_off(tmp_path, monkeypatch, prefect_server):
    """The `entities` flow with entities.tagger on: two folds, each paper tagged by the model of
    the other paper, every pattern mention kept; a second run is all cached; off, the tagger
    folder says so and holds no model."""
    import json

    import yaml

    from flows.entities import run_entities
    from stages.records import Sentence, write_jsonl

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "gazetteers").symlink_to(root / "data" / "gazetteers")
    for d, sents in (("a", _corpus()[:18]), ("b", _corpus()[18:])):
        write_jsonl(tmp_path / "data" / "mined" / f"{d}.jsonl",
                    [Sentence(d, i, 1, "body", s.text) for i, s in enumerate(sents)])
    raw = yaml.safe_load((root / "params.yaml").read_text())
    ent = {**raw["entities"], "patterns": str(root / "data/patterns/entities.yaml"), "tagger": True}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"run": {**raw["run"], "task_runner": "threads", "cache_dir": str(tmp_path / "c")},
                                      "entities": ent}))
    first = run_entities(str(params))
    info = json.loads((tmp_path / "data/entity_tagger/tagger.json").read_text())
    assert info["enabled"] and [f["tagged_papers"] for f in info["folds"]] in (
        [["a"], ["b"]], [["b"], ["a"]])
    assert sorted(p.name for p in (tmp_path / "data/entity_tagger").iterdir()) == [
        "model-0.crfsuite", "model-1.crfsuite", "model.crfsuite", "tagger.json"]
    # the model for new papers (flows.extract) learned from both papers
    assert info["corpus_model"]["papers"] == 2 and info["corpus_model"]["training"]["sentences"] == sum(
        f["training"]["sentences"] for f in info["folds"])
    assert T.corpus_tagger(tmp_path / "data/entity_tagger", EntitiesParams().tagger_params()).tag(
        "Specimens of Zacanthoides spinosus were collected from Idaho by the survey.")
    assert first["tagger"]["added"] == info["added"] and first["tagger"]["tagged_papers"] == 2
    second = run_entities(str(params))
    assert second["tagger"]["cached_papers"] == 2 and all(f["training"]["cached"] for f in second["tagger"]["folds"])
    assert second["tagger"]["corpus_model"]["training"]["cached"]
    tagged = {f.stem: f.read_text() for f in (tmp_path / "data/entities").glob("*.jsonl")}

    ent["tagger"] = False
    params.write_text(yaml.safe_dump({"run": {**raw["run"], "task_runner": "threads", "cache_dir": str(tmp_path / "c")},
                                      "entities": ent}))
    off = run_entities(str(params))
    assert off["tagger"] == {"enabled": False}
    assert sorted(p.name for p in (tmp_path / "data/entity_tagger").iterdir()) == ["tagger.json"]
    for f in (tmp_path / "data/entities").glob("*.jsonl"):  # the patterns' mentions are all kept by the union
        with_tagger = [json.loads(x) for x in tagged[f.stem].splitlines()]
        for a, b in zip([json.loads(x) for x in f.read_text().splitlines()], with_tagger):
            assert all(m in b["mentions"] for m in a["mentions"])


def test_shape_rules_keep_out_authors_and_lower_case_words_and_skipped_sections(tmp_path):
    """A tagger name followed by a citation tail is an author; a lower-case find is not added;
    the tagger's own skip sections (front matter) get nothing; real places and taxa stay."""
    def m(text, name, typ="LOC"):
        i = text.index(name)
        return Mention(i, i + len(name), name, typ, T.SOURCE)

    for text, name in (("as shown by Lindholm 1991 for the zone", "Lindholm"), ("(Wrona, 1989; Wrona 1990)", "Wrona"),
                       ("Cohen, K.M., Finney, S.C., Gibbard", "Finney"), ("Cambroclavus absonus Conway Morris in Bengtson",
                                                                       "Conway Morris"),
                       ("from Y. gracilis Atkins and Peel, 2004", "Atkins")):
        assert not T.plausible(text, m(text, name)), name
    text = "carbonate turbidites near Wangcun, Hunan, and Llano Uplift, Texas, U.S.A., with Bolaspidella."
    assert not T.plausible(text, m(text, "turbidites", "TAXON"))
    for name, typ in (("Wangcun", "LOC"), ("Llano Uplift", "LOC"), ("Texas", "LOC"), ("Bolaspidella", "TAXON")):
        assert T.plausible(text, m(text, name, typ)), name

    p = T.TaggerParams(skip_sections=["front"])
    T.train(T.training_sequences(_corpus(), p), p, tmp_path / "m.crfsuite")
    tagger = T.EntityTagger(tmp_path / "m.crfsuite", p)
    text = "We describe Zacanthoides spinosus from Idaho, where it is common."
    front = AnnotatedSentence("doc", 1, 1, "front", text, "prose", [])
    body = AnnotatedSentence("doc", 2, 1, "body", text, "prose", [])
    assert T.tag_sentences(tagger, [front, body]) == len(body.mentions) > 0 and front.mentions == []


def test_genus_and_adjective_shaped_places_and_the_pattern_exclusions_keep_tagger_places_out(tmp_path):
    """Sentences of the sample corpus where the tagger read genera, adjectives, authors and
    institutions as places: a one-word LOC shaped like a genus or an adjective is none, "and
    Author in" and "Name, Z and" are citation tails, and the pattern file's exclusions
    (institutions) and stoplist hold for the tagger's mentions too."""
    from stages.entities import EntityAnnotator
    from stages.patterns import load_entity_spec

    def m(text, name, typ="LOC"):
        i = text.index(name)
        return Mention(i, i + len(name), name, typ, T.SOURCE)

    for text, name in (("Only Avicennia, however, occurred at polar latitudes", "Avicennia"),
                       ("earlier Cambrian taxa such as Redlichia and Eoredlichia from the early Cambrian", "Redlichia"),
                       ("polymerid trilobites Ptychoparella (incorporating Elrathina as a junior synonym)", "Elrathina"),
                       ("shorter caudal extension than in Fordilla, a taxon not reported", "Fordilla"),
                       ("the Antarctic specimens appear to conform", "Antarctic"),
                       ("to the Eoredlichia-Wutingaspis Zone of South China", "Eoredlichia-Wutingaspis"),
                       ("the Gonggairian Stage of South Korean regional usage", "South Korean"),
                       ("taxa Kulparina rostrata Conway Morris and Bengtson in Bengtson et al., 1990", "Conway Morris"),
                       ("(Ulakhan-Sulugur): Xing Y, Luo, H, Jiang, Z and Zhang, S (Meishucun)", "Jiang")):
        assert not T.plausible(text, m(text, name)), name
    # the same endings stay TAXON-shaped, and real places the tagger found stay
    assert T.plausible("Only Avicennia, however,", m("Only Avicennia, however,", "Avicennia", "TAXON"))
    for text, name in (("sections near Paibi and Wangcun, Hunan Province, China", "Paibi"),
                       ("south side of the Fengtan Reservoir, Youshui River", "Fengtan Reservoir"),
                       ("at Bartyrbay Ravine (Kazakhstan), Black Mountain (Australia)", "Bartyrbay Ravine"),
                       ("Mexico (Sonora), and the United States", "Sonora"),
                       ("aya Formation, Eastern Transbaikalia, figured by", "Eastern Transbaikalia")):
        assert T.plausible(text, m(text, name)), name

    root = Path(__file__).resolve().parents[1]
    ann = EntityAnnotator(load_entity_spec(root / "data/patterns/entities.yaml", base_dir=root))
    text = "topographic quadrangle map (U.S. Geological Survey, 1971, 1:24,000 scale)"
    assert not ann.keeps(text, m(text, "U.S."))
    text = "Professor of Geological Sciences at California State University at Long Beach"
    assert not ann.keeps(text, m(text, "California"))
    text = "units (e.g. Systems, Series, and Stages) on which"
    assert not ann.keeps(text, m(text, "Series"))
    text = "sections near Paibi and Wangcun, Hunan Province, China"
    assert ann.keeps(text, m(text, "Paibi"))

    p = T.TaggerParams()
    T.train(T.training_sequences(_corpus(), p), p, tmp_path / "m.crfsuite")
    tagger = T.EntityTagger(tmp_path / "m.crfsuite", p)
    text = "We describe Zacanthoides spinosus from Idaho, where it is common."
    kept = AnnotatedSentence("doc", 1, 1, "body", text, "prose", [])
    dropped = AnnotatedSentence("doc", 2, 1, "body", text, "prose", [])
    assert T.tag_sentences(tagger, [kept]) > 0 and any(x.text == "Idaho" for x in kept.mentions)
    T.tag_sentences(tagger, [dropped], keep=lambda t, x: x.type != "LOC")
    assert dropped.mentions and not any(x.type == "LOC" for x in dropped.mentions)

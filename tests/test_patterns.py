"""Pattern files: the default files load, bad files fail with file/pattern/fix, timeouts are skipped."""
from __future__ import annotations

from pathlib import Path

import pytest

from stages.entities import EntityAnnotator
from stages.errors import InputError
from stages.patterns import load_entity_spec, load_entity_types, load_relations_spec

ROOT = Path(__file__).resolve().parents[1]
ENTITIES = ROOT / "data" / "patterns" / "entities.yaml"
RELATIONS = ROOT / "data" / "patterns" / "relations.yaml"

MINI_ENTITIES = """
version: 1
types: {TAXON: {}, STRAT: {}}
patterns:
  - id: taxon.genus_sp
    type: TAXON
    regex: '[A-Z][a-z]+ sp\\.'
  - id: strat.fm
    type: STRAT
    regex: '[A-Z][a-z]+ Formation'
"""

MINI_RELATIONS = """
version: 1
relations:
  occurs_in:
    args: [[TAXON, STRAT]]
    templates:
      - id: occurs_in.from
        pattern: '{TAXON} from the {STRAT}'
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_default_pattern_files_load(gazetteers):
    spec = load_entity_spec(ENTITIES, base_dir=ROOT)
    assert set(spec.types) == {"TAXON", "STRAT", "CHRONO", "LOC"}
    assert {g.id for g in spec.gazetteers} >= {"ics", "macrostrat", "bgs_lexicon", "bgs_jurassic"}
    assert all(g.names for g in spec.gazetteers)
    rel = load_relations_spec(RELATIONS, load_entity_types(ENTITIES))
    assert set(rel.relations) == {"found_at", "occurs_in", "assigned_to", "part_of"}
    assert rel.relations["occurs_in"].args == [("TAXON", "STRAT")]


def test_gazetteer_filters_drop_codes_and_single_words(gazetteers):
    spec = load_entity_spec(ENTITIES, base_dir=ROOT)
    lex = next(g for g in spec.gazetteers if g.id == "bgs_lexicon")
    assert "SAIRB" not in lex.names  # lexicon codes dropped by drop_regex
    assert "Till" not in lex.names  # single words dropped by min_words
    assert "Clyde Plateau Volcanic Formation" in lex.names
    assert lex.dropped > 0
    ics = next(g for g in spec.gazetteers if g.id == "ics")
    assert "Late" not in ics.names and "Drumian" in ics.names


@pytest.mark.parametrize(
    "bad, where, expect",
    [
        (MINI_ENTITIES.replace("    regex: '[A-Z][a-z]+ Formation'", "    regx: 'x'"), "strat.fm", "unknown key"),
        (MINI_ENTITIES.replace("type: STRAT\n    regex", "type: ROCK\n    regex"), "strat.fm", "unknown entity type 'ROCK'"),
        (MINI_ENTITIES.replace("Formation'", "Formation('"), "strat.fm", "does not compile"),
        (MINI_ENTITIES + "colour: red\n", "top level", "unknown key"),
        (MINI_ENTITIES + "propagation:\n  - id: taxon.genus\n    type: TAXON\n    from: [taxon.binomial]\n",
         "taxon.genus", "no pattern or gazetteer id"),
        (MINI_ENTITIES + "propagation:\n  - id: taxon.genus\n    type: TAXON\n    from: [taxon.genus_sp]\n    take: '('\n",
         "taxon.genus", "does not compile"),
    ],
)
def test_entity_file_errors_name_file_pattern_and_fix(tmp_path, bad, where, expect):
    path = _write(tmp_path, "entities.yaml", bad)
    with pytest.raises(InputError) as err:
        load_entity_spec(path, base_dir=tmp_path)
    msg = str(err.value)
    assert str(path) in msg and where in msg and expect in msg and "fix:" in msg


@pytest.mark.parametrize(
    "bad, where, expect",
    [
        (MINI_RELATIONS.replace("{STRAT}", "{ROCK}"), "occurs_in.from", "slot {ROCK} names a type the schema lacks"),
        (MINI_RELATIONS.replace("args: [[TAXON, STRAT]]", "args: [[TAXON, LOC]]"), "occurs_in", "unknown entity type 'LOC'"),
        (MINI_RELATIONS.replace("from the", "from (the"), "occurs_in.from", "does not compile"),
        (MINI_RELATIONS.replace("        pattern:", "        patern:"), "occurs_in.from", "unknown key"),
        (MINI_RELATIONS.replace("{TAXON} from the {STRAT}", "{TAXON} from the"), "occurs_in.from", "exactly two typed slots"),
        (MINI_RELATIONS.replace("{TAXON} from the {STRAT}", "{STRAT} from the {STRAT}"), "occurs_in.from", "allows only"),
        (MINI_RELATIONS.replace("{TAXON} from", "{TAXON}{@authority} from"), "occurs_in.from", "unknown macro {@authority}"),
        (MINI_RELATIONS.replace("relations:", "macros: {gap: '{TAXON}'}\nrelations:"), "macro 'gap'", "typed slot"),
    ],
)
def test_relation_file_errors_name_file_pattern_and_fix(tmp_path, bad, where, expect):
    path = _write(tmp_path, "relations.yaml", bad)
    with pytest.raises(InputError) as err:
        load_relations_spec(path, {"TAXON", "STRAT"})
    msg = str(err.value)
    assert str(path) in msg and where in msg and expect in msg and "fix:" in msg


def test_missing_gazetteer_file_is_reported(tmp_path):
    text = MINI_ENTITIES + "gazetteers:\n  - id: gaz.rocks\n    type: STRAT\n    file: nowhere/rocks.tsv\n"
    path = _write(tmp_path, "entities.yaml", text)
    with pytest.raises(InputError, match=r"gaz\.rocks.*not found.*fix:"):
        load_entity_spec(path, base_dir=tmp_path)


def test_catastrophic_pattern_times_out_and_is_skipped(tmp_path):
    text = MINI_ENTITIES + "  - id: taxon.catastrophic\n    type: TAXON\n    regex: '(?:a|aa)+$'\n"
    spec = load_entity_spec(_write(tmp_path, "entities.yaml", text), base_dir=tmp_path)
    ann = EntityAnnotator(spec, regex_timeout_s=0.05)
    sentence = "Olenellus sp. from the Pioche Formation " + "a" * 40 + "!"
    mentions = ann.find(sentence)
    assert ann.stats.timeouts["taxon.catastrophic"] == 1
    assert "taxon.catastrophic" in ann.disabled
    # the other patterns still ran on the same sentence
    assert {(m.text, m.type) for m in mentions} == {("Olenellus sp.", "TAXON"), ("Pioche Formation", "STRAT")}
    # switched off: a second sentence does not pay the timeout again
    ann.find("b" + "a" * 40 + "!")
    assert ann.stats.timeouts["taxon.catastrophic"] == 1


def test_macros_expand_in_templates(tmp_path):
    text = MINI_RELATIONS.replace("relations:", "macros:\n  year: '\\d{4}'\n  authority: '[A-Z][a-z]+, {@year}'\nrelations:")
    text = text.replace("{TAXON} from the {STRAT}", "{TAXON}(?: {@authority})? from the {STRAT}")
    spec = load_relations_spec(_write(tmp_path, "relations.yaml", text), {"TAXON", "STRAT"})
    (tpl,) = spec.relations["occurs_in"].templates
    assert tpl.source == "{TAXON}(?: {@authority})? from the {STRAT}"  # the report shows what the curator wrote
    def fits(gap: str) -> bool:  # the gap between "Xus" and "Wheeler Formation"
        return tpl.middle_fits(f"Xus{gap}Wheeler Formation", 3, 3 + len(gap))
    assert fits(" Pei, 1985 from the ") and fits(" from the ")
    assert not fits(" Pei from the ")

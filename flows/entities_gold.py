"""Score the entity patterns against human labels: BGS stratigraphic NER (../shared/gold/bgs_geo_ner).

    python -m flows.entities_gold [--params params.yaml] [--gold PATH] [--limit N]

STRAT is scored against LEXICON and CHRONO against CHRONOSTRAT, as span
precision/recall/F1 with exact and partial (overlap) matching, on the gold
sentences (tokens joined by spaces). A second run without the two BGS
gazetteers (`bgs_lexicon`, `bgs_chrono`, the vocabularies the gold was labelled
with) shows what the general patterns and other lists achieve alone.
Writes reports/entities_gold.json. Goal: F1 >= 0.75 for each.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from prefect import flow, get_run_logger

from flows.common import cli_args, load_params, run_main
from flows.entities import EntitiesParams
from stages.entities import EntityAnnotator, score_gold
from stages.errors import InputError
from stages.patterns import load_entity_spec
from stages.records import atomic_write_json

DEFAULT_GOLD = "../shared/gold/bgs_geo_ner/bgs.3class.geo-training-data.txt"
TYPE_MAP = {"STRAT": "LEXICON", "CHRONO": "CHRONOSTRAT"}
ABLATED = ("bgs_lexicon", "bgs_chrono")
REPORT = "reports/entities_gold.json"


@flow(name="entities_gold", log_prints=True)
def entities_gold_flow(params_path: str = "params.yaml", gold: str = DEFAULT_GOLD, limit: int | None = None) -> dict:
    logger = get_run_logger()
    p: EntitiesParams = load_params(EntitiesParams, "entities", params_path)
    if not Path(gold).exists():
        raise InputError(f"{gold}: gold file not found; fix: put the shared data at ../shared or pass --gold")
    spec = load_entity_spec(p.patterns)
    t0 = time.perf_counter()
    full = score_gold(EntityAnnotator(spec, p.regex_timeout_s), gold, TYPE_MAP, limit)
    ablated_spec = dataclasses.replace(spec, gazetteers=[g for g in spec.gazetteers if g.id not in ABLATED])
    ablated = score_gold(EntityAnnotator(ablated_spec, p.regex_timeout_s), gold, TYPE_MAP, limit, max_errors=0)
    report = {
        "patterns": p.patterns,
        **full,
        "without_bgs_gazetteers": {"removed": list(ABLATED), "scores": ablated["scores"]},
        "goal_f1": 0.75,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(REPORT, report)
    for lab, sc in full["scores"].items():
        logger.info("%s: exact F1 %.3f (P %.3f R %.3f), partial F1 %.3f; without BGS lists exact F1 %.3f",
                    lab, sc["exact"]["f1"], sc["exact"]["precision"], sc["exact"]["recall"], sc["partial"]["f1"],
                    ablated["scores"][lab]["exact"]["f1"])
    return report


def main() -> None:
    args = cli_args("Score entity patterns against the BGS NER gold set.", [
        (["--gold"], {"default": DEFAULT_GOLD, "help": "token<TAB>label file (default: %(default)s)"}),
        (["--limit"], {"type": int, "default": None, "help": "only the first N sentences"}),
    ])
    run_main(entities_gold_flow, args.params, args.gold, args.limit)


if __name__ == "__main__":
    main()

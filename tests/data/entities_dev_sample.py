"""How the entity dev set's sentences were drawn (run once; the marks were then written by hand).

    python tests/data/entities_dev_sample.py > /tmp/entities_dev_sentences.jsonl
    python tests/data/entities_dev_sample.py --heldout > /tmp/entities_dev_heldout_sentences.jsonl

From data/mined (the `mine` stage's output on the sample papers), four papers that are not
among the five papers of the relation gold set: body and caption sentences outside the
front matter, references and acknowledgements, 30 to 600 characters long; 38 per paper
drawn with a fixed seed, in paper order. Printed: doc_id, sent_id, text (no mentions).

``--heldout``: the held-out part (entities_dev_heldout.jsonl), drawn the same way, 13
sentences from each of four other papers, marked after the #18 pattern rules were written
and before any pattern ran on them.

``--heldout-strat``: more held-out sentences for STRAT (13 sentences held 5 STRAT mentions):
from the two held-out papers on GSSP sections (cooper2001, peng2009) and one sample paper in
neither dev part (bergstrom2000, Sandbian GSSP), sentences not yet in
the held-out part that hold a rank word (Formation, Member, Group, Bed; capitalised, as
"fossil groups" and "Working Group" are no units, though "Working Group" still matches) or a
lithology word (shale, limestone...): a plain word list, not the entity patterns; 15 per
paper, seed 1819; marked like the rest, before any pattern ran on them.
"""
import re
import json
import random
import sys
from pathlib import Path

PAPERS = ["bergstrom2004_Episodes_FloianGSSP", "claybourn2019_JPaleontol_ShackletonLimestoneMollusks_CambrianSeries2",
          "hughes2021_JPaleontol_ArticulatedTrilobiteOntogeny", "jones2025_CambrianTrilobiteDiversityEasternAsia"]
SKIP = {"front", "references", "acknowledgements"}
PER_PAPER = 38
SEED = 18
if "--heldout" in sys.argv:
    PAPERS = ["cooper2001_Episodes_TremadocianGSSP", "eichenseer2023_ClimPast_manuscript_EoceneGradients",
              "peng2009_Episodes_GuzhangianGSSP", "wu2023_BiolLett_PanarthropodRelationships"]
    PER_PAPER = 13
    SEED = 1818

ROCK_WORD = None
if "--heldout-strat" in sys.argv:
    PAPERS = ["cooper2001_Episodes_TremadocianGSSP", "peng2009_Episodes_GuzhangianGSSP",
              "bergstrom2000_Episodes_SandbianGSSP"]
    PER_PAPER = 15
    SEED = 1819
    ROCK_WORD = re.compile(r"\b(Formation|Member|Group|Supergroup|Bed|formation|[Ss]hale|[Ll]imestone|[Ss]andstone|"
                           r"[Mm]udstone|[Ss]iltstone|[Dd]olomite|[Cc]onglomerate|[Mm]arl|[Cc]hert)s?\b")

root = Path(__file__).resolve().parents[2]
rng = random.Random(SEED)
taken = set()
if ROCK_WORD is not None:
    taken = {(r["doc_id"], r["text"]) for r in map(json.loads, open(root / "tests" / "data" / "entities_dev_heldout.jsonl",
                                                                   encoding="utf-8"))}
for doc in PAPERS:
    rows = [json.loads(line) for line in open(root / "data" / "mined" / f"{doc}.jsonl", encoding="utf-8")]
    pool = [r for r in rows if r["kind"] in ("body", "caption") and r["section"] not in SKIP
            and 30 <= len(r["text"]) <= 600 and (doc, r["text"]) not in taken
            and (ROCK_WORD is None or ROCK_WORD.search(r["text"]))]
    for r in sorted(rng.sample(pool, PER_PAPER), key=lambda r: r["sent_id"]):
        sys.stdout.write(json.dumps({"doc_id": r["doc_id"], "sent_id": r["sent_id"], "text": r["text"]},
                                    ensure_ascii=False) + "\n")

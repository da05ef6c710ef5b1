"""How the entity dev set's sentences were drawn (run once; the marks were then written by hand).

    python tests/data/entities_dev_sample.py > /tmp/entities_dev_sentences.jsonl
    python tests/data/entities_dev_sample.py --heldout > /tmp/entities_dev_heldout_sentences.jsonl
    python tests/data/entities_dev_sample.py --heldout-strat2 > /tmp/entities_dev_heldout2_sentences.jsonl
    python tests/data/entities_dev_sample.py --heldout-strat3 > /tmp/entities_dev_heldout3_sentences.jsonl

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

``--heldout-strat2``: a second blind STRAT part (entities_dev_heldout2.jsonl), drawn before any
rule for the first part's STRAT misses was written: sentences of the seven non-gold papers
whose pool is not empty, in neither earlier part, holding a rank word (capitalised Formation,
Member, Group, Supergroup, Bed/Beds) or a lithology word (a wider list than --heldout-strat's);
a cap per paper that favours the papers with no held-out lines (claybourn2019 13,
bergstrom2004 12, jones2025 10, hughes2021 1, and 3 each of bergstrom2000, cooper2001,
peng2009), and at most 4 lines per unit name (the capitalised word before a rank or lithology
word: "Shackleton" of "Shackleton Limestone"), so that no one unit fills the part; seed 1820.
A sentence sharing a 60-character stretch with a line of either earlier part (the mining now
splits some sentences otherwise) is left out.

``--heldout-strat3``: a third blind part (entities_dev_heldout3.jsonl), drawn after the rules
of the second round were written, to measure them on lines nobody read while writing them: the
same rock-word pool, in none of the three earlier parts (nor sharing a 60-character stretch
with one of their lines), and none of the lines the rule-writing searches showed (numbered and
lettered beds, "Phosphorite", a name before a lower-case rank, lithology or "succession" /
"contact" word, hyphenated pairs of names); caps claybourn2019 18, peng2009 4, cooper2001 4,
bergstrom2000 2, jones2025 2, at most 3 lines per unit name; seed 1821.
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

CAPS = None
LITHO = (r"[Ss]hale|[Ll]imestone|[Ss]andstone|[Mm]udstone|[Ss]iltstone|[Dd]olomite|[Dd]olostone|[Cc]onglomerate|"
         r"[Mm]arl|[Cc]hert|[Pp]hosphorite|[Qq]uartzite|[Tt]uff|[Ss]late|[Bb]reccia")
UNIT_NAME = re.compile(r"\b([A-Z][\w’'-]+) (?:Formation|Member|Group|Supergroup|Beds?|" + LITHO + r")s?\b")
if "--heldout-strat2" in sys.argv or "--heldout-strat3" in sys.argv:
    ROCK_WORD = re.compile(r"\b(Formation|Member|Group|Supergroup|Beds?|" + LITHO + r")s?\b")
if "--heldout-strat2" in sys.argv:
    CAPS = {"claybourn2019_JPaleontol_ShackletonLimestoneMollusks_CambrianSeries2": 13,
            "bergstrom2004_Episodes_FloianGSSP": 12, "jones2025_CambrianTrilobiteDiversityEasternAsia": 10,
            "hughes2021_JPaleontol_ArticulatedTrilobiteOntogeny": 1, "bergstrom2000_Episodes_SandbianGSSP": 3,
            "cooper2001_Episodes_TremadocianGSSP": 3, "peng2009_Episodes_GuzhangianGSSP": 3}
    PAPERS = list(CAPS)
    SEED = 1820
    UNIT_CAP = 4

READ = None
if "--heldout-strat3" in sys.argv:
    CAPS = {"claybourn2019_JPaleontol_ShackletonLimestoneMollusks_CambrianSeries2": 18,
            "peng2009_Episodes_GuzhangianGSSP": 4, "cooper2001_Episodes_TremadocianGSSP": 4,
            "bergstrom2000_Episodes_SandbianGSSP": 2, "jones2025_CambrianTrilobiteDiversityEasternAsia": 2}
    PAPERS = list(CAPS)
    SEED = 1821
    UNIT_CAP = 3
    READ = re.compile(r"\bBeds? \d|(?<![\w./-])[A-Z](?:/[A-Z])? beds?\b|[Pp]hosphorite|"
                      r"\b[A-Z][\w’'-]+ (?:formation|limestone|shale|member|group|sandstone|beds|bed|phosphorite|"
                      r"limestones|shales|sandstones|mudstones|strata|succession|contact|interval)\b|"
                      r"\b[A-Z][\w’'-]+[-–][A-Z][\w’'-]+\b")

root = Path(__file__).resolve().parents[2]
rng = random.Random(SEED)
taken = set()
if ROCK_WORD is not None:
    parts = ["entities_dev_heldout.jsonl"] + (["entities_dev.jsonl"] if CAPS else []) + \
        (["entities_dev_heldout2.jsonl"] if READ is not None else [])
    taken = {(r["doc_id"], r["text"]) for part in parts
             for r in map(json.loads, open(root / "tests" / "data" / part, encoding="utf-8"))}
units: dict[str, int] = {}


def in_a_part(doc: str, text: str) -> bool:
    """The text or a 60-character stretch of it is in a line of an earlier part (the mining now
    splits some sentences otherwise, so a line may hold another one's text)."""
    if (doc, text) in taken:
        return True
    if not CAPS:
        return False
    olds = [t for d, t in taken if d == doc]
    return any(text[i:i + 60] in t for i in range(0, max(1, len(text) - 60), 10) for t in olds)

for doc in PAPERS:
    rows = [json.loads(line) for line in open(root / "data" / "mined" / f"{doc}.jsonl", encoding="utf-8")]
    pool = [r for r in rows if r["kind"] in ("body", "caption") and r["section"] not in SKIP
            and 30 <= len(r["text"]) <= 600 and not in_a_part(doc, r["text"])
            and (READ is None or not READ.search(r["text"]))
            and (ROCK_WORD is None or ROCK_WORD.search(r["text"]))]
    if CAPS:
        picked = []
        for r in rng.sample(pool, len(pool)):
            names = set(UNIT_NAME.findall(r["text"]))
            if len(picked) < CAPS[doc] and all(units.get(n, 0) < UNIT_CAP for n in names):
                picked.append(r)
                for n in names:
                    units[n] = units.get(n, 0) + 1
    else:
        picked = rng.sample(pool, PER_PAPER)
    for r in sorted(picked, key=lambda r: r["sent_id"]):
        sys.stdout.write(json.dumps({"doc_id": r["doc_id"], "sent_id": r["sent_id"], "text": r["text"]},
                                    ensure_ascii=False) + "\n")

"""Made data shared by the model, train, evaluate and extract tests (and tests/ddp_train.py):
eight labelled sentences and a tiny BERT built from their words, saved like a hub model."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from stages.records import Example, Span

SENTENCES = [
    ("Olenus occurs in the Wheeler Formation of Utah.", "Olenus", "TAXON", "Wheeler Formation", "STRAT", "occurs_in"),
    ("Elrathia kingii is abundant in the Marjum Formation.", "Elrathia kingii", "TAXON", "Marjum Formation", "STRAT",
     "occurs_in"),
    ("Ptychagnostus atavus was found at House Range in Utah.", "Ptychagnostus atavus", "TAXON", "Utah", "LOC",
     "found_at"),
    ("Olenus was collected at Millard County near the Wheeler Formation.", "Olenus", "TAXON", "Millard County", "LOC",
     "found_at"),
    ("The Wheeler Formation is assigned to the Drumian Stage.", "Wheeler Formation", "STRAT", "Drumian Stage",
     "CHRONO", "assigned_to"),
    ("The Marjum Formation belongs to the Drumian Stage of the Cambrian.", "Marjum Formation", "STRAT",
     "Drumian Stage", "CHRONO", "assigned_to"),
    ("Utah and the Drumian Stage are discussed in the Wheeler Formation section.", "Utah", "LOC", "Drumian Stage",
     "CHRONO", "NO_RELATION"),
    ("Elrathia kingii and Utah appear in different chapters of the Marjum Formation volume.", "Elrathia kingii",
     "TAXON", "Marjum Formation", "STRAT", "NO_RELATION"),
]


def make_example(i: int, text: str, s: str, st: str, o: str, ot: str, label: str) -> Example:
    a = text.index(s)
    b = text.index(o, a + len(s)) if o in text[a + len(s):] else text.index(o)
    return Example(id=f"ex{i}", doc_id="doc", sent_id=i, text=text, subj=Span(a, a + len(s), st, s),
                   obj=Span(b, b + len(o), ot, o), label=label, rules=[f"rule_{label}"])


def made_examples(repeat: int = 1) -> list[Example]:
    return [make_example(i * 100 + j, *row) for i in range(repeat) for j, row in enumerate(SENTENCES)]


def make_tiny_bert(folder: Path, texts: list[str] | None = None, strip: str = ".,",
                   punct: tuple[str, ...] = (".", ","), max_words: int | None = None,
                   max_positions: int = 128) -> Path:
    """A 2-layer BERT with a word-level vocab of the given texts (words stripped of ``strip``,
    plus the ``punct`` tokens), saved like a hub model."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    texts = texts or [row[0] for row in SENTENCES]
    words = sorted({w.strip(strip).lower() for t in texts for w in t.split()} - {""})[:max_words]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *punct] + words
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                              "do_lower_case": True}))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=max_positions)
    BertModel(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(folder)  # fails here, not in the tests, when the folder is incomplete
    return folder

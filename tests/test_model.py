"""Entity markers, the truncation window, model-name resolution, and a tiny local BERT
(the hub-model path: a folder built here) that trains, saves and reloads identically."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stages import model as M
from stages.errors import InputError
from helpers import SENTENCES, made_examples, make_example, make_tiny_bert  # noqa: F401
from stages.records import Example, Span

@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


# --- markers -----------------------------------------------------------------------


def test_mark_text_wraps_both_entities_with_typed_markers():
    ex = make_example(0, *SENTENCES[0])
    marked = M.mark_text(ex, ["TAXON", "STRAT", "LOC"])
    assert marked == "[E1:TAXON] Olenus [/E1] occurs in the [E2:STRAT] Wheeler Formation [/E2] of Utah."


def test_mark_text_object_before_subject_and_unknown_type():
    text = "In the Wheeler Formation we found Olenus."
    ex = Example(id="x", doc_id="d", sent_id=0, text=text, subj=Span(34, 40, "TAXON", "Olenus"),
                 obj=Span(7, 24, "STRAT", "Wheeler Formation"), label="occurs_in")
    marked = M.mark_text(ex, ["TAXON"])  # STRAT unknown to this model -> fallback marker
    assert marked == "In the [E2:?] Wheeler Formation [/E2] we found [E1:TAXON] Olenus [/E1]."


def test_marker_tokens_cover_every_role_and_type():
    toks = M.marker_tokens(["STRAT", "TAXON"])
    assert {"[E1:STRAT]", "[E1:TAXON]", "[E2:STRAT]", "[E2:TAXON]", "[/E1]", "[/E2]"} <= set(toks)
    assert M.entity_types_of(made_examples()) == ["CHRONO", "LOC", "STRAT", "TAXON"]


def test_window_centres_on_entities_and_keeps_far_apart_ones():
    ids = list(range(100))
    w = M.window(ids, [60, 62, 70, 72], 20)
    assert len(w) == 20 and {60, 62, 70, 72} <= set(w) and w == sorted(w)
    assert w[0] > 0  # the head was dropped, not the entities at the tail
    far = M.window(ids, [5, 7, 90, 92], 20)
    assert len(far) == 20 and {5, 7, 90, 92} <= set(far)


def test_truncation_keeps_markers_on_a_real_long_sentence():
    """A long sentence from the sample domain with both entities near its end, real tokenizer."""
    tok = M.build_tokenizer(M.resolve_model_path(M.DEFAULT_MODEL), ["TAXON", "STRAT"])
    text = ("The lower part of the succession, which consists of thin-bedded limestone and shale with "
            "abundant trace fossils, phosphatic brachiopods and rare echinoderm debris, was measured in "
            "several sections across the House Range, and there the agnostoid Ptychagnostus atavus occurs "
            "in the Wheeler Formation together with many other trilobites.")
    s, o = "Ptychagnostus atavus", "Wheeler Formation"
    ex = Example(id="long", doc_id="d", sent_id=0, text=text,
                 subj=Span(text.index(s), text.index(s) + len(s), "TAXON", s),
                 obj=Span(text.index(o), text.index(o) + len(o), "STRAT", o), label="occurs_in")
    enc = M.MarkerEncoder(tok, ["TAXON", "STRAT"], max_length=32).encode([ex])[0]
    toks = tok.convert_ids_to_tokens(enc.input_ids)
    assert len(toks) == 32 and toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    for m in ("[E1:TAXON]", "[/E1]", "[E2:STRAT]", "[/E2]"):
        assert m in toks
    assert toks[enc.e1] == "[E1:TAXON]" and toks[enc.e2] == "[E2:STRAT]"
    assert "succession" not in toks  # the head of the sentence went, not the entities
    full = M.MarkerEncoder(tok, ["TAXON", "STRAT"], max_length=128).encode([ex])[0]
    assert len(full.input_ids) > 32 and "succession" in tok.convert_ids_to_tokens(full.input_ids)


def test_collate_pads_to_longest_in_batch_only():
    items = [M.Encoded([1, 5, 6, 2], 1, 2), M.Encoded([1, 5, 2], 1, 1)]
    b = M.collate(items, pad_id=0, labels=[0, 1])
    assert b["input_ids"].shape == (2, 4)
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert b["labels"].tolist() == [0, 1]


# --- model names --------------------------------------------------------------------------


def test_resolve_model_path(tiny_bert):
    default = Path(M.resolve_model_path(M.DEFAULT_MODEL))
    assert (default / "config.json").exists()
    assert M.resolve_model_path(str(tiny_bert)) == str(tiny_bert.resolve())
    assert M.resolve_model_path("someorg/some-model") == "someorg/some-model"  # a hub id
    with pytest.raises(InputError, match="no such folder"):
        M.resolve_model_path("./no/such/model")


def test_hub_id_without_network_fails_clearly(monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here: fail at once instead of retrying
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="could not be fetched from the Hugging Face hub"):
        M.build_tokenizer(M.resolve_model_path("relmine-test/no-such-model"), ["TAXON"])


# --- tiny BERT: train, save, reload -----------------------------------------------------------


def test_tiny_bert_trains_saves_and_reloads_identically(tiny_bert, tmp_path):
    from stages.train import TrainParams, seed_everything, train_model

    train = made_examples(repeat=4)
    dev = made_examples()
    p = TrainParams(model=str(tiny_bert), out_dir=str(tmp_path / "model"), epochs=6, batch_size=8, lr=5e-3,
                    lora_r=4, lora_alpha=8, lora_target_modules=["query", "value", "dense"], warmup_ratio=0.0,
                    patience=10, log_every=1, max_length=48, device="cpu")
    logged: list[tuple[int, dict]] = []
    result = train_model(p, train, dev, log_fn=lambda step, m: logged.append((step, m)))
    losses = [m["train/loss"] for _, m in logged if "train/loss" in m]
    assert len(losses) >= 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # it learns
    folder = tmp_path / "model"
    for name in ("relmine.json", "adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"):
        assert (folder / name).exists(), name
    meta = json.loads((folder / "relmine.json").read_text())
    # the same model gives the same bytes (peft wrote this list in hash-seed order)
    targets = json.loads((folder / "adapter_config.json").read_text())["target_modules"]
    assert targets == sorted(targets) == ["dense", "query", "value"]
    assert meta["labels"] == sorted({e.label for e in train}) and meta["train_params"]["lr"] == 5e-3

    # the saved folder predicts what the in-memory model predicts
    trained = M.RelationClassifier(result.model, _tok(folder), M.read_meta(folder), device="cpu", dtype="float32")
    loaded = M.load_model(folder, device="cpu", dtype="float32")
    p1, p2 = trained.predict_proba(dev), loaded.predict_proba(dev)
    assert torch.allclose(p1, p2, atol=1e-5)
    assert loaded.predict(dev) == trained.predict(dev)

    # marker embeddings: trained (differ from their initial values) and restored on load
    types = meta["entity_types"]
    ids = M.marker_token_ids(loaded.tokenizer, types)
    seed_everything(p.seed)
    init = M.build_network(str(tiny_bert), M.build_tokenizer(str(tiny_bert), types), len(meta["labels"]))
    init_rows = init.encoder.get_input_embeddings().weight[ids]
    loaded_rows = loaded.model.encoder.get_input_embeddings().weight[ids]
    used = [i for i, t in enumerate(M.marker_tokens(types)) if t in {"[E1:TAXON]", "[E2:STRAT]", "[/E1]"}]
    assert not torch.allclose(init_rows[used], loaded_rows[used])
    trained_rows = _embedding_rows(result.model, ids)
    assert torch.allclose(trained_rows, loaded_rows, atol=1e-6)
    # an ordinary word's row was not touched (LoRA leaves the base embedding alone)
    word = loaded.tokenizer.convert_tokens_to_ids("olenus")
    assert torch.equal(init.encoder.get_input_embeddings().weight[word],
                       loaded.model.encoder.get_input_embeddings().weight[word])

    # int8 inference: every Linear is quantized, and the probabilities stay close to float32
    int8 = M.load_model(folder, device="cpu", dtype="int8")
    mods = list(int8.model.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in mods)
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in mods)
    p3 = int8.predict_proba(dev)
    assert torch.allclose(p3.sum(-1), torch.ones(len(dev)), atol=1e-4)
    assert (p3 - p1).abs().max() < 0.1

    # the GPU precisions, here under CPU autocast: bf16 (Ampere and later) and fp16 (older GPUs,
    # whose narrow range could overflow the attention mask) stay close to float32
    for dtype, want in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        half = M.load_model(folder, device="cpu", dtype=dtype)
        assert half.autocast == want
        p4 = half.predict_proba(dev)
        assert not torch.isnan(p4).any() and (p4 - p1).abs().max() < 0.05, dtype


def test_inference_dtype_is_validated():
    from stages.evaluate import EvalParams

    with pytest.raises(ValueError, match="dtype must be one of .*int8"):
        EvalParams(dtype="int4").check()


def _tok(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _embedding_rows(peft_model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """Effective embedding rows of a (not merged) peft model: run the embedding layer on the ids."""
    emb = peft_model.get_base_model().encoder.get_input_embeddings()
    with torch.no_grad():
        return emb(torch.tensor(ids))


def test_load_model_rejects_a_folder_without_a_model(tmp_path):
    with pytest.raises(InputError, match="not a relmine model folder"):
        M.load_model(tmp_path)


def _full_forward(net: M.MarkerClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference: every layer over every position, then the three read positions."""
    h = net.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    rows = torch.arange(h.size(0))
    return net.classifier(torch.cat([h[:, 0], h[rows, batch["e1_pos"]], h[rows, batch["e2_pos"]]], -1))


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_last_layer_at_read_positions_equals_the_full_forward(which, tiny_bert):
    """Outputs and LoRA gradients are those of the full forward, on padded batches of mixed length."""
    examples = made_examples()
    types = M.entity_types_of(examples)
    path = str(tiny_bert) if which == "tiny" else M.resolve_model_path(M.DEFAULT_MODEL)
    tok = M.build_tokenizer(path, types)
    torch.manual_seed(0)
    net = M.build_network(path, tok, 5, dropout=0.0)
    assert net.last_layer_at_read_positions
    batch = M.collate(M.MarkerEncoder(tok, types, 64).encode(examples), tok.pad_token_id)
    assert (batch["attention_mask"] == 0).any()  # padding is exercised
    net.eval()
    with torch.inference_mode():
        torch.testing.assert_close(net(**batch), _full_forward(net, batch), atol=1e-5, rtol=1e-4)

    model = M.add_lora(net, tok, types, r=4, alpha=8, dropout=0.0, target_modules=["query", "key", "value", "dense"])
    model.eval()  # no dropout: both passes are deterministic
    grads = []
    for forward in (lambda: model(**batch), lambda: _full_forward(model.base_model.model, batch)):
        model.zero_grad()
        forward().logsumexp(-1).sum().backward()
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        # every trainable parameter gets a gradient (multi-process DDP training requires it)
        assert all(p.grad is not None for _, p in trainable), [n for n, p in trainable if p.grad is None]
        grads.append({n: p.grad.clone() for n, p in trainable})
    assert grads[0].keys() == grads[1].keys() and any("lora_A" in n for n in grads[0])
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-3, msg=n)


def test_non_bert_encoders_run_the_full_forward():
    from transformers import DistilBertConfig, DistilBertModel

    enc = DistilBertModel(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32))
    net = M.MarkerClassifier(enc, 3)
    assert not net.last_layer_at_read_positions
    ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    out = net(input_ids=ids, attention_mask=(ids > 0).long(), e1_pos=torch.tensor([1, 1]), e2_pos=torch.tensor([3, 2]))
    assert out.shape == (2, 3)


def test_torch_threads_are_shared_among_local_processes(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(M, "cpu_count", lambda: 4)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        M.set_threads()
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("LOCAL_WORLD_SIZE")
        M.set_threads()
        assert torch.get_num_threads() == 4
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # set by the user: left alone
        M.set_threads()
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_a_checkpoint_stored_in_fp16_loads_as_float32_and_trains(tiny_bert, tmp_path):
    """Many hub models are saved in half precision; transformers 5 would keep that dtype, and
    the float32 head then failed on the encoder's fp16 states."""
    import shutil

    from transformers import BertModel

    half = tmp_path / "half"
    shutil.copytree(tiny_bert, half)
    BertModel.from_pretrained(half).half().save_pretrained(half)
    types = M.entity_types_of(made_examples())
    tok = M.build_tokenizer(str(half), types)
    net = M.build_network(str(half), tok, 3)
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    batch = M.collate(M.MarkerEncoder(tok, types, 64).encode(made_examples()), tok.pad_token_id)
    net(**batch).sum().backward()

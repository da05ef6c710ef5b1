"""Losses (focal, class weights), length-grouped batches, params validation, and the
imbalance options and full fine-tuning on a tiny local BERT."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stages import model as M
from stages.params import ParamsError, parse_params
from stages.train import (TrainParams, balanced_class_weights, classification_loss,
                          select_score, train_model)
from helpers import made_examples, make_tiny_bert


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def test_focal_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    labels = torch.tensor([0, 2])
    p0 = math.exp(2) / (math.exp(2) + 2)
    p1 = 1 / (1 + math.exp(0.5) + 1)
    ce = [-math.log(p0), -math.log(p1)]
    # gamma 0 is plain cross-entropy
    assert classification_loss(logits, labels) == pytest.approx(sum(ce) / 2, rel=1e-5)
    got = classification_loss(logits, labels, focal_gamma=2.0).item()
    want = ((1 - p0) ** 2 * ce[0] + (1 - p1) ** 2 * ce[1]) / 2
    assert got == pytest.approx(want, rel=1e-5)
    # the confident, correct example is down-weighted much more than the wrong one
    assert (1 - p0) ** 2 < (1 - p1) ** 2


def test_class_weights_balance_the_classes():
    y = [0] * 6 + [1] * 2 + [2]
    w = balanced_class_weights(y, 4)
    assert w.tolist() == pytest.approx([9 / 18, 9 / 6, 9 / 3, 1.0])
    logits = torch.randn(9, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor(y)
    per = F.cross_entropy(logits, labels, reduction="none")
    want = (per * w[labels]).sum() / w[labels].sum()
    assert classification_loss(logits, labels, weights=w).item() == pytest.approx(want.item(), rel=1e-5)
    # each class contributes the same total weight
    totals = [w[c].item() * y.count(c) for c in range(3)]
    assert max(totals) == pytest.approx(min(totals))
    # tempered: the square root of the balanced weights, so rare classes still weigh more, less extremely
    assert balanced_class_weights(y, 4, power=0.5).tolist() == pytest.approx([x ** 0.5 for x in w.tolist()])


def test_label_smoothing_is_applied():
    logits = torch.tensor([[4.0, 0.0]])
    labels = torch.tensor([0])
    assert classification_loss(logits, labels, label_smoothing=0.2) > classification_loss(logits, labels)


def test_length_grouped_batches_cover_all_and_cut_padding():
    rng = random.Random(0)
    lengths = [rng.randint(5, 120) for _ in range(1000)]
    batches = M.length_grouped_batches(lengths, 16, random.Random(1))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    order = list(range(1000))
    random.Random(1).shuffle(order)
    naive = sum(max(lengths[i] for i in order[s:s + 16]) * len(order[s:s + 16]) for s in range(0, 1000, 16))
    assert padded < 0.8 * naive


def test_the_dev_macro_f1_leaves_out_no_relation_and_macro_f1_all_does_not():
    from stages.evaluate import relation_scores

    gold = ["a", "a", "b", "NO_RELATION", "NO_RELATION"]
    pred = ["a", "b", "b", "NO_RELATION", "a"]
    # a: P 1/2 R 1/2 F 0.5; b: P 1/2 R 1 F 2/3; NO_RELATION: P 1 R 1/2 F 2/3
    s = relation_scores(gold, pred)
    assert s["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert s["macro_f1_all"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)


def test_params_are_validated():
    with pytest.raises(ParamsError, match="train.lr_rate"):
        parse_params(TrainParams, {"lr_rate": 0.1}, "train")
    with pytest.raises(ParamsError, match="imbalance"):
        parse_params(TrainParams, {"imbalance": "smote"}, "train")
    with pytest.raises(ParamsError, match="max_length"):
        parse_params(TrainParams, {"max_length": 4}, "train")


@pytest.mark.parametrize("imbalance,lora", [("resample", False), ("focal", True)])
def test_imbalance_options_and_full_finetune_train(tiny_bert, tmp_path, imbalance, lora):
    train = made_examples(repeat=3)
    p = TrainParams(model=str(tiny_bert), out_dir=str(tmp_path / "m"), epochs=4, batch_size=8,
                    lr=5e-3 if lora else 1e-3, lora=lora, lora_r=4, lora_alpha=8,
                    lora_target_modules=["query", "value"], imbalance=imbalance, warmup_ratio=0.0,
                    patience=10, log_every=1, device="cpu", max_train_examples=20)
    logged = []
    r = train_model(p, train, made_examples(), log_fn=lambda s, m: logged.append(m))
    assert r.train_samples == 4 * 20 and r.epochs_run == 4
    losses = [m["train/loss"] for m in logged if "train/loss" in m]
    assert sum(losses[-3:]) < sum(losses[:3])
    saved = sorted(x.name for x in (tmp_path / "m").iterdir())
    if lora:
        assert "adapter_model.safetensors" in saved and "encoder" not in saved
        assert r.trainable_params < r.total_params / 2
    else:
        assert "encoder" in saved and "head.safetensors" in saved
        assert r.trainable_params == r.total_params
    clf = M.load_model(tmp_path / "m", device="cpu", dtype="float32")
    probs = clf.predict_proba(made_examples())
    assert probs.shape == (8, len(r.labels)) and torch.allclose(probs.sum(-1), torch.ones(8))


def test_early_stopping_on_flat_dev_f1(tiny_bert, tmp_path):
    """A learning rate too small to change any prediction: dev F1 stays flat, training stops
    after ``patience`` epochs without gain and the first (best) epoch is kept."""
    p = TrainParams(model=str(tiny_bert), out_dir=str(tmp_path / "m"), epochs=6, patience=2, lr=1e-12,
                    batch_size=8, lora_target_modules=["query"], device="cpu", warmup_ratio=0.0)
    r = train_model(p, made_examples(repeat=2), made_examples())
    assert r.epochs_run == 3 and r.best_epoch == 1
    assert len({h["dev_macro_f1"] for h in r.history}) == 1


def test_select_by_counts_no_relation_where_the_positive_f1_does_not():
    """On weak dev labels most pairs are related: calling every pair related scores higher on the
    positive relations than a model that finds the vetoed pairs but misses two related pairs; the
    macro-F1 with NO_RELATION ranks them the other way. The loss is turned into a higher-is-better score."""
    from stages.evaluate import relation_scores

    gold = ["r"] * 8 + ["NO_RELATION"] * 2
    everything = ["r"] * 10
    learnt = ["r"] * 6 + ["NO_RELATION"] * 4
    s_all, s_learnt = relation_scores(gold, everything), relation_scores(gold, learnt)
    assert s_all["macro_f1"] > s_learnt["macro_f1"]
    assert s_all["macro_f1_all"] < s_learnt["macro_f1_all"]
    scores = {"positive_macro_f1": 0.9, "macro_f1_all": 0.6, "loss": 0.4}
    assert select_score(scores, "positive_macro_f1") == 0.9
    assert select_score(scores, "macro_f1_all") == 0.6
    assert select_score(scores, "loss") == -0.4
    assert select_score({"positive_macro_f1": 0.0}, "loss") == 0.0  # no dev split
    with pytest.raises(ParamsError, match="select_by"):
        parse_params(TrainParams, {"select_by": "accuracy"}, "train")


def test_select_by_loss_keeps_the_epoch_of_the_lowest_dev_loss(tiny_bert, tmp_path):
    p = TrainParams(model=str(tiny_bert), out_dir=str(tmp_path / "m"), epochs=4, patience=10, lr=5e-3,
                    batch_size=8, lora_r=4, lora_alpha=8, lora_target_modules=["query", "value"], device="cpu",
                    warmup_ratio=0.0, select_by="loss")
    seen: list[tuple[int, float]] = []  # on_epoch: each epoch's weights, ready for inference

    def on_epoch(epoch, clf):
        dev = made_examples()
        seen.append((epoch, F.cross_entropy(clf.logits(dev), torch.tensor([clf.labels.index(e.label)
                                                                           for e in dev])).item()))

    r = train_model(p, made_examples(repeat=2), made_examples(), on_epoch=on_epoch)
    losses = [h["dev_loss"] for h in r.history]
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    assert [round(x, 1) for _, x in seen] == [round(x, 1) for x in losses]  # (inference may run in bf16)
    assert len(losses) == 4 and all("dev_macro_f1_all" in h for h in r.history)
    assert r.best_epoch == 1 + losses.index(min(losses))
    # the saved model is that epoch's (LoRA merged on load moves the loss in the 4th decimal)
    clf = M.load_model(tmp_path / "m", device="cpu", dtype="float32")
    dev = made_examples()
    y = torch.tensor([r.labels.index(e.label) for e in dev])
    got = F.cross_entropy(clf.logits(dev), y).item()
    assert min(range(4), key=lambda i: abs(losses[i] - got)) == r.best_epoch - 1


def test_two_process_ddp_training_on_cpu(tiny_bert, tmp_path):
    """The multi-GPU path (accelerate over torch.distributed) with two CPU processes: each rank
    trains on its half of the batches, the ranks stay in step, rank 0 saves a loadable model.
    An unused parameter (BERT's pooler) made DDP fail here before it was removed."""
    import os
    import subprocess
    import sys

    out, results = tmp_path / "m", tmp_path / "results"
    results.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(__file__).parent / "ddp_train.py"), str(tiny_bert), str(out), str(results)],
        capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((results / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    # 11 batches of 4 per epoch, wrapped round to 12 so both ranks take 6 steps (an uneven
    # share made rank 0 wait forever on rank 1), over 2 epochs
    assert [r["train_samples"] for r in ranks] == [48, 48]
    assert ranks[0]["history"] == ranks[1]["history"]  # same weights on both ranks: same dev scores
    clf = M.load_model(out, device="cpu", dtype="float32")
    assert clf.predict_proba(made_examples()).shape == (8, len(clf.labels))


@pytest.mark.parametrize("bf16,expected", [(True, "bf16"), (False, "fp16")])
def test_cuda_trains_in_bf16_where_supported_else_fp16(monkeypatch, bf16, expected):
    """The precision choice alone (no GPU here): CUDA gets bf16 or fp16, CPU float32."""
    from stages.train import mixed_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert mixed_precision(torch.device("cuda")) == expected
    assert M.autocast_dtype(torch.device("cuda")) == (torch.bfloat16 if bf16 else torch.float16)
    assert mixed_precision(torch.device("cpu")) == "no"
    assert mixed_precision(torch.device("cuda"), "no") == "no"  # a choice in params wins over auto
    assert M.autocast_dtype(torch.device("cpu"), "float32") is None


def test_bf16_autocast_training_then_float32_in_the_same_process(tiny_bert, tmp_path):
    """The mixed-precision training path, on CPU (bf16 autocast; no GPU here): the loss falls, the
    saved weights are float32 and load. accelerate keeps one set-up per process: a second training
    in another precision failed ("AcceleratorState has already been initialized") before
    make_accelerator reset it. fp16 needs CUDA and says so."""
    from safetensors.torch import load_file

    def run(precision):
        logged = []
        p = TrainParams(model=str(tiny_bert), out_dir=str(tmp_path / precision), epochs=4, batch_size=8,
                        lr=5e-3, lora_r=4, lora_alpha=8, lora_target_modules=["query", "value"],
                        warmup_ratio=0.0, patience=10, log_every=1, device="cpu", max_train_examples=20,
                        mixed_precision=precision)
        r = train_model(p, made_examples(repeat=3), made_examples(), log_fn=lambda s, m: logged.append(m))
        return r, [m["train/loss"] for m in logged if "train/loss" in m]

    r16, loss16 = run("bf16")
    r32, loss32 = run("no")
    assert (r16.mixed_precision, r32.mixed_precision) == ("bf16", "no")
    assert sum(loss16[-3:]) < sum(loss16[:3])
    assert loss16 != loss32  # autocast was on: bf16 rounding changes the losses ...
    assert loss16 == pytest.approx(loss32, rel=0.05)  # ... a little
    adapter = load_file(tmp_path / "bf16" / "adapter_model.safetensors")
    assert {t.dtype for t in adapter.values()} == {torch.float32}
    clf = M.load_model(tmp_path / "bf16", device="cpu", dtype="float32")
    assert clf.predict_proba(made_examples()).shape == (8, len(r16.labels))
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        run("fp16")


def test_rank_share_gives_every_rank_the_same_number_of_batches():
    from stages.train import rank_share

    batches = [[i] for i in range(11)]
    shares = [rank_share(batches, r, 2) for r in (0, 1)]
    assert [len(x) for x in shares] == [6, 6]
    assert sorted(b[0] for x in shares for b in x) == [0, *range(11)]  # all once, batch 0 again
    assert rank_share(batches, 0, 1) == batches


# --- learning from the unlabelled pairs ----------------------------------------------------------


def _pu_examples() -> list:
    """A LOC-TAXON type pair the label model saw: 4 sure positives (a template fired), 2 sure
    negatives (vetoed), 4 unlabelled (no source fired: the type pair's balance); a gold pair and a
    STRAT-TAXON pair without probabilities train as usual."""
    from dataclasses import replace

    base = made_examples(repeat=2)
    loc = [e for e in base if e.subj.type == "TAXON" and e.obj.type == "LOC"]  # 4 pairs
    out = []
    for k, e in enumerate((loc * 3)[:10]):
        e = replace(e, id=f"pu{k}")
        if k < 4:
            out.append(replace(e, label="found_at", probs={"found_at": 0.99, "NO_RELATION": 0.01}))
        elif k < 6:
            out.append(replace(e, label="NO_RELATION", probs={"found_at": 0.02, "NO_RELATION": 0.98}))
        else:
            out.append(replace(e, label="found_at", probs={"found_at": 0.6, "NO_RELATION": 0.4}))
    out.append(replace(loc[0], id="gold0", origin="gold", label="NO_RELATION",
                       probs={"found_at": 0.6, "NO_RELATION": 0.4}))
    out.append(replace(base[0], id="plain0", probs=None))
    return out


def test_pu_plan_roles_priors_and_risk():
    """Roles per mode, the label model's prior (or the param's), the positives left in U, and the
    batch loss equal to the nnPU risk computed by hand."""
    from stages.train import ORDINARY, SURE_NEG, SURE_POS, UNLABELLED, pu_loss, pu_plan

    exs = _pu_examples()
    labels = ["NO_RELATION", "found_at", "occurs_in"]
    l2i = {l: i for i, l in enumerate(labels)}
    pu = pu_plan(exs, l2i, "pu")
    assert pu.role == [SURE_POS] * 4 + [UNLABELLED] * 6 + [ORDINARY, ORDINARY]
    info = pu.info["LOC-TAXON"]
    prior = (4 * 0.99 + 2 * 0.02 + 4 * 0.6) / 10  # the label model's mean P(found_at) over the type pair
    assert info["label_model_prior"] == pytest.approx(prior, abs=1e-4)
    assert info["prior_in_unlabelled"] == pytest.approx((prior * 10 - 4) / 6, abs=1e-4)
    pnu = pu_plan(exs, l2i, "pnu")
    assert pnu.role == [SURE_POS] * 4 + [SURE_NEG] * 2 + [UNLABELLED] * 4 + [ORDINARY, ORDINARY]
    fixed = pu_plan(exs, l2i, "pnu", priors={"LOC-TAXON": 0.7})
    assert fixed.info["LOC-TAXON"]["prior_in_unlabelled"] == pytest.approx((0.7 * 10 - 4) / 4)
    assert pu_plan(exs, l2i, "pu", min_sure=5).info == {}  # too few sure positives: trains as usual

    # the loss over every example at once, against the risk by hand
    torch.manual_seed(0)
    logits = torch.randn(len(exs), 3)
    lab = torch.tensor([l2i[e.label] for e in exs])
    logp = torch.log_softmax(logits, -1)
    lp, ln = -logp[:, 1], -logp[:, 0]
    n, pi_u = len(exs), fixed.info["LOC-TAXON"]["prior_in_unlabelled"]
    P, N, U = range(0, 4), range(4, 6), range(6, 10)
    mean = lambda v, idx: sum(v[i] for i in idx) / len(idx)
    neg = mean(ln, U) - pi_u * mean(ln, P)
    risk = (4 / n * mean(lp, P) + 2 / n * mean(ln, N) + 4 / n * (pi_u * mean(lp, P) + abs(neg))
            + (F.cross_entropy(logits[10:], lab[10:], reduction="sum")) / n)
    got = pu_loss(logits, lab, list(range(n)), fixed, 0, n, scale=1.0)
    assert got.item() == pytest.approx(risk.item(), rel=1e-5)


def test_pu_loss_reverses_a_negative_unlabelled_term():
    """The network fits every unlabelled pair as NO_RELATION far harder than the prior allows: the
    clamped term would go below zero; nnPU steps the other way (its gradient raises l- on U)."""
    from stages.train import pu_loss, pu_plan

    exs = _pu_examples()[:10]
    l2i = {"NO_RELATION": 0, "found_at": 1}
    plan = pu_plan(exs, l2i, "pu", priors={"LOC-TAXON": 0.9})
    logits = torch.zeros(10, 2)
    logits[:4] = torch.tensor([-3.0, 3.0])   # sure positives: found_at, so l- is large there
    logits[4:] = torch.tensor([6.0, -6.0])   # unlabelled: NO_RELATION, l- near 0
    logits.requires_grad_(True)
    lab = torch.tensor([1] * 4 + [0] * 6)
    loss = pu_loss(logits, lab, list(range(10)), plan, 0, 10, 1.0)
    loss.backward()
    # descending this loss lowers the unlabelled pairs' NO_RELATION logit (raises their l-)
    assert (logits.grad[4:, 0] > 0).all()


def test_pu_params_are_validated():
    with pytest.raises(ParamsError, match="train.unlabelled"):
        parse_params(TrainParams, {"unlabelled": "spy"}, "train")
    with pytest.raises(ParamsError, match="soft_labels"):
        parse_params(TrainParams, {"unlabelled": "pu", "soft_labels": True}, "train")
    with pytest.raises(ParamsError, match="pu_prior"):
        parse_params(TrainParams, {"unlabelled": "pnu", "soft_labels": False, "pu_prior": {"LOC-TAXON": 1.5}}, "train")
    with pytest.raises(ParamsError, match="pu_sure"):
        parse_params(TrainParams, {"pu_sure": 0.3}, "train")


def test_pnu_training_on_tiny_bert(tiny_bert, tmp_path):
    """The trainer runs the PU risk end to end: the plan is reported, the loss falls, and the dev
    PU risk is scored per epoch."""
    from stages.train import result_report

    train = _pu_examples() * 2
    p = TrainParams(model=str(tiny_bert), out_dir=str(tmp_path / "m"), epochs=4, batch_size=4, lr=5e-3,
                    lora_r=4, lora_alpha=8, lora_target_modules=["query", "value"], warmup_ratio=0.0,
                    patience=10, log_every=1, device="cpu", unlabelled="pnu", soft_labels=False)
    logged = []
    r = train_model(p, train, _pu_examples(), log_fn=lambda s, m: logged.append(m))
    # the epoch is chosen by the dev PU risk (the dev split has label-model probabilities)
    assert all("dev_pu_risk" in h for h in r.history)
    assert r.pu["LOC-TAXON"]["sure_positive"] == 8 and r.pu["LOC-TAXON"]["unlabelled"] == 8
    losses = [m["train/loss"] for m in logged if "train/loss" in m]
    assert sum(losses[-3:]) < sum(losses[:3])
    assert result_report(r, p)["pu"] == r.pu and result_report(r, p)["unlabelled"] == "pnu"

"""Fine-tune the relation classifier (LoRA or full) on Example records.

A plain torch loop (through ``accelerate`` for device placement, mixed precision and
multi-GPU): every example is encoded once, batches are grouped by length and padded
only to their longest item, the dev split is scored after each epoch (``train.select_by``: macro-F1
over the positive relations, macro-F1 with NO_RELATION as a class, or the dev loss; its PU risk
under ``train.unlabelled``) and training stops when it has not improved for ``patience`` epochs;
the best epoch's weights are saved. On weak labels the positive macro-F1 rewards a model that
calls every candidate related (most weak dev pairs are) and so keeps the first epoch, before the
model has learnt what the vetoes say; the scores that count NO_RELATION do not.

Weak labels are sure only where a rule fired; ``train.unlabelled`` (``pu`` / ``pnu``) learns the
other pairs as unlabelled with the non-negative PU risk, per type pair, with the label model's
class balance as the prior (``pu_plan``, ``pu_loss``): a hard label that calls every unvoted pair
related teaches the model that being unvoted means being related.

Multi-GPU: ``accelerate launch -m flows.train`` runs one process per GPU; each trains
on its share of the batches, all score the dev split identically, the main one saves.
"""
from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F

from .errors import InputError
from .params import INFER_BATCH_SIZE
from .records import NO_RELATION, Example
from . import model as M

log = logging.getLogger(__name__)

LogFn = Callable[[int, dict[str, float]], None]
SELECT_BY = ("positive_macro_f1", "macro_f1_all", "loss")


@dataclass
class TrainParams:
    train: str = "data/augmented/train.jsonl"
    dev: str = "data/split/dev.jsonl"
    out_dir: str = "models/relmine"
    report: str = "reports/train.json"
    live_dir: str = "dvclive"  # DVCLive training curves (dvc plots)
    model: str = M.DEFAULT_MODEL          # package name, hub id or local folder
    lora: bool = True                     # false: full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    head_dropout: float = 0.1
    max_length: int = 96
    batch_size: int = 16
    eval_batch_size: int = INFER_BATCH_SIZE
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    scheduler: Literal["linear", "cosine"] = "linear"
    warmup_ratio: float = 0.06
    epochs: int = 8
    patience: int = 2                     # epochs without a better dev score (select_by) before stopping (min 1)
    # what picks the epoch on the dev split: macro_f1_all (NO_RELATION counted as a class too),
    # positive_macro_f1 (over the positive relations only) or loss (dev cross-entropy against its
    # labels). On a weakly labelled dev split the positive score rewards calling every pair related,
    # and keeps the epoch before the model has learnt the label model's NO_RELATION (docs/weak_supervision.md)
    select_by: Literal["positive_macro_f1", "macro_f1_all", "loss"] = "macro_f1_all"
    label_smoothing: float = 0.0
    imbalance: Literal["none", "class_weights", "focal", "resample"] = "none"
    focal_gamma: float = 2.0
    class_weight_power: float = 0.5  # 1: fully balanced class weights; 0.5: square-root tempered
    seed: int = 13
    max_train_examples: int = 0           # 0 = all
    device: str = "auto"                  # auto | cpu | cuda
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on CUDA, none on CPU
    log_every: int = 20                   # optimizer steps between progress lines
    # true: fit the label model's class probabilities (Example.probs) where examples have them,
    # instead of their single label (the label model's doubt about a pair stays the model's doubt:
    # +0.015-0.02 gold F1 and +0.03 precision over hard labels, docs/weak_supervision.md); false, or
    # no example with probs (gold, SemEval): the hard labels
    soft_labels: bool = True
    # what the pairs no label source is sure about teach: none (their label model label, as any other);
    # pu: non-negative PU learning per type pair (the label model's sure positives are the labelled
    # positives, every other pair unlabelled); pnu: pu, and the label model's sure negatives
    # (vetoed pairs) stay labelled negatives
    unlabelled: Literal["none", "pu", "pnu"] = "none"
    pu_sure: float = 0.9  # a label model probability at least this high makes a pair labelled (sure)
    # type pair (e.g. LOC-TAXON) -> the share of its candidates that are related; a type pair not
    # named takes the label model's estimate (the mean probability of its relation over its pairs)
    pu_prior: dict[str, float] = field(default_factory=dict)

    def check(self) -> None:
        if self.max_length < 16:
            raise ValueError("max_length must be >= 16 (room for the four markers and context)")
        for name in ("batch_size", "eval_batch_size", "grad_accum", "epochs", "lora_r", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0 < self.lr < 1:
            raise ValueError("lr must be in (0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError("label_smoothing must be in [0, 1)")
        if self.patience < 0 or self.max_train_examples < 0 or self.focal_gamma < 0:
            raise ValueError("patience, max_train_examples and focal_gamma must be >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError("device must be auto, cpu or cuda")
        if self.select_by not in SELECT_BY:
            raise ValueError(f"train.select_by must be one of {', '.join(SELECT_BY)} (got {self.select_by!r}); "
                             "fix it in params.yaml")
        if self.unlabelled not in ("none", "pu", "pnu"):
            raise ValueError(f"train.unlabelled must be none, pu or pnu (got {self.unlabelled!r}); "
                             "fix it in params.yaml")
        if self.unlabelled != "none" and self.soft_labels:
            raise ValueError("train.unlabelled pu/pnu trains on the label model's sure pairs and learns the rest; "
                             "it does not combine with train.soft_labels: set soft_labels false or unlabelled none")
        if not 0.5 < self.pu_sure <= 1:
            raise ValueError(f"train.pu_sure must be in (0.5, 1] (got {self.pu_sure}); set e.g. 0.9")
        for k, v in (self.pu_prior or {}).items():
            if not isinstance(v, (int, float)) or not 0 < v < 1:
                raise ValueError(f"train.pu_prior[{k!r}] must be a share in (0, 1) (got {v!r}); "
                                 "fix it in params.yaml or remove the entry (the label model's estimate is used)")


# --- losses ----------------------------------------------------------------------------


def balanced_class_weights(label_ids: Sequence[int], num_labels: int, power: float = 1.0) -> torch.Tensor:
    """(n / (k * count)) ** power: with power 1 each class weighs as much in total; a power below 1
    tempers the weights (0.5: square root), since a class of 3 examples weighted x50 makes the model
    predict it everywhere. Unseen classes get weight 1."""
    counts = Counter(label_ids)
    n, k = len(label_ids), len(counts)
    return torch.tensor([(n / (k * counts[c])) ** power if counts[c] else 1.0 for c in range(num_labels)])


def soft_targets(examples: Sequence[Example], label2id: dict[str, int]) -> torch.Tensor:
    """One row per example: its label model probabilities over the model's labels (classes the
    model lacks dropped, the rest renormalised), or one-hot on its label when it has none."""
    t = torch.zeros((len(examples), len(label2id)))
    for i, e in enumerate(examples):
        probs = {k: v for k, v in (e.probs or {}).items() if k in label2id and v > 0}
        if probs:
            z = sum(probs.values())
            for k, v in probs.items():
                t[i, label2id[k]] = v / z
        else:
            t[i, label2id[e.label]] = 1.0
    return t


def soft_loss(logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against a target distribution, each example weighted by its label's class
    weight (normalised as the hard loss is)."""
    ce = -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(-1)
    if weights is not None:
        w = weights[labels]
        return (w * ce).sum() / w.sum()
    return ce.mean()


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,
                        label_smoothing: float = 0.0, focal_gamma: float = 0.0) -> torch.Tensor:
    """Cross-entropy, optionally class-weighted and/or focal: (1 - p_true)^gamma * CE.

    Weighted losses are normalised by the summed weights of the batch (as torch's
    weighted mean does), so the loss scale does not depend on the batch's class mix.
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, labels, weight=weights, label_smoothing=label_smoothing, reduction="none")
    if focal_gamma > 0:
        p_true = torch.softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
        ce = (1 - p_true).pow(focal_gamma) * ce
    if weights is not None:
        return ce.sum() / weights[labels].sum()
    return ce.mean()


# --- learning from the unlabelled pairs (PU) ---------------------------------------------

ORDINARY, SURE_POS, UNLABELLED, SURE_NEG = 0, 1, 2, 3


@dataclass
class PUPlan:
    """Each training example's part in the non-negative PU risk.

    role: ORDINARY (its own label, cross-entropy: gold pairs, pairs without label-model
    probabilities, type pairs too small to learn from), SURE_POS (the label model is sure of its
    relation: a labelled positive), UNLABELLED, SURE_NEG (``pnu`` only: the label model is sure
    it is NO_RELATION). The coefficients make a batch's loss an unbiased share of the whole risk:
    pos_coef on -log p(relation), neg_coef on -log p(NO_RELATION) outside the clamp, clamp_coef
    on -log p(NO_RELATION) inside the type pair's non-negative term."""
    role: list[int]
    group: list[int]          # index into groups, -1 for ORDINARY
    relation: list[int]       # the type pair's relation id, -1 for ORDINARY
    pos_coef: list[float]
    neg_coef: list[float]
    clamp_coef: list[float]
    groups: list[str]
    info: dict[str, dict[str, float]]  # per type pair: counts, the prior over all its pairs, the prior in U


def group_name(ex: Example) -> str:
    return "-".join(sorted((ex.subj.type, ex.obj.type)))


def pu_plan(examples: Sequence[Example], label2id: dict[str, int], mode: str, sure: float = 0.9,
            priors: dict[str, float] | None = None, min_sure: int = 2) -> PUPlan:
    """The PU roles and risk coefficients (Kiryo et al. 2017, non-negative PU, in the censoring
    setting: the labelled positives are part of the data, the unlabelled the rest).

    A type pair whose pairs can be one relation or NO_RELATION (the label model's ``probs`` hold
    exactly those two classes) is a PU problem: its pairs the label model gives the relation with
    probability >= ``sure`` are the labelled positives P, the others unlabelled U (in ``pnu``,
    those it gives NO_RELATION >= ``sure`` are labelled negatives N instead). The share of
    positives in U, pi_U, comes from the prior over the whole type pair (``priors[pair]``, or the
    label model's estimate: the mean probability of the relation over the pair's examples), less
    the labelled positives. Per type pair g, with n examples in all:

        R_g = |P|/n E_P[l+] + |N|/n E_N[l-] + |U|/n (pi_U E_P[l+] + max(0, E_U[l-] - pi_U E_P[l-]))

    A type pair with fewer than ``min_sure`` labelled positives, or no unlabelled pair, trains on
    its labels as usual."""
    n = len(examples)
    no_rel = label2id.get(NO_RELATION)
    role = [ORDINARY] * n
    group = [-1] * n
    relation = [-1] * n
    by_group: dict[str, list[int]] = {}
    rel_of: dict[str, int] = {}
    if no_rel is not None and mode in ("pu", "pnu"):
        for i, e in enumerate(examples):
            probs = e.probs or {}
            pos = [c for c in probs if c != NO_RELATION]
            if e.origin == "gold" or len(pos) != 1 or pos[0] not in label2id or e.label not in (NO_RELATION, pos[0]):
                continue
            g = group_name(e)
            if rel_of.setdefault(g, label2id[pos[0]]) != label2id[pos[0]]:
                continue  # a type pair with several relations is not a binary PU problem here
            by_group.setdefault(g, []).append(i)
    groups = sorted(by_group)
    pos_coef, neg_coef, clamp_coef = [0.0] * n, [0.0] * n, [0.0] * n
    info: dict[str, dict[str, float]] = {}
    rel_name = {v: k for k, v in label2id.items()}
    for gi, g in enumerate(groups):
        idx = by_group[g]
        r = rel_name[rel_of[g]]
        p_idx = [i for i in idx if (examples[i].probs or {}).get(r, 0.0) >= sure]
        pos_set = set(p_idx)
        n_idx = ([i for i in idx if i not in pos_set and (examples[i].probs or {}).get(NO_RELATION, 0.0) >= sure]
                 if mode == "pnu" else [])
        taken = set(p_idx) | set(n_idx)
        u_idx = [i for i in idx if i not in taken]
        if len(p_idx) < min_sure or not u_idx:
            continue
        est = sum((examples[i].probs or {}).get(r, 0.0) for i in idx) / len(idx)
        prior = (priors or {}).get(g, est)
        # positives expected among U: the type pair's share, less the labelled positives (and none among N)
        pi_u = min(max((prior * len(idx) - len(p_idx)) / len(u_idx), 0.0), 1.0)
        info[g] = {"relation": r, "pairs": len(idx), "sure_positive": len(p_idx), "sure_negative": len(n_idx),
                   "unlabelled": len(u_idx), "prior": round(prior, 4), "label_model_prior": round(est, 4),
                   "prior_in_unlabelled": round(pi_u, 4)}
        k = len(u_idx) * pi_u / (n * len(p_idx))
        for i in p_idx:
            role[i], pos_coef[i], clamp_coef[i] = SURE_POS, 1.0 / n + k, -k
        for i in n_idx:
            role[i], neg_coef[i] = SURE_NEG, 1.0 / n
        for i in u_idx:
            role[i], clamp_coef[i] = UNLABELLED, 1.0 / n
        for i in idx:
            if role[i] != ORDINARY:
                group[i], relation[i] = gi, rel_of[g]
    return PUPlan(role, group, relation, pos_coef, neg_coef, clamp_coef, groups, info)


def pu_loss(logits: torch.Tensor, labels: torch.Tensor, bidx: Sequence[int], plan: PUPlan, no_rel: int,
            n_total: int, scale: float) -> torch.Tensor:
    """The batch's share of the non-negative PU risk, times ``scale`` (batches per epoch, so that
    its size is that of a mean loss). A type pair's clamped term that comes out negative (the
    network fits the unlabelled pairs as negatives harder than the prior allows) is reversed,
    as nnPU's gradient ascent step does. ORDINARY examples add their cross-entropy, each weighted
    as one example in ``n_total`` (no class weights: the priors set the balance)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    dev = logits.device
    role = torch.tensor([plan.role[i] for i in bidx], device=dev)
    rel = torch.tensor([max(plan.relation[i], 0) for i in bidx], device=dev)
    grp = torch.tensor([plan.group[i] for i in bidx], device=dev)
    l_pos = -logp.gather(1, rel[:, None]).squeeze(1)
    l_neg = -logp[:, no_rel]
    pos_c = torch.tensor([plan.pos_coef[i] for i in bidx], device=dev)
    neg_c = torch.tensor([plan.neg_coef[i] for i in bidx], device=dev)
    clamp_c = torch.tensor([plan.clamp_coef[i] for i in bidx], device=dev)
    total = (pos_c * l_pos).sum() + (neg_c * l_neg).sum()
    for g in torch.unique(grp[grp >= 0]).tolist():
        term = (clamp_c * l_neg)[grp == g].sum()
        total = total + (term if term.item() >= 0 else -term)
    ordinary = role == ORDINARY
    if ordinary.any():
        total = total + F.nll_loss(logp[ordinary], labels[ordinary], reduction="sum") / n_total
    return total * scale


# --- helpers ----------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def label_list(train: Sequence[Example], dev: Sequence[Example]) -> list[str]:
    labels = sorted({e.label for e in train})
    missing = sorted({e.label for e in dev} - set(labels))
    if missing:
        log.warning("dev labels absent from train (the model cannot predict them): %s", ", ".join(missing))
    return sorted(set(labels) | set(missing))


def make_scheduler(opt: torch.optim.Optimizer, kind: str, total: int, warmup: int):
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    fn = get_cosine_schedule_with_warmup if kind == "cosine" else get_linear_schedule_with_warmup
    return fn(opt, num_warmup_steps=warmup, num_training_steps=max(total, 1))


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


# --- training ------------------------------------------------------------------------------


@dataclass
class TrainResult:
    labels: list[str]
    epochs_run: int
    best_epoch: int
    best_dev_macro_f1: float
    train_samples: int
    samples_per_s: float
    train_seconds: float
    wall_seconds: float
    optimizer_steps: int
    trainable_params: int
    total_params: int
    device: str
    history: list[dict[str, float]]
    mixed_precision: str = "no"
    pu: dict[str, dict[str, float]] | None = None  # the PU plan per type pair (train.unlabelled pu/pnu)
    model: Any = None  # the trained network (best epoch, on CPU), for callers that keep using it


def rank_share(batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This process's batches: every world-th one, the list first wrapped round to a multiple of
    world, so that all ranks run the same number of steps (with one fewer, DDP waits forever
    on the other rank's gradients), as torch's DistributedSampler pads."""
    if world == 1:
        return batches
    short = -len(batches) % world
    padded = batches + batches[:short]
    return padded[rank::world]


def mixed_precision(device: torch.device, choice: str = "auto") -> str:
    """accelerate's mixed_precision for training. auto: bf16 on a CUDA GPU that has it, else fp16
    there; float32 ("no") on CPU, where bf16 training is slower than float32 without native support.
    bf16 is allowed on CPU (accelerate autocasts there); fp16 is not (accelerate would silently
    train in float32)."""
    if choice != "auto":
        if choice == "fp16" and device.type != "cuda":
            raise ValueError(f"train.mixed_precision fp16 needs a CUDA GPU (device is {device}); "
                             "use bf16, no or auto in params.yaml")
        return choice
    if device.type != "cuda":
        return "no"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}[M.autocast_dtype(device, "auto")]


def make_accelerator(device: torch.device, precision: str) -> Any:
    """An Accelerator for this device and precision. accelerate keeps one state per process and
    refuses (other precision) or ignores (CPU, then CUDA) a second set-up, so a second training
    in the same process (a notebook, a benchmark, the tests) would fail or run on the wrong device:
    a single-process state that differs is reset first. Under torch.distributed the process group
    belongs to the launcher, so only the precision part is reset there."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    prior = AcceleratorState._shared_state  # private, but the only way to see a prior set-up
    prior_device = getattr(prior.get("device"), "type", device.type)
    if prior and (prior.get("_mixed_precision") != precision or prior_device != device.type):
        distributed = PartialState._shared_state.get("num_processes", 1) > 1
        if distributed and prior_device != device.type:
            raise RuntimeError(f"this distributed process already trained on {prior_device}; "
                               f"it cannot switch to {device}")
        AcceleratorState._reset_state(reset_partial_state=not distributed)
    return Accelerator(cpu=device.type == "cpu", mixed_precision=precision)


def train_model(p: TrainParams, train: list[Example], dev: list[Example], log_fn: LogFn | None = None,
                out_dir: str | Path | None = None,
                on_epoch: Callable[[int, M.RelationClassifier], None] | None = None) -> TrainResult:
    """Train on ``train``, early-stop on ``dev``, save the best model to ``out_dir`` (p.out_dir).
    ``on_epoch(epoch, classifier)`` is called after each epoch with the current weights ready for
    inference (benchmarks.seed_runs scores the gold sets with it)."""
    t_wall = time.perf_counter()
    M.set_threads()
    seed_everything(p.seed)
    if not train:
        raise InputError(f"{p.train}: no training examples; check the upstream stages (relations, split)")
    if p.max_train_examples and len(train) > p.max_train_examples:
        train = random.Random(p.seed).sample(train, p.max_train_examples)
    labels = label_list(train, dev)
    label2id = {l: i for i, l in enumerate(labels)}
    entity_types = M.entity_types_of([*train, *dev])
    model_path = M.resolve_model_path(p.model)

    tokenizer = M.build_tokenizer(model_path, entity_types)
    net = M.build_network(model_path, tokenizer, len(labels), p.head_dropout)
    if p.lora:
        model = M.add_lora(net, tokenizer, entity_types, p.lora_r, p.lora_alpha, p.lora_dropout,
                           p.lora_target_modules)
    else:
        model = net
    n_train_params = sum(x.numel() for x in model.parameters() if x.requires_grad)
    n_params = sum(x.numel() for x in model.parameters())

    encoder = M.MarkerEncoder(tokenizer, entity_types, p.max_length)
    enc = encoder.encode(train)
    y = [label2id[e.label] for e in train]
    targets = soft_targets(train, label2id) if p.soft_labels and any(e.probs for e in train) else None
    lengths = [len(e.input_ids) for e in enc]
    pad = tokenizer.pad_token_id or 0
    plan = dev_plan = None
    if p.unlabelled != "none":
        plan = pu_plan(train, label2id, p.unlabelled, p.pu_sure, p.pu_prior)
        if not plan.groups:
            log.warning("train.unlabelled %s: no type pair has label-model probabilities with sure positives and "
                        "unlabelled pairs; training on the labels as usual", p.unlabelled)
            plan = None
        else:
            # the dev split's PU risk with the training priors (dev is too small to estimate its own)
            priors = {g: d["prior"] for g, d in plan.info.items()}
            dev_plan = pu_plan(dev, label2id, p.unlabelled, p.pu_sure, priors) if dev else None
            if dev_plan is not None and not dev_plan.groups:
                dev_plan = None
            for g, d in plan.info.items():
                log.info("PU %s (%s): %d sure positive, %d sure negative, %d unlabelled; prior %.3f "
                         "(label model %.3f), positives in unlabelled %.3f", g, d["relation"], d["sure_positive"],
                         d["sure_negative"], d["unlabelled"], d["prior"], d["label_model_prior"],
                         d["prior_in_unlabelled"])

    weights = (balanced_class_weights(y, len(labels), p.class_weight_power)
               if p.imbalance == "class_weights" else None)
    gamma = p.focal_gamma if p.imbalance == "focal" else 0.0

    device = M.pick_device(p.device)
    precision = mixed_precision(device, p.mixed_precision)
    acc = make_accelerator(device, precision)
    decay, no_decay = [], []
    for n, prm in model.named_parameters():
        if prm.requires_grad:
            (no_decay if prm.ndim < 2 or "LayerNorm" in n or "bias" in n else decay).append(prm)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": p.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=p.lr)
    batches_per_epoch = math.ceil(len(enc) / p.batch_size / acc.num_processes)
    steps_per_epoch = math.ceil(batches_per_epoch / p.grad_accum)
    total_steps = steps_per_epoch * p.epochs
    sched = make_scheduler(opt, p.scheduler, total_steps, int(p.warmup_ratio * total_steps))
    model, opt = acc.prepare(model, opt)
    if weights is not None:
        weights = weights.to(acc.device)

    rng = random.Random(p.seed)
    resample_w = None
    if p.imbalance == "resample":
        counts = Counter(y)
        resample_w = [1.0 / counts[c] for c in y]

    log.info("training on %d examples (%d labels: %s), dev %d, %s, %d/%d params trainable, device %s, "
             "mixed precision %s", len(enc), len(labels), ", ".join(labels), len(dev),
             "LoRA" if p.lora else "full fine-tune", n_train_params, n_params, acc.device, precision)
    history: list[dict[str, float]] = []
    best_f1, best_epoch, best_state, bad_epochs = -1.0, 0, None, 0
    best_score = -math.inf
    step, seen, train_seconds = 0, 0, 0.0
    epochs_run = 0
    for epoch in range(1, p.epochs + 1):
        epochs_run = epoch
        model.train()
        idx = (rng.choices(range(len(enc)), weights=resample_w, k=len(enc)) if resample_w else None)
        batches = M.length_grouped_batches(lengths, p.batch_size, rng, indices=idx)
        batches = rank_share(batches, acc.process_index, acc.num_processes)
        t0 = time.perf_counter()
        run_loss, run_n = 0.0, 0
        for b, bidx in enumerate(batches, 1):
            batch = M.collate([enc[i] for i in bidx], pad, [y[i] for i in bidx])
            batch = {k: v.to(acc.device) for k, v in batch.items()}
            with acc.autocast():
                logits = model(**batch)
            if plan is not None:
                loss = pu_loss(logits, batch["labels"], bidx, plan, label2id[NO_RELATION], len(enc),
                               batches_per_epoch)
            elif targets is not None:
                loss = soft_loss(logits, targets[bidx].to(acc.device), batch["labels"], weights)
            else:
                loss = classification_loss(logits, batch["labels"], weights, p.label_smoothing, gamma)
            acc.backward(loss / p.grad_accum)
            run_loss += loss.item() * len(bidx)
            run_n += len(bidx)
            seen += len(bidx)
            if b % p.grad_accum == 0 or b == len(batches):
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                if step % p.log_every == 0:
                    elapsed = train_seconds + time.perf_counter() - t0
                    log.info("epoch %d/%d step %d/%d loss %.4f lr %.2e %.1f samples/s", epoch, p.epochs, step,
                             total_steps, run_loss / run_n, sched.get_last_lr()[0], seen / elapsed)
                    if log_fn and acc.is_main_process:
                        log_fn(step, {"train/loss": run_loss / run_n, "train/lr": sched.get_last_lr()[0]})
                    run_loss, run_n = 0.0, 0
        train_seconds += time.perf_counter() - t0
        dev_s = dev_scores(acc.unwrap_model(model), tokenizer, entity_types, labels, dev, p, acc.device, dev_plan)
        f1, risk = dev_s["positive_macro_f1"], dev_s.get("pu_risk")
        history.append({"epoch": epoch, "step": step, "dev_macro_f1": f1,
                        **{f"dev_{k}": v for k, v in dev_s.items() if k != "positive_macro_f1"}})
        # PU training departs from the dev split's weak labels on purpose: its epochs are chosen by
        # the dev PU risk, the others by select_by
        score = -risk if risk is not None else select_score(dev_s, p.select_by)
        log.info("epoch %d/%d done: dev macro-F1 %.4f (with NO_RELATION %.4f), dev loss %.4f%s, %.1f samples/s",
                 epoch, p.epochs, f1, dev_s.get("macro_f1_all", 0.0), dev_s.get("loss", 0.0),
                 f", dev PU risk {risk:.4f}" if risk is not None else "", seen / train_seconds)
        if log_fn and acc.is_main_process:
            log_fn(step, {"dev/macro_f1": f1, "epoch": epoch,
                          **({"dev/macro_f1_all": dev_s["macro_f1_all"], "dev/loss": dev_s["loss"]} if dev else {}),
                          **({"dev/pu_risk": risk} if risk is not None else {})})
        if on_epoch is not None and acc.is_main_process:
            meta = M.ModelMeta(labels=labels, entity_types=entity_types, base_model=p.model, lora=p.lora,
                               max_length=p.max_length, head_dropout=p.head_dropout)
            on_epoch(epoch, M.RelationClassifier(acc.unwrap_model(model), tokenizer, meta, device=acc.device.type))
            model.train()
        if score > best_score:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            best_f1 = f1
            best_state = trainable_state(acc.unwrap_model(model))
        else:
            bad_epochs += 1
            if dev and bad_epochs >= max(p.patience, 1):
                log.info("early stop: dev %s has not improved for %d epochs",
                         "PU risk" if dev_plan is not None else p.select_by, bad_epochs)
                break

    final = acc.unwrap_model(model)
    if best_state is not None and best_epoch != epochs_run:
        final.load_state_dict(best_state, strict=False)
    final = final.to("cpu")
    meta = M.ModelMeta(
        labels=labels, entity_types=entity_types,
        base_model=p.model if p.model == M.DEFAULT_MODEL else model_path,
        lora=p.lora, max_length=p.max_length, head_dropout=p.head_dropout, train_params=asdict(p),
    )
    if acc.is_main_process:
        save_atomically(Path(out_dir or p.out_dir), final, tokenizer, meta)
    acc.wait_for_everyone()
    return TrainResult(
        labels=labels, epochs_run=epochs_run, best_epoch=best_epoch, best_dev_macro_f1=max(best_f1, 0.0),
        train_samples=seen, samples_per_s=seen / train_seconds if train_seconds else 0.0,
        train_seconds=train_seconds, wall_seconds=time.perf_counter() - t_wall, optimizer_steps=step,
        trainable_params=n_train_params, total_params=n_params, device=str(acc.device), history=history,
        mixed_precision=precision, pu=plan.info if plan else None, model=final,
    )


def select_score(scores: dict[str, float], select_by: str) -> float:
    """The number the epoch is chosen by (higher is better): a dev F1, or minus the dev loss
    (0 without a dev split: every epoch ties, as with the F1 of no pairs)."""
    if select_by == "loss":
        return -scores["loss"] if "loss" in scores else 0.0
    return scores.get(select_by, 0.0)


def dev_scores(model: torch.nn.Module, tokenizer: Any, entity_types: list[str], labels: list[str],
               dev: Sequence[Example], p: TrainParams, device: torch.device,
               dev_plan: PUPlan | None = None) -> dict[str, float]:
    """The dev split's scores against its labels: macro-F1 over the positive relations, macro-F1
    with NO_RELATION as a class too, the mean cross-entropy of the labels (``loss``) and, with a
    PU plan for the dev split, its PU risk (what PU training minimises; lower is better).

    Why more than the positive macro-F1: on weak labels most dev pairs are some relation, so a
    model that calls every candidate the relation its types allow scores high on the positive
    relations while it has learnt nothing of what the label sources say against a pair; the
    other two scores count the NO_RELATION pairs."""
    from .evaluate import relation_scores

    if not dev:
        return {"positive_macro_f1": 0.0}
    meta = M.ModelMeta(labels=labels, entity_types=entity_types, base_model="", lora=p.lora,
                       max_length=p.max_length)
    clf = M.RelationClassifier(model, tokenizer, meta, device=str(device))
    try:
        logits = clf.logits(dev, p.eval_batch_size)
    finally:
        model.train()
    pred = [labels[i] for i in logits.argmax(-1).tolist()]
    gold = [e.label for e in dev]
    s = relation_scores(gold, pred)
    label2id = {l: i for i, l in enumerate(labels)}
    y = torch.tensor([label2id.get(l, 0) for l in gold])
    out = {"positive_macro_f1": s["macro_f1"], "macro_f1_all": s["macro_f1_all"],
           "loss": float(F.cross_entropy(logits.float(), y))}
    if dev_plan is not None:
        with torch.no_grad():
            out["pu_risk"] = float(pu_loss(logits, y, range(len(dev)), dev_plan, label2id[NO_RELATION], len(dev), 1.0))
    return out


def save_atomically(out: Path, model: torch.nn.Module, tokenizer: Any, meta: M.ModelMeta) -> None:
    """Write to a sibling temp folder, then swap: a crash never leaves half a model."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    M.save_model(tmp, model, tokenizer, meta)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def result_report(r: TrainResult, p: TrainParams) -> dict[str, Any]:
    """The small metrics file for reports/train.json."""
    return {
        "samples_per_s": round(r.samples_per_s, 2),
        "epochs_run": r.epochs_run,
        "best_epoch": r.best_epoch,
        "best_dev_macro_f1": round(r.best_dev_macro_f1, 4),
        "train_samples": r.train_samples,
        "optimizer_steps": r.optimizer_steps,
        "train_seconds": round(r.train_seconds, 1),
        "wall_seconds": round(r.wall_seconds, 1),
        "trainable_params": r.trainable_params,
        "total_params": r.total_params,
        "device": r.device,
        "mixed_precision": r.mixed_precision,
        "threads": torch.get_num_threads(),
        "labels": r.labels,
        "model": p.model,
        "lora": p.lora,
        "unlabelled": p.unlabelled,
        "select_by": p.select_by,
        **({"pu": r.pu} if r.pu else {}),
    }

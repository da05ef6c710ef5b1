"""Calibrated confidence and decisions for the relation classifier (pure numpy).

* Type constraints: a relation whose allowed (subject type, object type) pairs (the
  ``args`` of relations.yaml) don't include the candidate's types gets probability 0
  before renormalising; NO_RELATION is always allowed. A STRAT-STRAT pair is never
  ``occurs_in``. Masking logits to -inf then taking the softmax is the same thing.
* Temperature scaling (Guo et al. 2017): one scalar T fitted on the dev split by
  minimising the negative log-likelihood of softmax(logits / T) (bounded 1-D search
  on log T). It changes confidence, never the argmax.
* Expected calibration error with equal-width confidence bins, before and after.
* Per-relation decision thresholds chosen on dev to maximise that relation's F1
  (one-vs-rest on its calibrated probability). Decoding: among the positive relations
  whose probability reaches their threshold the most probable wins; when none does,
  the pair is NO_RELATION. A threshold tuned on a few dev positives fits their noise, so a
  relation keeps it only where it beats the argmax cross-fitted on dev (tuned on one half,
  scored on the other); otherwise that relation is decided by argmax (threshold None).

The result is a ``Calibration`` saved as JSON (``calibration.json``) and read by
``extract`` and ``review``. Logits come from ``RelationClassifier.logits``; with only
probabilities, pass their logarithms (equivalent for temperature scaling).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import InputError
from .params import INFER_BATCH_SIZE, check_inference_dtype
from .records import NO_RELATION, atomic_write_json

CALIBRATION_FILE = "calibration.json"
DEFAULT_THRESHOLD = 0.5  # for a relation with no positive dev example to tune on
T_BOUNDS = (0.05, 20.0)
_EPS = 1e-12

Allowed = Mapping[str, Iterable[Sequence[str]]]  # relation -> allowed [subject type, object type] pairs


# --- probabilities ----------------------------------------------------------------------


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / T; rows may hold -inf (masked labels)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - np.max(z, axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def type_mask(labels: Sequence[str], subj_types: Sequence[str], obj_types: Sequence[str],
              allowed: Allowed) -> np.ndarray:
    """Boolean (n, k): may example i be labelled labels[j]? NO_RELATION always may; a
    relation the schema does not list never may (its types cannot be checked)."""
    pairs = {rel: {tuple(p) for p in args} for rel, args in allowed.items()}
    n = len(subj_types)
    mask = np.zeros((n, len(labels)), dtype=bool)
    for j, lab in enumerate(labels):
        if lab == NO_RELATION:
            mask[:, j] = True
        elif lab in pairs:
            ok = pairs[lab]
            mask[:, j] = [(s, o) in ok for s, o in zip(subj_types, obj_types)]
    # a row with nothing allowed (a model without NO_RELATION and a foreign pair) keeps
    # every label rather than dividing by zero
    mask[~mask.any(axis=1)] = True
    return mask


def masked_logits(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if mask is None:
        return z
    return np.where(mask, z, -np.inf)


def calibrated_proba(logits: np.ndarray, temperature: float = 1.0, mask: np.ndarray | None = None) -> np.ndarray:
    """Type-constrained, temperature-scaled probabilities (rows sum to 1, 0 where masked)."""
    return softmax(masked_logits(logits, mask), temperature)


# --- temperature scaling ------------------------------------------------------------------


def nll(logits: np.ndarray, y: Sequence[int], temperature: float = 1.0, mask: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood of the true labels (probabilities clipped at 1e-12,
    so a true label the mask forbids costs a large but finite amount)."""
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return 0.0
    p = calibrated_proba(logits, temperature, mask)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0))))


def fit_temperature(logits: np.ndarray, y: Sequence[int], mask: np.ndarray | None = None,
                    bounds: tuple[float, float] = T_BOUNDS) -> float:
    """T minimising the dev NLL: a bounded search on log T (NLL is smooth and, in
    practice, unimodal in log T). Returns 1.0 when there is nothing to fit on."""
    if len(y) == 0:
        return 1.0
    from scipy.optimize import minimize_scalar

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    res = minimize_scalar(lambda lt: nll(logits, y, math.exp(lt), mask), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-4})
    t = math.exp(float(res.x))
    # never return something worse than no scaling (a flat NLL can fool the search)
    return t if nll(logits, y, t, mask) <= nll(logits, y, 1.0, mask) else 1.0


# --- calibration error --------------------------------------------------------------------


def reliability_bins(probs: np.ndarray, y: Sequence[int], n_bins: int = 15) -> list[dict]:
    """Equal-width bins of the top-label confidence: count, mean confidence, accuracy."""
    probs = np.asarray(probs)
    y = np.asarray(y, dtype=int)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == y) if len(probs) else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 goes to the first bin
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        out.append({"lo": round(float(edges[b]), 4), "hi": round(float(edges[b + 1]), 4), "count": n,
                    "confidence": float(conf[sel].mean()) if n else None,
                    "accuracy": float(correct[sel].mean()) if n else None})
    return out


def expected_calibration_error(probs: np.ndarray, y: Sequence[int], n_bins: int = 15) -> float:
    """ECE = sum over bins of (bin share) * |accuracy - mean confidence|."""
    bins = reliability_bins(probs, y, n_bins)
    n = sum(b["count"] for b in bins)
    if n == 0:
        return 0.0
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


# --- thresholds and decoding -----------------------------------------------------------------


def f1_counts(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def best_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """The threshold t maximising F1 of "score >= t" against ``positive``; returns (t, F1).
    Ties go to the highest t (fewer false alarms). The threshold sits halfway between
    the lowest accepted score and the next lower score, so it does not ride on a dev
    example. No positive at all: (DEFAULT_THRESHOLD, 0.0)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return DEFAULT_THRESHOLD, 0.0
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], positive[order]
    tp = np.cumsum(pos)
    fp = np.cumsum(~pos)
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    # only cut between distinct scores: position i accepts every score >= s[i]
    last_of_value = np.r_[s[1:] != s[:-1], True]
    f1 = np.where(last_of_value, f1, -1.0)
    best = float(f1.max())
    i = int(np.flatnonzero(f1 == best)[0])  # first = highest threshold among ties
    lower = s[i + 1] if i + 1 < len(s) else 0.0
    return float((s[i] + lower) / 2), best


def decide(probs: np.ndarray, labels: Sequence[str], thresholds: Mapping[str, float] | None = None,
           min_confidence: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label index and confidence per row.

    thresholds None and min_confidence None: the argmax. Otherwise a positive relation
    is a candidate when its probability reaches its threshold (``min_confidence``, when
    given, is the threshold of every relation); the most probable candidate wins, and a
    row with no candidate is NO_RELATION (with NO_RELATION's probability)."""
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    if thresholds is None and min_confidence is None:
        idx = probs.argmax(axis=1)
        return idx, probs[np.arange(n), idx]
    pos = [j for j, l in enumerate(labels) if l != NO_RELATION]
    thr = np.full(k, np.inf)
    by_argmax = []  # relations whose threshold is None: candidates where they are the row's argmax
    for j in pos:
        t = min_confidence if min_confidence is not None else (thresholds or {}).get(labels[j], DEFAULT_THRESHOLD)
        if t is None:
            by_argmax.append(j)
        else:
            thr[j] = t
    passing = np.where(probs >= thr[None, :], probs, -1.0)
    if by_argmax:
        top = probs.argmax(axis=1)
        for j in by_argmax:
            passing[top == j, j] = probs[top == j, j]
    passing[probs <= 0] = -1.0  # a masked relation never passes, whatever its threshold
    best = passing.argmax(axis=1)
    ok = passing[np.arange(n), best] >= 0
    nr = labels.index(NO_RELATION) if NO_RELATION in labels else None
    if nr is None:  # no fallback class: keep the argmax
        fallback = probs.argmax(axis=1)
    else:
        fallback = np.full(n, nr)
    idx = np.where(ok, best, fallback)
    return idx, probs[np.arange(n), idx]


def fit_thresholds(probs: np.ndarray, y: Sequence[int], labels: Sequence[str]) -> dict[str, dict]:
    """Per positive relation: the threshold maximising its one-vs-rest F1 on dev and
    that F1, with its dev support."""
    probs = np.asarray(probs)
    y = np.asarray(y, dtype=int)
    out = {}
    for j, lab in enumerate(labels):
        if lab == NO_RELATION:
            continue
        t, f1 = best_threshold(probs[:, j], y == j)
        out[lab] = {"threshold": round(t, 6), "f1_one_vs_rest": round(f1, 4), "support": int((y == j).sum())}
    return out


def cross_fitted_f1(scores: np.ndarray, positive: np.ndarray, argmax_hit: np.ndarray, repeats: int,
                    seed: int) -> tuple[float, float]:
    """Held-out F1 of a threshold tuned on one half of dev and scored on the other, and of the
    argmax decision on the same halves: means over ``repeats`` random 2-fold splits.

    A threshold tuned on a handful of dev positives fits their noise; this says whether it
    still beats the argmax on examples it was not tuned on."""
    rng = np.random.default_rng(seed)
    n = len(scores)
    tuned, plain = [], []
    for _ in range(repeats):
        order = rng.permutation(n)
        halves = (order[: n // 2], order[n // 2:])
        for fit, held in (halves, halves[::-1]):
            t, _ = best_threshold(scores[fit], positive[fit])
            tuned.append(_f1(scores[held] >= t, positive[held]))
            plain.append(_f1(argmax_hit[held], positive[held]))
    return float(np.mean(tuned)), float(np.mean(plain))


def _f1(pred: np.ndarray, positive: np.ndarray) -> float:
    tp = int((pred & positive).sum())
    return f1_counts(tp, int((pred & ~positive).sum()), int((~pred & positive).sum()))


def per_relation_f1(pred: np.ndarray, y: Sequence[int], labels: Sequence[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support of each positive relation for decoded labels."""
    pred = np.asarray(pred, dtype=int)
    y = np.asarray(y, dtype=int)
    out = {}
    for j, lab in enumerate(labels):
        if lab == NO_RELATION:
            continue
        tp = int(((pred == j) & (y == j)).sum())
        fp = int(((pred == j) & (y != j)).sum())
        fn = int(((pred != j) & (y == j)).sum())
        out[lab] = {"precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
                    "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
                    "f1": round(f1_counts(tp, fp, fn), 4), "support": tp + fn}
    return out


# --- the fitted calibration -------------------------------------------------------------------


@dataclass
class Calibration:
    labels: list[str]
    temperature: float = 1.0
    thresholds: dict[str, float | None] = field(default_factory=dict)  # None: that relation by argmax
    allowed: dict[str, list[list[str]]] = field(default_factory=dict)  # the schema's args it was fitted with
    model_fingerprint: str = ""
    ece_bins: int = 15
    report: dict = field(default_factory=dict)
    # the label model's veto (stages.weak.LabelModelVeto): a candidate it gives NO_RELATION with at
    # least this probability is NO_RELATION; None: the model decides alone
    veto_no_relation: float | None = None
    label_model: dict | None = None  # the fitted label model the veto reads (a copy of label_model.out)

    def proba(self, logits: np.ndarray, subj_types: Sequence[str], obj_types: Sequence[str],
              allowed: Allowed | None = None) -> np.ndarray:
        mask = type_mask(self.labels, subj_types, obj_types, allowed if allowed is not None else self.allowed)
        return calibrated_proba(logits, self.temperature, mask)

    def decide(self, probs: np.ndarray, min_confidence: float | None = None) -> tuple[list[str], np.ndarray]:
        idx, conf = decide(probs, self.labels, self.thresholds or None, min_confidence)
        return [self.labels[i] for i in idx], conf

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


def fit_calibration(logits: np.ndarray, gold: Sequence[str], labels: Sequence[str], subj_types: Sequence[str],
                    obj_types: Sequence[str], allowed: Allowed, n_bins: int = 15,
                    model_fingerprint: str = "", cross_fit_repeats: int = 20, seed: int = 13,
                    min_dev_support: int = 3) -> Calibration:
    """Fit T on the type-constrained dev logits, then per-relation thresholds on the
    calibrated probabilities. A relation keeps its tuned threshold only where, cross-fitted
    on dev (``cross_fit_repeats`` 2-fold splits; 0: no check), it beats the argmax on held-out
    halves; otherwise its threshold is None and it is decided by argmax. The report holds
    ECE/NLL before and after, the thresholds, and the dev F1 per relation (argmax, at the
    thresholds, and cross-fitted)."""
    labels = list(labels)
    logits = np.asarray(logits, dtype=np.float64)
    unknown = sorted(set(gold) - set(labels))
    if unknown:
        raise InputError(f"dev labels {unknown} are not among the model's labels {labels}; "
                         "fix: retrain the model on the current splits (dvc repro train)")
    y = np.array([labels.index(g) for g in gold], dtype=int)
    allowed_d = {rel: [list(p) for p in args] for rel, args in allowed.items()}
    mask = type_mask(labels, subj_types, obj_types, allowed_d)
    raw = softmax(logits)  # what the model says: no constraint, no scaling
    constrained = calibrated_proba(logits, 1.0, mask)
    t = fit_temperature(logits, y, mask)
    cal = calibrated_proba(logits, t, mask)
    fitted = fit_thresholds(cal, y, labels)
    thresholds: dict[str, float | None] = {rel: v["threshold"] for rel, v in fitted.items()}
    checks: dict[str, dict[str, float]] = {}  # relation -> its cross-fitted F1s, tuned and argmax
    top = cal.argmax(axis=1)
    for rel, v in fitted.items():
        if not cross_fit_repeats or v["support"] < 2:  # nothing to split
            continue
        j = labels.index(rel)
        held_thr, held_max = cross_fitted_f1(cal[:, j], y == j, top == j, cross_fit_repeats, seed)
        checks[rel] = {"cross_fitted_f1_threshold": round(held_thr, 4), "cross_fitted_f1_argmax": round(held_max, 4)}
        if held_thr <= held_max:
            thresholds[rel] = None
    # A threshold must never switch a relation off: one tuned on too few dev positives, or one
    # under which the relation is never predicted on dev although the argmax predicts it, is
    # dropped (argmax decides), with a warning in the report.
    warnings: list[str] = []
    for rel, v in fitted.items():
        if thresholds[rel] is None:
            continue
        if 0 < v["support"] < min_dev_support:  # none at all: the untuned default threshold stays
            warnings.append(f"{rel}: {v['support']} dev example(s) (< min_dev_support {min_dev_support}); "
                            "its tuned threshold is not used, argmax decides it")
            thresholds[rel] = None
    argmax_pred, _ = decide(cal, labels)
    for rel in fitted:
        if thresholds[rel] is None:
            continue
        j = labels.index(rel)
        trial, _ = decide(cal, labels, thresholds)
        if (argmax_pred == j).any() and not (trial == j).any():
            warnings.append(f"{rel}: threshold {thresholds[rel]:.3f} would switch it off (never predicted on dev, "
                            "argmax predicts it); argmax decides it")
            thresholds[rel] = None
    thr_pred, _ = decide(cal, labels, thresholds)
    at_thr = per_relation_f1(thr_pred, y, labels)
    at_argmax = per_relation_f1(argmax_pred, y, labels)
    report = {
        "n_dev": int(len(y)),
        "temperature": round(t, 6),
        # at the upper bound: the constrained scores carry little more than the prior (an
        # under-trained model); at the lower bound: the model is far too timid
        "temperature_at_bound": bool(min(abs(t - b) / b for b in T_BOUNDS) < 1e-3),
        "ece_bins": n_bins,
        "ece_before": round(expected_calibration_error(raw, y, n_bins), 6),
        "ece_constrained": round(expected_calibration_error(constrained, y, n_bins), 6),
        "ece_after": round(expected_calibration_error(cal, y, n_bins), 6),
        "nll_before": round(nll(logits, y, 1.0), 6),
        "nll_after": round(nll(logits, y, t, mask), 6),
        "thresholds": thresholds,
        "warnings": warnings,
        "min_dev_support": min_dev_support,
        "cross_fit_repeats": cross_fit_repeats,
        "per_relation": {rel: {**at_thr[rel], "threshold": thresholds[rel], "tuned_threshold": fitted[rel]["threshold"],
                               "f1_one_vs_rest": fitted[rel]["f1_one_vs_rest"], "f1_argmax": at_argmax[rel]["f1"],
                               **checks.get(rel, {})}
                         for rel in thresholds},
        "macro_f1_at_thresholds": round(float(np.mean([v["f1"] for v in at_thr.values()])) if at_thr else 0.0, 4),
        "macro_f1_argmax": round(float(np.mean([v["f1"] for v in at_argmax.values()])) if at_argmax else 0.0, 4),
        "reliability_before": reliability_bins(raw, y, n_bins),
        "reliability_after": reliability_bins(cal, y, n_bins),
    }
    return Calibration(labels=labels, temperature=t, thresholds=thresholds, allowed=allowed_d,
                       model_fingerprint=model_fingerprint, ece_bins=n_bins, report=report)


# --- files -----------------------------------------------------------------------------------


def model_fingerprint(model_dir: str | Path) -> str:
    """Digest of a model folder's files (calibration.json left out), so a calibration
    can tell whether it was fitted for this model."""
    root = Path(model_dir)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != CALIBRATION_FILE:
            h.update(str(p.relative_to(root)).encode())
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def calibration_candidates(model_dir: str | Path) -> list[Path]:
    """Where a model's calibration may be: inside its folder, or beside it as
    ``<folder>.calibration.json`` (what the DVC stage writes: a stage may not write
    into another stage's output folder)."""
    d = Path(model_dir)
    return [d / CALIBRATION_FILE, d.with_name(d.name + ".calibration.json")]


def save_calibration(path: str | Path, cal: Calibration) -> None:
    atomic_write_json(path, cal.to_dict())


def load_calibration(path: str | Path) -> Calibration:
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return Calibration.from_dict(d)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a readable calibration file ({exc}); "
                         "fix: rerun `python -m flows.calibrate` (dvc repro calibrate)") from exc


def find_calibration(model_dir: str | Path) -> Path | None:
    for p in calibration_candidates(model_dir):
        if p.exists():
            return p
    return None


def resolve_calibration(model_dir: str | Path, model_labels: Sequence[str], logger, calibration: str | Path | None = None,
                        required: bool = True) -> tuple[Calibration | None, Path | None]:
    """The calibration every decision uses (extract, evaluate, review): ``calibration`` when given,
    else the one found beside ``model_dir``. None (T = 1, argmax) with a warning saying why when
    there is none, or when it was fitted for other labels or another version of the model. A
    ``calibration`` file that does not exist is an error when ``required`` (a path the user
    typed), else a warning (a configured path the calibrate stage has not written yet)."""
    path = Path(calibration) if calibration else find_calibration(model_dir)
    if path is None or (not required and not path.exists()):
        logger.warning("no calibration for %s%s (run `python -m flows.calibrate`): uncalibrated confidence, argmax "
                       "decisions", model_dir, f" at {path}" if path else "")
        return None, None
    if not path.exists():
        raise InputError(f"{path}: calibration file not found; fix: run `python -m flows.calibrate` or drop "
                         "--calibration")
    cal = load_calibration(path)
    if list(cal.labels) != list(model_labels):
        logger.warning("%s: fitted for labels %s, the model has %s: ignored (recalibrate)", path, cal.labels,
                       list(model_labels))
        return None, None
    fp = model_fingerprint(model_dir)
    if cal.model_fingerprint and cal.model_fingerprint != fp:
        logger.warning("%s was fitted for another version of %s: ignored (recalibrate: python -m flows.calibrate)",
                       path, model_dir)
        return None, None
    return cal, path


@dataclass
class CalibrateParams:
    model_dir: str = "models/relmine"
    dev: str = "data/split/dev.jsonl"
    relation_patterns: str = "data/patterns/relations.yaml"
    entity_patterns: str = "data/patterns/entities.yaml"
    out: str = "models/relmine.calibration.json"
    report: str = "reports/calibration.json"
    bins: int = 15  # equal-width confidence bins for the ECE
    cross_fit_repeats: int = 20  # 2-fold dev splits that check each tuned threshold against argmax (0: keep all)
    seed: int = 13
    batch_size: int = INFER_BATCH_SIZE
    dtype: str = "auto"  # as extract and evaluate use the model
    # a folder of human-labelled pairs (*.jsonl, relmine Example format) to calibrate on instead of
    # the pattern-labelled dev split; null or an empty folder: the dev split
    gold_dir: str | None = None
    min_dev_support: int = 3  # a relation with fewer calibration examples keeps the argmax (no threshold)
    # the label model the decision's veto reads (= label_model.out), and the veto: a candidate it
    # gives NO_RELATION with at least this probability is NO_RELATION (null: the model alone)
    label_model: str = "data/label_model.json"
    veto_no_relation: float | None = 0.5

    def check(self) -> None:
        if self.min_dev_support < 1:
            raise ValueError("calibrate.min_dev_support must be >= 1; set e.g. 3")
        if self.veto_no_relation is not None and not 0.5 <= self.veto_no_relation <= 1:
            raise ValueError(f"calibrate.veto_no_relation must be in [0.5, 1] or null (got {self.veto_no_relation!r}); "
                             "0.5: the label model's most probable class is NO_RELATION; null: no veto")
        if not 2 <= self.bins <= 100:
            raise ValueError("bins must be between 2 and 100")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0 <= self.cross_fit_repeats <= 1000:
            raise ValueError("cross_fit_repeats must be between 0 (no check) and 1000")
        check_inference_dtype(self.dtype)

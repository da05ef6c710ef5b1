"""A label model: combine the votes of abstaining label sources into class probabilities.

Each candidate pair gets votes from label sources: a template votes for its relation, a veto
rule votes NO_RELATION (``relations.yaml``), a knowledge file or a consistent name pair votes
for a relation (``stages/weak.py``); a source that does not fire abstains. A candidate no
source speaks about is *unlabelled*, not negative: its class comes from the class balance of
its type pair, which the model estimates.

The model is the generative one of Dawid and Skene (1979), as Snorkel's label model uses it
for sources that vote one class each: the true class ``y`` of a candidate is hidden; each source
``j`` fires with probability ``beta[j, y]`` (on the candidates it can apply to, i.e. whose types
its class allows) independently of the others given ``y``; the class balance ``pi[group, y]``
is per type pair (TAXON-LOC pairs are not as often related as STRAT-CHRONO pairs). EM fits
both from the votes alone. Non-firing counts as evidence (a template with low recall barely
moves a candidate; a veto that fires on a quarter of the negatives and almost never on
positives moves it a lot). Beta priors anchor the fit where the votes cannot identify it: a
source is assumed to be right ``prior_accuracy`` of the time it fires, with the weight of
``prior_strength`` pseudo-candidates, so a source seen on five pairs stays near the prior.

One constraint holds the fit to what a label source is: it fires on its own class at least as
often as on any other (``beta[j, own] >= beta[j, y]``), Snorkel's assumption that every source is
better than random. Without it EM can settle where a source that co-fires with the vetoes (the
consistency source in long sentences) counts as evidence *against* its class; more candidates
from a broader entity stage then tipped the class balance of a whole type pair to NO_RELATION.
A source the constraint binds on is simply uninformative between those classes.

Why not Snorkel itself: snorkel 0.10 installs with the pinned stack, but brings tensorboard,
grpcio and protobuf for its training loggers, and its ``LabelModel`` needs a label matrix in
its own encoding and a single class set for every candidate (ours differ by type pair). The
model here is some hundred lines of numpy with the same assumptions, fitted in milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class LabelModelParams:
    iterations: int = 100         # EM iterations (stops early when the posteriors settle)
    prior_accuracy: float = 0.85  # assumed share of a source's votes that are right, before fitting
    prior_strength: float = 20.0  # pseudo-candidates behind that assumption (0: pure maximum likelihood)
    # fix P(NO_RELATION) instead of estimating it: one share for every type pair, or a share per
    # type pair ({"LOC-TAXON": 0.3}; the pairs not named are estimated)
    no_relation_prior: float | dict[str, float] | None = None
    tol: float = 1e-6

    def check(self) -> None:
        if self.iterations < 1:
            raise ValueError("label_model.iterations must be >= 1; set a whole number such as 100")
        if not 0.5 < self.prior_accuracy < 1:
            raise ValueError("label_model.prior_accuracy must be in (0.5, 1); set e.g. 0.85")
        if self.prior_strength < 0:
            raise ValueError("label_model.prior_strength must be >= 0; set e.g. 20")
        nr = self.no_relation_prior
        if isinstance(nr, dict):
            for k, v in nr.items():
                if not isinstance(k, str) or len(k.split("-")) != 2:
                    raise ValueError(f"label_model.no_relation_prior key {k!r} must name a type pair as "
                                     "SUBJTYPE-OBJTYPE; write e.g. {LOC-TAXON: 0.3}")
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                    raise ValueError(f"label_model.no_relation_prior[{k!r}] = {v!r} must be a share in (0, 1); "
                                     "write e.g. 0.3, or leave the pair out to estimate it")
        elif nr is not None and not 0 < nr < 1:
            raise ValueError("label_model.no_relation_prior must be null (estimate it), a share in (0, 1), "
                             "or a share per type pair ({LOC-TAXON: 0.3})")


def pair_key(name: str) -> str:
    """A type pair's class-balance group: its two types sorted, joined by '-' (LOC-TAXON)."""
    return "-".join(sorted(name.split("-")))


def prior_per_group(value: float | dict[str, float] | None, groups: Sequence[str]) -> list[float | None]:
    """The fixed NO_RELATION share of each group (None: estimated), from one share or a mapping."""
    if isinstance(value, dict):
        by = {pair_key(k): float(v) for k, v in value.items()}
        return [by.get(g) for g in groups]
    return [value] * len(groups)


@dataclass
class Fitted:
    classes: list[str]
    sources: list[str]
    source_class: list[int]
    beta: np.ndarray                 # sources x classes: P(fires | class)
    pi: dict[str, list[float]]       # group -> class balance
    posteriors: np.ndarray           # candidates x classes
    iterations: int = 0
    stats: dict[str, dict] = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # how the sources were built (to rebuild them for new pairs)


def fit(votes: Sequence[dict[str, str]], allowed: Sequence[Sequence[str]], groups: Sequence[str],
        applies: Sequence[set[str]], source_class: dict[str, str], classes: Sequence[str],
        params: LabelModelParams | None = None) -> Fitted:
    """Fit the model and return the posteriors.

    votes[i]: source -> class it voted on candidate i (only the sources that fired);
    allowed[i]: the classes candidate i can take (NO_RELATION and the relations its types allow);
    groups[i]: its type pair (class balance group); applies[i]: the sources that could fire on it;
    source_class: each source's one class."""
    p = params or LabelModelParams()
    classes = list(classes)
    cidx = {c: k for k, c in enumerate(classes)}
    sources = sorted(source_class)
    sidx = {s: j for j, s in enumerate(sources)}
    n, m, k = len(votes), len(sources), len(classes)
    F = np.zeros((n, m))   # fired
    A = np.zeros((n, m))   # applicable
    mask = np.zeros((n, k), dtype=bool)
    for i in range(n):
        for c in allowed[i]:
            mask[i, cidx[c]] = True
        for s in applies[i]:
            if s in sidx:
                A[i, sidx[s]] = 1
        for s in votes[i]:
            if s in sidx:
                F[i, sidx[s]] = 1
                A[i, sidx[s]] = 1
    sc = np.array([cidx[source_class[s]] for s in sources], dtype=int)
    group_names = sorted(set(groups))
    gi = np.array([group_names.index(g) for g in groups], dtype=int) if n else np.zeros(0, dtype=int)
    no_rel = cidx.get("NO_RELATION")

    # class balance start: uniform over each group's allowed classes (or the fixed NO_RELATION prior)
    pi = np.zeros((len(group_names), k))
    for g in range(len(group_names)):
        rows = mask[gi == g]
        allowed_g = rows.any(axis=0) if len(rows) else np.ones(k, dtype=bool)
        pi[g] = allowed_g / max(allowed_g.sum(), 1)
    fixed = prior_per_group(p.no_relation_prior, group_names)
    pi = _fix_no_rel(pi, no_rel, fixed)

    # Beta prior means for beta[j, y]: a source fires on its class's applicable candidates at
    # rate coverage * acc / share, on the others at coverage * (1 - acc) / (1 - share)
    cov = (F.sum(0) / np.maximum(A.sum(0), 1))
    share = 0.5
    prior_own = np.clip(cov * p.prior_accuracy / share, 1e-3, 0.999)
    prior_other = np.clip(cov * (1 - p.prior_accuracy) / (1 - share), 1e-4, 0.999)
    prior_mean = np.tile(prior_other[:, None], (1, k))
    prior_mean[np.arange(m), sc] = prior_own
    beta = prior_mean.copy()

    q = np.zeros((n, k))
    it = 0
    for it in range(1, p.iterations + 1):
        # E-step
        logb, log1b = np.log(beta), np.log1p(-beta)
        ll = F @ logb + (A - F) @ log1b           # n x k
        ll += np.log(np.maximum(pi[gi], 1e-12))
        ll[~mask] = -np.inf
        ll -= ll.max(axis=1, keepdims=True)
        new_q = np.exp(ll)
        new_q /= new_q.sum(axis=1, keepdims=True)
        delta = np.abs(new_q - q).max() if n else 0.0
        q = new_q
        # M-step
        num = F.T @ q + p.prior_strength * prior_mean
        den = A.T @ q + p.prior_strength
        beta = np.clip(num / np.maximum(den, 1e-12), 1e-4, 1 - 1e-4)
        # a source is never evidence against its own class: it fires on that class at least as
        # often as on any other (data programming's "better than random" assumption)
        beta = np.minimum(beta, beta[np.arange(m), sc][:, None])
        for g in range(len(group_names)):
            rows = q[gi == g]
            if len(rows):
                # the same pseudo-candidates, spread evenly over the group's classes, keep a small
                # type pair from collapsing onto one class
                allowed_g = mask[gi == g].any(axis=0)
                prior = allowed_g / allowed_g.sum() * p.prior_strength
                pi[g] = (rows.sum(axis=0) + prior) / (len(rows) + p.prior_strength)
        pi = _fix_no_rel(pi, no_rel, fixed)
        if delta < p.tol:
            break

    fitted = Fitted(classes, sources, [int(x) for x in sc], beta,
                    {g: [round(float(x), 4) for x in pi[i]] for i, g in enumerate(group_names)}, q, it)
    fitted.stats = source_stats(F, q, sc, sources, classes)
    return fitted


def _fix_no_rel(pi: np.ndarray, no_rel: int | None, values: Sequence[float | None]) -> np.ndarray:
    if no_rel is None or all(v is None for v in values):
        return pi
    out = pi.copy()
    for g in range(len(out)):
        value = values[g]
        if value is None:
            continue
        rest = out[g].sum() - out[g, no_rel]
        if rest <= 0:
            continue
        out[g] = out[g] * (1 - value) / rest
        out[g, no_rel] = value
    return out


def source_stats(F: np.ndarray, q: np.ndarray, sc: np.ndarray, sources: list[str], classes: list[str]) -> dict:
    """Per source, as Snorkel's LF analysis: coverage (candidates it fired on), overlaps (another
    source fired too), conflicts (a source of another class fired too), and its estimated
    accuracy: the mean posterior of its class over the candidates it fired on."""
    n = len(F)
    out: dict[str, dict] = {}
    fired_any = F.sum(1)
    for j, s in enumerate(sources):
        on = F[:, j] > 0
        cov = int(on.sum())
        other = F[on].copy()
        other[:, j] = 0
        overl = int((other.sum(1) > 0).sum())
        diff = F[on][:, sc != sc[j]]
        confl = int((diff.sum(1) > 0).sum()) if diff.size else 0
        acc = float(q[on, sc[j]].mean()) if cov else None
        out[s] = {"class": classes[sc[j]], "coverage": cov, "coverage_share": round(cov / n, 4) if n else 0.0,
                  "overlaps": overl, "conflicts": confl,
                  "estimated_accuracy": round(acc, 4) if acc is not None else None}
    out["_unvoted"] = {"candidates": int((fired_any == 0).sum())}
    return out

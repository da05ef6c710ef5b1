"""Train/dev/test split of labelled examples, stratified by label, groups kept whole.

A group is one sentence (doc_id + sent_id) by default, or one paper (doc_id) with
``group_by: paper``: every example of a group lands in the same split, so no sentence
(or paper) is seen in training and scored in dev/test.

Rules, in order:
- gold examples (origin "gold") are kept apart for evaluation; they join train only
  when ``train_on_gold`` is set (and then their sentences are kept out of dev/test);
- classes with fewer than ``min_class_count`` original examples cannot be stratified:
  every group holding one stays in train, and a warning names the classes;
- the remaining groups are split with scikit-learn's StratifiedGroupKFold: one fold
  becomes test, then one fold of the rest becomes dev, so fractions are met to within
  one fold's granularity;
- dev and test hold only original (origin "auto") examples: anything augmented that
  reaches this stage goes to train.
The result depends only on the examples and the seed, not on input order.

What the split leaves the model without is warned by name (``class_warnings``): a
relation of the schema with no example at all, and a class left with no train example
(a class of about ``min_class_count`` examples whose few sentences all fell in dev or
test): the model would lack it without a word. ``test_fraction`` must be above 0:
evaluate scores the test split.
"""
from __future__ import annotations

import logging
import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

from .records import Example

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


@dataclass
class SplitParams:
    relations_dir: str = "data/relations"
    gold_dir: str = "data/gold"
    out_dir: str = "data/split"
    report: str = "reports/split.json"
    group_by: Literal["sentence", "paper"] = "sentence"
    dev_fraction: float = 0.15
    test_fraction: float = 0.15
    min_class_count: int = 3
    train_on_gold: bool = False
    seed: int = 13
    # the schema: a relation declared there with no example is warned by name (null: no check)
    relation_patterns: str | None = "data/patterns/relations.yaml"

    def check(self) -> None:
        for name in ("dev_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        if self.test_fraction == 0:
            raise ValueError("test_fraction is 0: the test split would be empty and evaluate would report no "
                             "score (metrics.json {\"n\": 0}); fix: set split.test_fraction to e.g. 0.15")
        if self.dev_fraction + self.test_fraction >= 1.0:
            raise ValueError("dev_fraction + test_fraction must be < 1 (train needs examples)")
        if self.min_class_count < 1:
            raise ValueError("min_class_count must be >= 1")


@dataclass
class SplitResult:
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    gold: list[Example]
    train_only_classes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[Example]]:
        return {"train": self.train, "dev": self.dev, "test": self.test, "gold": self.gold}


def group_key(ex: Example, group_by: str) -> str:
    return ex.doc_id if group_by == "paper" else f"{ex.doc_id}\t{ex.sent_id}"


def _sort_key(ex: Example) -> tuple:
    return (ex.doc_id, ex.sent_id, ex.id)


def _pick_fold(y: list[str], groups: list[str], fraction: float, seed: int) -> set[int]:
    """Indices of one StratifiedGroupKFold fold holding about ``fraction`` of the examples."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups))
    if fraction <= 0 or n_groups < 2:
        return set()
    k = min(max(2, round(1 / fraction)), n_groups)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "least populated class has fewer members than n_splits": expected for small classes
        warnings.simplefilter("ignore", UserWarning)
        folds = [set(held.tolist()) for _, held in splitter.split(y, y, groups)]
    target = fraction * len(y)
    # folds differ in size; take the one closest to the wanted share (first on ties: deterministic)
    return min(folds, key=lambda f: abs(len(f) - target))


def split_examples(examples: list[Example], params: SplitParams) -> SplitResult:
    gold = sorted((e for e in examples if e.origin == "gold"), key=_sort_key)
    augmented = sorted((e for e in examples if e.origin == "augmented"), key=_sort_key)
    originals = sorted((e for e in examples if e.origin == "auto"), key=_sort_key)
    notes: list[str] = []
    if augmented:
        notes.append(f"{len(augmented)} augmented example(s) in the input were put in train only")

    counts = Counter(e.label for e in originals)
    rare = sorted(lbl for lbl, n in counts.items() if n < params.min_class_count)
    if rare:
        msg = (
            f"classes with fewer than {params.min_class_count} examples stay in train (not stratified): "
            + ", ".join(f"{lbl} ({counts[lbl]})" for lbl in rare)
        )
        log.warning(msg)
        notes.append(msg)

    by_group: dict[str, list[Example]] = defaultdict(list)
    for e in originals:
        by_group[group_key(e, params.group_by)].append(e)
    forced_train = {g for g, exs in by_group.items() if any(e.label in set(rare) for e in exs)}
    if params.train_on_gold:
        # a sentence trained on as gold must not be scored in dev/test through its auto pairs
        forced_train |= {group_key(e, params.group_by) for e in gold} & set(by_group)

    train: list[Example] = [e for g in sorted(forced_train) for e in by_group[g]]
    pool = [e for e in originals if group_key(e, params.group_by) not in forced_train]

    # test first, then dev from what is left, each a fraction of the whole set
    test_idx = _pick_fold(
        [e.label for e in pool], [group_key(e, params.group_by) for e in pool], params.test_fraction, params.seed
    )
    test = [e for i, e in enumerate(pool) if i in test_idx]
    rest = [e for i, e in enumerate(pool) if i not in test_idx]
    dev_share = params.dev_fraction * len(pool) / len(rest) if rest else 0.0
    dev_idx = _pick_fold(
        [e.label for e in rest],
        [group_key(e, params.group_by) for e in rest],
        min(dev_share, 0.99),
        params.seed + 1,
    )
    dev = [e for i, e in enumerate(rest) if i in dev_idx]
    train += [e for i, e in enumerate(rest) if i not in dev_idx]
    train += augmented
    if params.train_on_gold:
        train += gold
    train.sort(key=_sort_key)
    result = SplitResult(train=train, dev=dev, test=test, gold=gold, train_only_classes=rare, warnings=notes)
    for msg in untrained_classes(result):
        log.warning(msg)
        notes.append(msg)
    return result


def untrained_classes(result: SplitResult) -> list[str]:
    """A warning per class with examples in dev/test but none in train."""
    in_train = Counter(e.label for e in result.train)
    held = Counter(e.label for e in result.dev + result.test)
    return [f"class {lbl} has no train example (its {held[lbl]} example(s) all fell in dev/test): the model cannot "
            f"learn it; fix: label more {lbl} examples (patterns or review), or set split.min_class_count to "
            f"{held[lbl] + 1} to keep it in train" for lbl in sorted(held) if not in_train[lbl]]


def unexampled_relations(result: SplitResult, schema: list[str]) -> list[str]:
    """A warning per relation of the schema with no example in any split (gold included)."""
    seen = {e.label for exs in result.as_dict().values() for e in exs}
    return [f"relation {rel} is declared in the schema but has no example: the model will never predict it; fix: "
            "add templates that label it (reports/annotation.md shows which rules fired) or gold examples via "
            "review, or remove it from the schema" for rel in schema if rel not in seen]


def split_counts(result: SplitResult) -> dict:
    """Per-class and per-split counts for reports/split.json."""
    splits = result.as_dict()
    labels = sorted({e.label for exs in splits.values() for e in exs})
    by_split = {
        name: {"total": len(exs), "by_label": dict(sorted(Counter(e.label for e in exs).items()))}
        for name, exs in splits.items()
    }
    by_label = {lbl: {name: by_split[name]["by_label"].get(lbl, 0) for name in splits} for lbl in labels}
    n_orig = sum(by_split[s]["total"] for s in SPLITS) or 1
    return {
        "splits": by_split,
        "labels": by_label,
        "fractions": {s: round(by_split[s]["total"] / n_orig, 4) for s in SPLITS},
        "train_only_classes": result.train_only_classes,
        "warnings": result.warnings,
    }


def leaked_groups(result: SplitResult, group_by: str) -> set[str]:
    """Groups found in more than one of train/dev/test (should be empty)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for name in SPLITS:
        for e in getattr(result, name):
            if e.origin != "gold":
                seen[group_key(e, group_by)].add(name)
    return {g for g, names in seen.items() if len(names) > 1}


def fraction_error(result: SplitResult) -> float:
    """Largest gap between a class's share in dev/test and its share overall (stratification check)."""
    pool = result.train + result.dev + result.test
    overall = Counter(e.label for e in pool)
    total = len(pool)
    worst = 0.0
    for name in ("dev", "test"):
        exs = getattr(result, name)
        if not exs:
            continue
        c = Counter(e.label for e in exs)
        for lbl, n in overall.items():
            if lbl in result.train_only_classes:
                continue
            worst = max(worst, abs(c.get(lbl, 0) / len(exs) - n / total))
    return 0.0 if math.isnan(worst) else worst

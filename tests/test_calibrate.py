"""Temperature scaling, ECE, per-relation thresholds, type constraints (made data)."""
from __future__ import annotations

import numpy as np
import pytest

from stages.calibrate import (
    Calibration, best_threshold, calibrated_proba, decide, expected_calibration_error, find_calibration,
    fit_calibration, fit_temperature, fit_thresholds, load_calibration, model_fingerprint, nll, save_calibration,
    softmax, type_mask,
)

LABELS = ["NO_RELATION", "assigned_to", "occurs_in", "part_of"]
ALLOWED = {"occurs_in": [["TAXON", "STRAT"]], "assigned_to": [["STRAT", "CHRONO"]], "part_of": [["STRAT", "STRAT"]]}


def overconfident(n: int = 3000, k: int = 4, scale: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the model reports scale * z: right argmax, too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    p = softmax(z)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z * scale, y


def test_temperature_scaling_lowers_nll_and_ece_on_overconfident_logits():
    logits, y = overconfident()
    t = fit_temperature(logits, y)
    assert 2.4 < t < 3.6  # recovers the over-scaling it was made with
    assert nll(logits, y, t) < nll(logits, y, 1.0) - 0.1
    before = expected_calibration_error(softmax(logits), y)
    after = expected_calibration_error(softmax(logits, t), y)
    assert after < before / 2 and after < 0.05
    # the argmax never changes
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_underconfident_logits_get_a_temperature_below_one():
    logits, y = overconfident(scale=0.4, seed=1)
    t = fit_temperature(logits, y)
    assert 0.3 < t < 0.5


def test_ece_is_zero_for_perfectly_calibrated_bins_and_large_for_wrong_certainty():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, [0, 0, 0, 1], n_bins=10) == pytest.approx(0.0)
    sure = np.array([[1.0, 0.0]] * 4)
    assert expected_calibration_error(sure, [1, 1, 1, 0], n_bins=10) == pytest.approx(0.75)


def _f1(pred: np.ndarray, gold: np.ndarray) -> float:
    tp = int((pred & gold).sum())
    fp = int((pred & ~gold).sum())
    fn = int((~pred & gold).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_best_threshold_maximises_f1_against_brute_force():
    rng = np.random.default_rng(3)
    for trial in range(20):
        gold = rng.random(60) < 0.3
        scores = np.clip(gold * rng.normal(0.6, 0.2, 60) + ~gold * rng.normal(0.35, 0.2, 60), 0, 1).round(2)
        t, f1 = best_threshold(scores, gold)
        brute = max(_f1(scores >= c, gold) for c in np.unique(scores))
        assert f1 == pytest.approx(brute)
        assert _f1(scores >= t, gold) == pytest.approx(brute)  # the returned threshold achieves it


def test_best_threshold_sits_between_classes_on_separable_scores():
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
    gold = np.array([True, True, True, False, False])
    t, f1 = best_threshold(scores, gold)
    assert f1 == 1.0 and 0.3 < t < 0.7
    assert best_threshold(scores, np.zeros(5, dtype=bool)) == (0.5, 0.0)


def test_type_constraint_zeroes_disallowed_relations_and_renormalises():
    logits = np.array([[0.0, 1.0, 5.0, 2.0],    # STRAT-STRAT pair: occurs_in is the model's favourite
                       [0.0, 1.0, 5.0, 2.0]])   # TAXON-STRAT pair: occurs_in allowed
    mask = type_mask(LABELS, ["STRAT", "TAXON"], ["STRAT", "STRAT"], ALLOWED)
    assert mask.tolist() == [[True, False, False, True], [True, False, True, False]]
    p = calibrated_proba(logits, 1.0, mask)
    assert p[0, LABELS.index("occurs_in")] == 0.0 and p[0, LABELS.index("assigned_to")] == 0.0
    assert np.allclose(p.sum(1), 1.0)
    assert p[0].argmax() == LABELS.index("part_of")  # never occurs_in
    # the allowed relations keep their ratio
    assert p[0, 3] / p[0, 0] == pytest.approx(np.exp(2.0))
    assert p[1].argmax() == LABELS.index("occurs_in")
    # a relation the schema doesn't list cannot be checked: never allowed
    m2 = type_mask(LABELS + ["mystery"], ["TAXON"], ["STRAT"], ALLOWED)
    assert not m2[0, -1]


def test_decide_uses_thresholds_with_no_relation_fallback_and_min_confidence_override():
    probs = np.array([[0.6, 0.0, 0.35, 0.05],   # occurs_in 0.35 passes a 0.3 threshold despite NO_RELATION 0.6
                      [0.7, 0.0, 0.25, 0.05],   # nothing passes -> NO_RELATION
                      [0.1, 0.0, 0.45, 0.45]])  # both pass: the more probable (first on ties)
    idx, conf = decide(probs, LABELS, {"occurs_in": 0.3, "part_of": 0.4, "assigned_to": 0.5})
    assert [LABELS[i] for i in idx] == ["occurs_in", "NO_RELATION", "occurs_in"]
    assert conf.tolist() == pytest.approx([0.35, 0.7, 0.45])
    idx, _ = decide(probs, LABELS, {"occurs_in": 0.3}, min_confidence=0.5)
    assert [LABELS[i] for i in idx] == ["NO_RELATION"] * 3
    idx, _ = decide(probs, LABELS)  # no thresholds: argmax
    assert [LABELS[i] for i in idx] == ["NO_RELATION", "NO_RELATION", "occurs_in"]
    # a masked relation never passes, even with a zero threshold
    idx, _ = decide(probs, LABELS, min_confidence=0.0)
    assert LABELS[idx[1]] == "occurs_in"  # highest positive, assigned_to (p = 0) never chosen


def test_thresholds_fitted_on_made_dev_beat_argmax_for_a_rare_relation():
    # a rare relation the model under-scores: the argmax rarely picks it, a low threshold does
    rng = np.random.default_rng(7)
    n = 600
    y = np.where(rng.random(n) < 0.1, 2, 0)
    p_rel = np.where(y == 2, rng.uniform(0.25, 0.5, n), rng.uniform(0.0, 0.3, n))
    probs = np.stack([1 - p_rel, np.zeros(n), p_rel, np.zeros(n)], axis=1)
    fitted = fit_thresholds(probs, y, LABELS)
    t = fitted["occurs_in"]["threshold"]
    pred_thr, _ = decide(probs, LABELS, {"occurs_in": t})
    pred_max, _ = decide(probs, LABELS)
    f1_thr = _f1(pred_thr == 2, y == 2)
    f1_max = _f1(pred_max == 2, y == 2)
    assert f1_thr == pytest.approx(fitted["occurs_in"]["f1_one_vs_rest"])
    assert f1_thr > f1_max + 0.2
    assert fitted["part_of"]["support"] == 0 and fitted["part_of"]["threshold"] == 0.5


def test_fit_calibration_report_and_round_trip(tmp_path):
    logits, y = overconfident(n=800, k=4, seed=5)
    types = [("TAXON", "STRAT"), ("STRAT", "STRAT"), ("STRAT", "CHRONO")]
    # give every example a type pair its label allows (NO_RELATION: any)
    pairs = [types[1] if LABELS[c] == "part_of" else types[2] if LABELS[c] == "assigned_to" else types[0]
             for c in y]
    cal = fit_calibration(logits, [LABELS[c] for c in y], LABELS, [a for a, _ in pairs], [b for _, b in pairs],
                          ALLOWED, n_bins=10, model_fingerprint="abc")
    r = cal.report
    assert r["n_dev"] == 800 and r["temperature"] > 1.5
    assert r["ece_after"] < r["ece_before"] and r["nll_after"] < r["nll_before"]
    assert set(r["thresholds"]) == {"assigned_to", "occurs_in", "part_of"}
    for rel, v in r["per_relation"].items():
        assert 0 <= v["f1"] <= 1 and v["threshold"] == r["thresholds"][rel]
    assert sum(b["count"] for b in r["reliability_after"]) == 800

    model = tmp_path / "model"
    model.mkdir()
    (model / "relmine.json").write_text("{}")
    save_calibration(model.with_name("model.calibration.json"), cal)
    assert find_calibration(model) == model.with_name("model.calibration.json")
    save_calibration(model / "calibration.json", cal)  # inside the folder wins, and is not fingerprinted
    assert find_calibration(model) == model / "calibration.json"
    assert model_fingerprint(model) == model_fingerprint(model)
    fp = model_fingerprint(model)
    (model / "relmine.json").write_text('{"x": 1}')
    assert model_fingerprint(model) != fp
    back = load_calibration(model / "calibration.json")
    assert isinstance(back, Calibration) and back.temperature == pytest.approx(cal.temperature)
    assert back.thresholds == cal.thresholds and back.labels == LABELS
    # the loaded calibration decodes like the fitted one, type constraint included
    sub = logits[:50]
    p1 = cal.proba(sub, ["STRAT"] * 50, ["STRAT"] * 50)
    p2 = back.proba(sub, ["STRAT"] * 50, ["STRAT"] * 50)
    assert np.allclose(p1, p2)
    labels, _ = back.decide(p2)
    assert "occurs_in" not in labels and "assigned_to" not in labels


def test_empty_dev_gives_identity_calibration():
    cal = fit_calibration(np.zeros((0, 4)), [], LABELS, [], [], ALLOWED)
    assert cal.temperature == 1.0 and cal.thresholds == {"assigned_to": 0.5, "occurs_in": 0.5, "part_of": 0.5}


def test_unknown_dev_label_is_an_input_error():
    from stages.errors import InputError

    with pytest.raises(InputError, match="not among the model's labels"):
        fit_calibration(np.zeros((1, 4)), ["found_at"], LABELS, ["TAXON"], ["LOC"], ALLOWED)


def test_uninformative_scores_push_temperature_to_the_bound_and_are_flagged():
    rng = np.random.default_rng(11)
    logits = rng.normal(0, 4, size=(500, 4))  # confident noise: unrelated to the labels
    y = rng.integers(0, 4, 500)
    cal = fit_calibration(logits, [LABELS[c] for c in y], LABELS, ["TAXON"] * 500, ["STRAT"] * 500,
                          {rel: [["TAXON", "STRAT"]] for rel in LABELS[1:]})
    assert cal.report["temperature_at_bound"] and cal.temperature > 15
    good, yg = overconfident(n=500, seed=2)
    cal2 = fit_calibration(good, [LABELS[c] for c in yg], LABELS, ["TAXON"] * 500, ["STRAT"] * 500,
                           {rel: [["TAXON", "STRAT"]] for rel in LABELS[1:]})
    assert not cal2.report["temperature_at_bound"]


def test_decide_by_argmax_for_relations_whose_threshold_is_none():
    probs = np.array([[0.6, 0.0, 0.35, 0.05],   # occurs_in below NO_RELATION: argmax says no
                      [0.3, 0.0, 0.5, 0.2],     # occurs_in is the argmax
                      [0.5, 0.0, 0.1, 0.4]])    # part_of 0.4 passes its threshold
    idx, _ = decide(probs, LABELS, {"occurs_in": None, "part_of": 0.35, "assigned_to": None})
    assert [LABELS[i] for i in idx] == ["NO_RELATION", "occurs_in", "part_of"]
    all_none = {"occurs_in": None, "part_of": None, "assigned_to": None}
    assert decide(probs, LABELS, all_none)[0].tolist() == decide(probs, LABELS)[0].tolist()


def _rare_relation_dev(n: int, informative: bool, seed: int):
    """Dev probabilities for a rare occurs_in: under-scored but separable (a low threshold
    really helps), or pure noise around the argmax boundary (a tuned threshold only fits noise)."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.1, 2, 0)
    if informative:
        p_rel = np.where(y == 2, rng.uniform(0.25, 0.5, n), rng.uniform(0.0, 0.3, n))
    else:
        p_rel = np.where(y == 2, rng.uniform(0.3, 0.7, n), rng.uniform(0.0, 0.62, n))
    probs = np.stack([1 - p_rel, np.zeros(n), p_rel, np.zeros(n)], axis=1)
    return np.log(np.clip(probs, 1e-9, 1)), [LABELS[c] for c in y]


@pytest.mark.parametrize("informative", [True, False])
def test_a_tuned_threshold_is_kept_only_where_it_beats_argmax_cross_fitted(informative):
    logits, gold = _rare_relation_dev(300, informative, seed=3)
    types = ["TAXON"] * len(gold), ["STRAT"] * len(gold)
    cal = fit_calibration(logits, gold, LABELS, *types, ALLOWED, cross_fit_repeats=20)
    v = cal.report["per_relation"]["occurs_in"]
    assert v["tuned_threshold"] is not None
    if informative:  # the low threshold holds up on held-out halves: kept
        assert v["cross_fitted_f1_threshold"] > v["cross_fitted_f1_argmax"] + 0.2
        assert cal.thresholds["occurs_in"] == v["tuned_threshold"]
    else:  # no better than argmax on held-out halves: argmax
        assert v["cross_fitted_f1_threshold"] <= v["cross_fitted_f1_argmax"]
        assert cal.thresholds["occurs_in"] is None
    unchecked = fit_calibration(logits, gold, LABELS, *types, ALLOWED, cross_fit_repeats=0)
    assert unchecked.thresholds["occurs_in"] == v["tuned_threshold"]


def test_calibration_pairs_come_from_a_gold_folder_or_one_file(tmp_path):
    """calibrate.gold_dir may name the curator's own labelled file (tests/data/relations_curator.jsonl,
    whose records carry extra fields) as well as a folder; neither: the dev split."""
    import logging
    import shutil
    from pathlib import Path

    from flows.calibrate import calibration_examples
    from stages.calibrate import CalibrateParams
    from stages.records import write_jsonl
    from helpers import made_examples

    curator = Path(__file__).parent / "data" / "relations_curator.jsonl"
    dev = tmp_path / "dev.jsonl"
    write_jsonl(dev, made_examples())
    log = logging.getLogger("test")
    from_file = calibration_examples(CalibrateParams(dev=str(dev), gold_dir=str(curator)), log)
    assert len(from_file) == 150 and {e.label for e in from_file} >= {"found_at", "NO_RELATION"}
    folder = tmp_path / "gold"
    folder.mkdir()
    shutil.copy(curator, folder / "curator.jsonl")
    assert [e.id for e in calibration_examples(CalibrateParams(dev=str(dev), gold_dir=str(folder)), log)] == \
        [e.id for e in from_file]
    missing = calibration_examples(CalibrateParams(dev=str(dev), gold_dir=str(tmp_path / "none")), log)
    assert [e.id for e in missing] == [e.id for e in made_examples()]

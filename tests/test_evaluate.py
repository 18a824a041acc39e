"""core.analysis.evaluate against scikit-learn and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (accuracy_score, confusion_matrix, precision_recall_fscore_support,
                             top_k_accuracy_score)

from core.analysis.evaluate import (LOSS_EPS, Evaluation, cell_hover_text, compare_confusions,
                                    correct_examples, evaluate, mistakes, row_normalised, top_k)
from core.data.cifar10 import CLASS_NAMES

LABELS = list(range(10))
CAT, DOG = CLASS_NAMES.index("cat"), CLASS_NAMES.index("dog")


def random_predictions(n: int, seed: int = 0, dtype=np.float32, sharpness: float = 0.5):
    """Labels and Dirichlet probabilities that beat chance, so every cell of the matrix is used."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 10, size=n)
    y_prob = rng.dirichlet(np.full(10, sharpness), size=n)
    y_prob[np.arange(n), y_true] += rng.random(n)  # lean towards the truth
    y_prob /= y_prob.sum(axis=1, keepdims=True)
    return y_true, y_prob.astype(dtype)


def never_predicted(cls: int = 3):
    y_true, y_prob = random_predictions(600, seed=1)
    y_prob[:, cls] = 0.0
    return y_true, y_prob / y_prob.sum(axis=1, keepdims=True)


def absent(cls: int = 7):
    y_true, y_prob = random_predictions(600, seed=2)
    keep = y_true != cls
    return y_true[keep], y_prob[keep]


def perfect():
    y_true = np.tile(np.arange(10), 30)
    return y_true, np.eye(10, dtype=np.float32)[y_true] * 0.91 + 0.01


def brute_rank(row, true: int) -> int:
    """0-based rank of the true class; ties go to the lower class index (like np.argmax)."""
    order = sorted(range(len(row)), key=lambda c: (-float(row[c]), c))
    return order.index(true)


CASES = {
    "random": lambda: random_predictions(2000),
    "never_predicted": never_predicted,
    "absent": absent,
    "perfect": perfect,
    "float16": lambda: random_predictions(2000, seed=3, dtype=np.float16),
}


@pytest.mark.parametrize("case", CASES)
def test_evaluate_matches_sklearn(case):
    y_true, y_prob = CASES[case]()
    ev = evaluate(y_true, y_prob)
    y_pred = np.asarray(y_prob).argmax(axis=1)

    assert isinstance(ev, Evaluation) and ev.n == len(y_true)
    assert ev.confusion.dtype == np.int64
    np.testing.assert_array_equal(ev.confusion, confusion_matrix(y_true, y_pred, labels=LABELS))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    pc = ev.per_class
    assert list(pc.index) == list(CLASS_NAMES)
    assert list(pc.columns) == ["precision", "recall", "f1", "support", "error_rate", "errors",
                                "correct"]
    np.testing.assert_allclose(pc["precision"], p)
    np.testing.assert_allclose(pc["recall"], r)
    np.testing.assert_allclose(pc["f1"], f)
    np.testing.assert_array_equal(pc["support"], s)
    np.testing.assert_array_equal(pc["errors"] + pc["correct"], s)
    np.testing.assert_allclose(pc["error_rate"], np.where(s > 0, 1 - r, 0.0))
    assert ev.top1_accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert ev.top1_accuracy == pytest.approx(np.trace(ev.confusion) / ev.n)

    ranks = np.array([brute_rank(row, t) for row, t in zip(y_prob, y_true)])
    assert ev.top5_accuracy == pytest.approx((ranks < 5).mean())
    # scikit-learn breaks exact ties the other way; on rows without ties the two agree.
    untied = np.array([len(set(row.tolist())) == 10 for row in y_prob])
    if untied.sum() > 100:
        sub = evaluate(y_true[untied], y_prob[untied])
        ref = top_k_accuracy_score(y_true[untied], y_prob[untied].astype(np.float64), k=5,
                                   labels=LABELS)
        assert sub.top5_accuracy == pytest.approx(ref)
        ref1 = top_k_accuracy_score(y_true[untied], y_prob[untied].astype(np.float64), k=1,
                                    labels=LABELS)
        assert sub.top1_accuracy == pytest.approx(ref1)


def test_edge_cases_are_zero_not_nan():
    ev = evaluate(*never_predicted(3))
    assert ev.per_class.loc[CLASS_NAMES[3], "precision"] == 0.0
    assert ev.per_class.loc[CLASS_NAMES[3], "f1"] == 0.0
    ev = evaluate(*absent(7))
    row = ev.per_class.loc[CLASS_NAMES[7]]
    assert row["support"] == 0 and row["recall"] == 0.0 and row["error_rate"] == 0.0
    assert not ev.per_class.isna().any().any()
    assert (ev.confused_pairs["true_index"] != 7).all()

    ev = evaluate(*perfect())
    assert ev.top1_accuracy == ev.top5_accuracy == 1.0
    assert ev.confused_pairs.empty
    assert (ev.per_class[["precision", "recall", "f1"]] == 1.0).all().all()


def test_confused_pairs_against_brute_force():
    y_true, y_prob = random_predictions(3000, seed=4)
    ev = evaluate(y_true, y_prob)
    c = ev.confusion
    expected = sorted(((i, j, int(c[i, j])) for i in range(10) for j in range(10)
                       if i != j and c[i, j] > 0), key=lambda x: (-x[2], x[0], x[1]))
    cp = ev.confused_pairs
    assert list(cp.columns) == ["true", "predicted", "true_index", "predicted_index", "count",
                                "share_of_true"]
    assert list(zip(cp["true_index"], cp["predicted_index"], cp["count"])) == expected
    assert list(cp["true"]) == [CLASS_NAMES[i] for i, _, _ in expected]
    assert list(cp["predicted"]) == [CLASS_NAMES[j] for _, j, _ in expected]
    np.testing.assert_allclose(cp["share_of_true"],
                               [k / c[i].sum() for i, _, k in expected])


def test_evaluation_is_read_only():
    ev = evaluate(*random_predictions(100))
    with pytest.raises(ValueError):
        ev.confusion[0, 0] = 5
    with pytest.raises(AttributeError):
        ev.n = 3


def test_keras_style_column_labels_accepted():
    y_true, y_prob = random_predictions(200)
    a, b = evaluate(y_true, y_prob), evaluate(y_true[:, None], y_prob)
    np.testing.assert_array_equal(a.confusion, b.confusion)


@pytest.mark.parametrize("y_true, y_prob, message", [
    (np.zeros(4, int), np.full((4, 9), 0.1), r"shape \(N, 10\)"),
    (np.zeros(4, int), np.full(10, 0.1), r"shape \(N, 10\)"),
    (np.zeros((4, 2), int), np.full((4, 10), 0.1), r"y_true must be 1-D"),
    (np.zeros(3, int), np.full((4, 10), 0.1), "3 rows but y_prob has 4"),
    (np.zeros(0, int), np.zeros((0, 10)), "empty"),
    (np.zeros(4), np.full((4, 10), 0.1), "integer"),
    (np.array([0, 1, 10, 2]), np.full((4, 10), 0.1), r"0\.\.9"),
    (np.array([0, -1, 1, 2]), np.full((4, 10), 0.1), r"0\.\.9"),
    (np.zeros(2, int), np.array([[np.nan] * 10, [0.1] * 10]), "finite"),
])
def test_evaluate_rejects_bad_input(y_true, y_prob, message):
    with pytest.raises(ValueError, match=message):
        evaluate(y_true, y_prob)


def test_row_normalised():
    c = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    pct = row_normalised(c)
    np.testing.assert_allclose(pct, [[80, 20, 0], [0, 0, 0], [25, 25, 50]])
    ev = evaluate(*absent(7))
    sums = row_normalised(ev.confusion).sum(axis=1)
    np.testing.assert_allclose(np.delete(sums, 7), 100.0)
    assert sums[7] == 0.0
    with pytest.raises(ValueError, match="square"):
        row_normalised(np.zeros((2, 3)))


def test_cell_hover_text_exact():
    c = np.zeros((10, 10), dtype=np.int64)
    c[CAT, CAT], c[CAT, DOG] = 888, 112
    c[DOG, DOG], c[DOG, CAT] = 900, 100
    c[0, 0] = 1000
    text = cell_hover_text(c)
    assert len(text) == 10 and all(len(row) == 10 for row in text)
    assert text[CAT][DOG] == "true cat predicted as dog: 112 (11.2%)"
    assert text[DOG][DOG] == "true dog predicted as dog: 900 (90.0%) — correct"
    assert text[CAT][CAT] == "true cat predicted as cat: 888 (88.8%) — correct"
    assert text[0][0] == "true airplane predicted as airplane: 1,000 (100.0%) — correct"
    assert text[1][2] == "true automobile predicted as bird: 0 (0.0%)"  # empty row stays 0%
    with pytest.raises(ValueError):
        cell_hover_text(np.zeros((3, 3)))


def brute_examples(y_true, y_prob, want_mistake, true_class, predicted_class, sort):
    rows = []
    for i, (t, row) in enumerate(zip(y_true, y_prob)):
        pred = int(np.argmax(row))
        if (pred != t) != want_mistake:
            continue
        if true_class is not None and t != true_class:
            continue
        if predicted_class is not None and pred != predicted_class:
            continue
        conf, pt = float(row[pred]), float(row[t])
        loss = -math.log(max(pt, LOSS_EPS))
        rows.append((i, CLASS_NAMES[t], CLASS_NAMES[pred], conf, pt, loss, brute_rank(row, t) + 1))
    key = (lambda r: (-r[3], r[0])) if sort == "confidence" else (lambda r: (-r[5], r[0]))
    return sorted(rows, key=key)


def assert_matches(frame: pd.DataFrame, expected):
    assert list(frame.columns) == ["index", "true", "predicted", "true_index", "predicted_index",
                                   "confidence", "true_prob", "loss", "rank"]
    assert list(frame.index) == list(range(len(expected)))
    assert list(frame["index"]) == [r[0] for r in expected]
    assert list(frame["true"]) == [r[1] for r in expected]
    assert list(frame["predicted"]) == [r[2] for r in expected]
    assert list(frame["true_index"]) == [CLASS_NAMES.index(r[1]) for r in expected]
    assert list(frame["predicted_index"]) == [CLASS_NAMES.index(r[2]) for r in expected]
    np.testing.assert_allclose(frame["confidence"], [r[3] for r in expected], rtol=1e-6)
    np.testing.assert_allclose(frame["true_prob"], [r[4] for r in expected], rtol=1e-6)
    np.testing.assert_allclose(frame["loss"], [r[5] for r in expected], rtol=1e-6)
    assert list(frame["rank"]) == [r[6] for r in expected]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("sort", ["confidence", "loss"])
@pytest.mark.parametrize("true_class, predicted_class", [(None, None), (CAT, None),
                                                         (None, DOG), (CAT, DOG)])
def test_mistakes_against_brute_force(dtype, sort, true_class, predicted_class):
    y_true, y_prob = random_predictions(1500, seed=5, dtype=dtype)
    frame = mistakes(y_true, y_prob, true_class=true_class, predicted_class=predicted_class,
                     sort=sort)
    expected = brute_examples(y_true, y_prob, True, true_class, predicted_class, sort)
    assert len(expected) > 0
    assert_matches(frame, expected)
    assert (frame["rank"] >= 2).all()
    key = frame["confidence"] if sort == "confidence" else frame["loss"]
    assert key.is_monotonic_decreasing


@pytest.mark.parametrize("sort", ["confidence", "loss"])
def test_correct_examples_against_brute_force(sort):
    y_true, y_prob = random_predictions(1500, seed=6)
    frame = correct_examples(y_true, y_prob, true_class=CAT, sort=sort)
    assert_matches(frame, brute_examples(y_true, y_prob, False, CAT, None, sort))
    assert (frame["rank"] == 1).all() and (frame["true"] == "cat").all()


def test_mistake_ties_keep_test_order_and_loss_is_clipped():
    y_true = np.array([0, 0, 0, 1])
    y_prob = np.zeros((4, 10), dtype=np.float16)
    y_prob[:, 5] = 1.0  # three identical confident mistakes, the true class at p = 0
    y_prob[3, 1] = 1.0  # a correct row: argmax picks class 1 (lower index) on the tie
    frame = mistakes(y_true, y_prob, sort="loss")
    assert list(frame["index"]) == [0, 1, 2]
    np.testing.assert_allclose(frame["loss"], -math.log(LOSS_EPS))
    assert np.isfinite(frame["loss"]).all()
    assert list(frame["rank"]) == [2, 2, 2]  # class 0 ties with the zeros, wins them on index
    assert list(mistakes(y_true, y_prob)["index"]) == [0, 1, 2]


def test_no_mistakes_gives_empty_frame_with_columns():
    frame = mistakes(*perfect())
    assert frame.empty and "confidence" in frame.columns and "rank" in frame.columns


@pytest.mark.parametrize("kwargs, message", [
    (dict(sort="random"), "sort must be one of"),
    (dict(true_class=10), "true_class"),
    (dict(predicted_class=-1), "predicted_class"),
    (dict(true_class="cat"), "true_class"),
])
def test_mistakes_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mistakes(*random_predictions(50), **kwargs)


def test_top_k():
    row = np.array([0.05, 0.3, 0.05, 0.4, 0.2], dtype=np.float16)
    got = top_k(row, k=3)
    assert [c for c, _ in got] == [3, 1, 4]
    assert all(isinstance(c, int) and isinstance(p, float) for c, p in got)
    assert got[0][1] == pytest.approx(0.4, abs=1e-3)
    assert [c for c, _ in top_k(row, k=5)] == [3, 1, 4, 0, 2]  # tie: lower index first
    for k in (0, 6):
        with pytest.raises(ValueError, match="k must be"):
            top_k(row, k=k)


def test_compare_confusions_sentences_and_ranking():
    a = np.full((10, 10), 5, dtype=np.int64)
    b = a.copy()
    a[CAT, DOG], b[CAT, DOG] = 100, 60
    a[DOG, CAT], b[DOG, CAT] = 30, 31
    a[0, 8], b[0, 8] = 10, 25
    b[4, 4] += 500  # diagonal changes are not confusions
    frame = compare_confusions(a, b, label_a="B0", label_b="B2")
    assert list(frame.columns) == ["true", "predicted", "true_index", "predicted_index",
                                   "count_a", "count_b", "change", "sentence"]
    assert list(frame["sentence"]) == [
        "B2 mistakes cat for dog 40 fewer times than B0 (60 vs 100)",
        "B2 mistakes airplane for ship 15 more times than B0 (25 vs 10)",
        "B2 mistakes dog for cat 1 more time than B0 (31 vs 30)",
    ]
    assert list(frame["change"]) == [-40, 15, 1]
    assert list(frame["true_index"]) == [CAT, 0, DOG]
    assert compare_confusions(a, a).empty
    default = compare_confusions(a, b)
    assert default["sentence"].iloc[0].startswith("B mistakes cat for dog") and " than A " in \
        default["sentence"].iloc[0]
    with pytest.raises(ValueError, match="same shape"):
        compare_confusions(a, b[:9, :9])


def test_ten_thousand_rows_sanity():
    y_true, y_prob = random_predictions(10_000, seed=7, dtype=np.float16)
    ev = evaluate(y_true, y_prob)
    assert ev.n == 10_000 and ev.confusion.sum() == 10_000
    assert ev.per_class["support"].sum() == 10_000
    np.testing.assert_array_equal(ev.per_class["support"], np.bincount(y_true, minlength=10))
    assert 0.1 < ev.top1_accuracy <= ev.top5_accuracy <= 1.0
    assert ev.confused_pairs["count"].sum() == 10_000 - np.trace(ev.confusion)
    frame = mistakes(y_true, y_prob)
    assert len(frame) == ev.per_class["errors"].sum()
    assert frame["index"].is_unique

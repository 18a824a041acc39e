"""Predictions -> confusion matrix, per-class report, ranked mistakes.

Everything here works on a run's `predictions.npz`: `y_true` (N,) class indices and `y_prob`
(N, 10) probabilities (float16 on disk), rows in CIFAR-10 test-set order. numpy and pandas only,
vectorised, so a page can call any of it on 10,000 rows per rerun. Undefined ratios (a class
never predicted, a class absent) are 0, as scikit-learn's `zero_division=0`.

Ties between equal probabilities (common in float16) are broken towards the lower class index,
as `np.argmax` does, so top-1 accuracy is always trace(confusion) / n and a mistake's `rank` agrees
with its `predicted` class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.data.cifar10 import CLASS_NAMES

N_CLASSES = len(CLASS_NAMES)
LOSS_EPS = 1e-7  # Keras's epsilon: -log(p_true) is clipped at -log(1e-7) ~ 16.1
SORTS = ("confidence", "loss")


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy/pandas fields with == is ambiguous
class Evaluation:
    """Everything the pages show about one run's test predictions."""

    confusion: np.ndarray          # int64 (10, 10), rows = true, cols = predicted; read-only
    per_class: pd.DataFrame        # index = class name; precision, recall, f1, support,
                                   # error_rate, errors, correct
    top1_accuracy: float
    top5_accuracy: float
    n: int
    confused_pairs: pd.DataFrame   # true, predicted, true_index, predicted_index, count,
                                   # share_of_true; ranked by count


def _checked(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise to (y_true int64 (N,), y_prob float32/64 (N, 10))."""
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    if y_true.ndim == 2 and y_true.shape[1] == 1:  # Keras's CIFAR-10 labels come as (N, 1)
        y_true = y_true[:, 0]
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be 1-D class indices (N,), got shape {y_true.shape}")
    if y_prob.ndim != 2 or y_prob.shape[1] != N_CLASSES:
        raise ValueError(f"y_prob must have shape (N, {N_CLASSES}), got shape {y_prob.shape}")
    if len(y_true) != len(y_prob):
        raise ValueError(f"y_true has {len(y_true)} rows but y_prob has {len(y_prob)}")
    if len(y_true) == 0:
        raise ValueError("no predictions: y_true and y_prob are empty")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {y_true.dtype}")
    if y_true.min() < 0 or y_true.max() >= N_CLASSES:
        raise ValueError(f"y_true must be in 0..{N_CLASSES - 1}, "
                         f"got {y_true.min()}..{y_true.max()}")
    if not np.issubdtype(y_prob.dtype, np.floating) or not np.isfinite(y_prob).all():
        raise ValueError("y_prob must hold finite floating-point probabilities")
    dtype = np.promote_types(y_prob.dtype, np.float32)  # float16 -> float32; float64 stays
    return y_true.astype(np.int64, copy=False), y_prob.astype(dtype, copy=False)


def _true_rank(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """0-based rank of the true class in each row (ties: lower class index first)."""
    p_true = y_prob[np.arange(len(y_true)), y_true][:, None]
    lower = np.arange(y_prob.shape[1])[None, :] < y_true[:, None]
    return ((y_prob > p_true) | ((y_prob == p_true) & lower)).sum(axis=1)


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int = N_CLASSES) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def evaluate(y_true, y_prob) -> Evaluation:
    """Score a run's test predictions.

    Args:
        y_true: Integer class indices, shape (N,) (or Keras's (N, 1)).
        y_prob: Class probabilities, shape (N, 10), float16 or float32.

    Returns:
        An `Evaluation`; ratios that would divide by zero are 0 (`zero_division=0`).

    Raises:
        ValueError: On mismatched or malformed shapes, labels outside 0..9, or non-finite
            probabilities.
    """
    y_true, y_prob = _checked(y_true, y_prob)
    confusion = _confusion(y_true, y_prob.argmax(axis=1))
    confusion.flags.writeable = False
    tp = np.diag(confusion).copy()
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    per_class = pd.DataFrame(
        {
            "precision": _ratio(tp, predicted),
            "recall": _ratio(tp, support),
            "f1": _ratio(2 * tp, support + predicted),  # = 2PR/(P+R), 0 where tp = 0
            "support": support,
            "error_rate": _ratio(support - tp, support),
            "errors": support - tp,
            "correct": tp,
        },
        index=pd.Index(CLASS_NAMES, name="class"),
    )
    n = len(y_true)
    return Evaluation(
        confusion=confusion,
        per_class=per_class,
        top1_accuracy=float(tp.sum() / n),
        top5_accuracy=float((_true_rank(y_true, y_prob) < 5).mean()),
        n=n,
        confused_pairs=_confused_pairs(confusion, support),
    )


def _confused_pairs(confusion: np.ndarray, support: np.ndarray) -> pd.DataFrame:
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    t, p = np.nonzero(off)
    counts = off[t, p]
    order = np.lexsort((p, t, -counts))  # count desc, then class order
    t, p, counts = t[order], p[order], counts[order]
    names = np.asarray(CLASS_NAMES, dtype=object)
    return pd.DataFrame({
        "true": names[t], "predicted": names[p], "true_index": t.astype(np.int64),
        "predicted_index": p.astype(np.int64), "count": counts.astype(np.int64),
        "share_of_true": counts / support[t],
    })


def row_normalised(confusion) -> np.ndarray:
    """Percentages per true class: each row sums to 100, an all-zero row stays 0.

    Args:
        confusion: Square count matrix, rows = true class.

    Returns:
        A float64 array of the same shape.
    """
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {c.shape}")
    return 100.0 * _ratio(c, np.broadcast_to(c.sum(axis=1, keepdims=True), c.shape))


def cell_hover_text(confusion, class_names=CLASS_NAMES) -> list[list[str]]:
    """Hover text for each confusion-matrix cell, e.g. "true cat predicted as dog: 112 (11.2%)".

    The percentage is of the true class's row; diagonal cells end with " — correct".

    Args:
        confusion: Square count matrix, rows = true class.
        class_names: Names of the classes in index order.

    Returns:
        Nested lists, `text[true][predicted]`.
    """
    counts = np.asarray(confusion)
    pct = row_normalised(counts)
    if len(class_names) != counts.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {counts.shape[0]}-class matrix")
    return [
        [f"true {t} predicted as {p}: {int(counts[i, j]):,} ({pct[i, j]:.1f}%)"
         + (" — correct" if i == j else "")
         for j, p in enumerate(class_names)]
        for i, t in enumerate(class_names)
    ]


def _class_arg(value, name: str) -> int | None:
    if value is None:
        return None
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or not 0 <= value < N_CLASSES:
        raise ValueError(f"{name} must be a class index in 0..{N_CLASSES - 1} or None, "
                         f"got {value!r}")
    return int(value)


def _examples(y_true, y_prob, keep_mistakes: bool, true_class, predicted_class,
              sort: str) -> pd.DataFrame:
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {SORTS}, got {sort!r}")
    true_class = _class_arg(true_class, "true_class")
    predicted_class = _class_arg(predicted_class, "predicted_class")
    y_true, y_prob = _checked(y_true, y_prob)
    y_pred = y_prob.argmax(axis=1)
    mask = (y_pred != y_true) if keep_mistakes else (y_pred == y_true)
    if true_class is not None:
        mask &= y_true == true_class
    if predicted_class is not None:
        mask &= y_pred == predicted_class
    idx = np.flatnonzero(mask)
    t, p, probs = y_true[idx], y_pred[idx], y_prob[idx]
    rows = np.arange(len(idx))
    confidence = probs[rows, p].astype(np.float64)
    true_prob = probs[rows, t].astype(np.float64)
    loss = -np.log(np.clip(true_prob, LOSS_EPS, 1.0))
    key = confidence if sort == "confidence" else loss
    order = np.lexsort((idx, -key))  # highest key first; ties in test-set order
    names = np.asarray(CLASS_NAMES, dtype=object)
    frame = pd.DataFrame({
        "index": idx, "true": names[t], "predicted": names[p],
        "true_index": t, "predicted_index": p,
        "confidence": confidence, "true_prob": true_prob, "loss": loss,
        "rank": _true_rank(t, probs) + 1,
    })
    return frame.iloc[order].reset_index(drop=True)


def mistakes(y_true, y_prob, *, true_class: int | None = None, predicted_class: int | None = None,
             sort: str = "confidence") -> pd.DataFrame:
    """Misclassified test rows, ranked.

    Args:
        y_true, y_prob: As for `evaluate`.
        true_class: Keep only rows of this true class (index), or all.
        predicted_class: Keep only rows predicted as this class (index), or all.
        sort: "confidence" (most confident mistakes first) or "loss" (highest loss first);
            ties keep test-set order.

    Returns:
        One row per mistake with columns index (test row), true, predicted (names),
        true_index, predicted_index, confidence (probability of the predicted class),
        true_prob, loss (-log true_prob, clipped at -log 1e-7) and rank (1-based position of the
        true class in the row's probabilities: 2 = the true class was the runner-up).
    """
    return _examples(y_true, y_prob, True, true_class, predicted_class, sort)


def correct_examples(y_true, y_prob, *, true_class: int, sort: str = "confidence") -> pd.DataFrame:
    """Correctly classified test rows of one class, for contrast with `mistakes`.

    Args:
        y_true, y_prob: As for `evaluate`.
        true_class: The class (index) to show.
        sort: "confidence" (most confident first) or "loss" (least sure first).

    Returns:
        The same columns as `mistakes` (rank is always 1).
    """
    if true_class is None:
        raise ValueError("true_class is required")
    return _examples(y_true, y_prob, False, true_class, None, sort)


def top_k(y_prob_row, k: int = 5) -> list[tuple[int, float]]:
    """The k most probable classes of one prediction, most probable first.

    Args:
        y_prob_row: Probabilities of one row, shape (C,).
        k: How many classes, 1..C.

    Returns:
        [(class_index, probability), ...]; ties list the lower class index first.
    """
    row = np.asarray(y_prob_row, dtype=np.float64)
    if row.ndim != 1:
        raise ValueError(f"y_prob_row must be 1-D, got shape {row.shape}")
    if not 1 <= k <= len(row):
        raise ValueError(f"k must be in 1..{len(row)}, got {k}")
    order = np.argsort(-row, kind="stable")[:k]
    return [(int(i), float(row[i])) for i in order]


def compare_confusions(a, b, class_names=CLASS_NAMES, *, label_a: str = "A",
                       label_b: str = "B") -> pd.DataFrame:
    """How two runs' confusions differ, as ranked off-diagonal changes (b - a).

    Args:
        a: Confusion matrix of the first run (rows = true class).
        b: Confusion matrix of the second run, same shape.
        class_names: Names of the classes in index order.
        label_a: How sentences name run a, e.g. "B0".
        label_b: How sentences name run b, e.g. "B2".

    Returns:
        One row per changed off-diagonal cell, largest |change| first: true, predicted,
        true_index, predicted_index, count_a, count_b, change (b - a) and a sentence such as
        "B2 mistakes cat for dog 40 fewer times than B0 (60 vs 100)".
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need two square matrices of the same shape, "
                         f"got {a.shape} and {b.shape}")
    if len(class_names) != a.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {a.shape[0]}-class matrix")
    change = b - a
    np.fill_diagonal(change, 0)
    t, p = np.nonzero(change)
    order = np.lexsort((p, t, -np.abs(change[t, p])))
    t, p = t[order], p[order]
    names = np.asarray(class_names, dtype=object)

    def sentence(i: int, j: int) -> str:
        d = int(change[i, j])
        times = "time" if abs(d) == 1 else "times"
        more = "more" if d > 0 else "fewer"
        return (f"{label_b} mistakes {names[i]} for {names[j]} {abs(d)} {more} {times} than "
                f"{label_a} ({b[i, j]} vs {a[i, j]})")

    return pd.DataFrame({
        "true": names[t], "predicted": names[p], "true_index": t.astype(np.int64),
        "predicted_index": p.astype(np.int64), "count_a": a[t, p], "count_b": b[t, p],
        "change": change[t, p], "sentence": [sentence(i, j) for i, j in zip(t, p)],
    }, columns=["true", "predicted", "true_index", "predicted_index", "count_a", "count_b",
                "change", "sentence"])

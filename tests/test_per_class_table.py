"""dashboard.report.per_class_table: the one per-class table the confusion page and the shareable
report both show, checked against counts made by hand from the predictions."""

from __future__ import annotations

import numpy as np

from core.analysis.evaluate import evaluate
from core.data.cifar10 import CLASS_NAMES
from dashboard.report import PER_CLASS_COLUMNS, _per_class_table, per_class_table


def _predictions():
    rng = np.random.default_rng(3)
    y_true = np.repeat(np.arange(10), 20)
    predicted = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 10, 200))
    predicted[y_true == 9] = 0                  # class 9 never right, and never predicted
    y_prob = np.full((200, 10), 0.01)
    y_prob[np.arange(200), predicted] = 0.91
    return y_true, predicted, y_prob


def test_table_values_are_the_hand_counted_ones():
    y_true, predicted, y_prob = _predictions()
    table = per_class_table(evaluate(y_true, y_prob).per_class)
    assert list(table.index) == list(CLASS_NAMES) and list(table.columns) == list(PER_CLASS_COLUMNS)
    for k, name in enumerate(CLASS_NAMES):
        row = table.loc[name]
        correct = int(np.sum((y_true == k) & (predicted == k)))
        assert row["support"] == 20 and row["errors"] == 20 - correct
        np.testing.assert_allclose(row["recall"], 100 * correct / 20)
        np.testing.assert_allclose(row["error_rate"], 100 - 100 * correct / 20)
        if np.any(predicted == k):
            np.testing.assert_allclose(row["precision"], 100 * correct / np.sum(predicted == k))
    assert table["support"].dtype.kind == "i" and table["errors"].dtype.kind == "i"


def test_the_report_prints_the_same_table():
    y_true, _, y_prob = _predictions()
    evaluation = evaluate(y_true, y_prob)
    html = _per_class_table(evaluation)
    for header, _ in PER_CLASS_COLUMNS.values():
        assert f"<th class=num>{header}</th>" in html
    table = per_class_table(evaluation.per_class)
    cat = table.loc["cat"]
    expected = "".join(f"<td class=num>{fmt % cat[col]}</td>" for col, (_, fmt) in PER_CLASS_COLUMNS.items())
    assert f"<tr><td>cat</td>{expected}</tr>" in html
    truck = table.loc["truck"]                 # never predicted: precision 0, not a division error
    assert truck["precision"] == 0 and truck["recall"] == 0 and truck["errors"] == 20
    assert "<tr><td>truck</td><td class=num>0.0</td><td class=num>0.0</td>" in html

"""The sentence on top of the compare page: dashboard.compare_charts.change_sentence on made-up
matrices (checked against the pair counts by hand), and on the page with two real runs."""

from __future__ import annotations

import numpy as np

from core.analysis.evaluate import evaluate
from core.store.runs import RunStore
from dashboard.compare_charts import change_sentence, pair_changes, setting_changes, settings_frame
from test_pages_classroom import two_runs  # noqa: F401 - the fixture: the trained run and a B2 copy

B0 = {"variant": "b0", "learning_rate": 0.001, "epochs": 4, "seed": 1, "weights": "imagenet"}


def _confusions():
    a = np.full((10, 10), 10)
    np.fill_diagonal(a, 910)
    b = a.copy()
    b[3, 5], b[5, 3], b[3, 3], b[5, 5] = 0, 5, 920, 915      # cat→dog −10, dog→cat −5: the pair −15
    b[0, 8], b[0, 0] = 16, 904                              # airplane→ship +6
    return a, b


def test_the_issues_example():
    a, b = _confusions()
    sentence = change_sentence("B0", "B2", B0, {**B0, "variant": "b2"}, 0.70, 0.761, a, b)
    assert sentence == "B2 instead of B0, same settings: +6.1 points; cat\u2194dog confusions \u221215"


def test_other_settings_are_named_then_counted():
    a, b = _confusions()
    changed = {**B0, "learning_rate": 0.0003}
    assert change_sentence("B0 · 1", "B0 · 2", B0, changed, 0.70, 0.65, a, b) == \
        "B0 · 2 with learning_rate 0.0003 instead of 0.001: \u22125.0 points; cat\u2194dog confusions \u221215"
    many = {**B0, "variant": "b2", "learning_rate": 0.0003, "epochs": 6, "seed": 2}
    assert change_sentence("B0", "B2", B0, many, 0.5, 0.5) == (
        "B2 instead of B0, learning_rate 0.0003 instead of 0.001, epochs 6 instead of 4 and 1 more setting: "
        "+0.0 points")
    assert setting_changes(B0, {**B0, "head": "seed"}, "A", "B") == ["head seed instead of \u2014"]


def test_a_special_value_says_what_it_means():
    """dropout -1 is not a rate: the sentence and the settings table say it is the variant's own."""
    assert setting_changes({**B0, "dropout": -1.0}, {**B0, "dropout": 0.0}, "A", "B") == [
        "dropout 0 instead of -1 (the variant's own)"]
    frame = settings_frame({"A": {"dropout": -1.0, "seed": -1}, "B": {"dropout": 0.2}})
    assert frame.loc["dropout"].tolist() == ["-1 (the variant's own)", "0.2"]
    assert frame.loc["seed"].tolist()[0] == "-1"                  # only the setting that declares it


def test_missing_results_are_said_not_invented():
    a, b = _confusions()
    assert change_sentence("B0 · 1", "B0 · 2", B0, B0, 0.7, None, a, b) == \
        "B0 · 2 repeats B0 · 1 with the same settings: no test accuracy for B0 · 2 yet; cat\u2194dog confusions \u221215"
    # Different test-set sizes: counts are not comparable, so no confusion part.
    assert change_sentence("B0", "B2", B0, {**B0, "variant": "b2"}, 0.7, 0.7, a, b * 2) == \
        "B2 instead of B0, same settings: +0.0 points"
    assert change_sentence("B0", "B2", B0, {**B0, "variant": "b2"}, None, None) == \
        "B2 instead of B0, same settings: no test accuracy for B0 and B2 yet"


def test_the_compare_page_opens_with_the_sentence(app_factory, two_runs):  # noqa: F811
    runs, base_id, other_id = two_runs
    base, other = (evaluate(*RunStore(runs).get(rid).read_predictions()) for rid in (base_id, other_id))
    at = app_factory(runs)("../pages/compare.py", runs_dir=runs)
    top = pair_changes(base.confusion, other.confusion, "B0", "B2").iloc[0]
    points = 100 * (other.top1_accuracy - base.top1_accuracy)
    # Settings in config order (optimizer comes before learning_rate); the tiny run's rate is 0.003.
    expected = (f"B2 instead of B0, optimizer sgd instead of adam and learning_rate 0.0003 instead of 0.003: "
                f"{points:+.1f} points; {top['first']}\u2194{top['second']} confusions {int(top['change']):+d}"
                ).replace("-", "\u2212")
    first = at.markdown[0].value
    assert first.startswith("**") and first.replace("\\", "").strip("*") == expected

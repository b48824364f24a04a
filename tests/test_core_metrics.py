"""emocap.metrics against numbers worked out by hand."""

import numpy as np
import pytest

from emocap.metrics import classification_metrics, expected_calibration_error, top_k_accuracy

NAMES = ["a", "b", "c"]
# 10 samples, supports 4 / 2 / 4.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 2, 2, 2, 1, 2])
# Confusion matrix by hand (rows true, cols predicted):
#   a: 3 1 0      recall 3/4    precision 3/3
#   b: 0 1 1      recall 1/2    precision 1/3
#   c: 0 1 3      recall 3/4    precision 3/4
CM = [[3, 1, 0], [0, 1, 1], [0, 1, 3]]


def _f1(p, r):
    return 2 * p * r / (p + r)


def test_metrics_from_hard_predictions_match_hand_computation():
    m = classification_metrics(Y_TRUE, Y_PRED, NAMES)
    assert m["n"] == 10
    assert m["confusion_matrix"] == CM
    assert m["war"] == pytest.approx(7 / 10)
    assert m["acc1"] == m["war"]
    assert m["per_class_recall"] == pytest.approx({"a": 3 / 4, "b": 1 / 2, "c": 3 / 4})
    assert m["uar"] == pytest.approx((3 / 4 + 1 / 2 + 3 / 4) / 3)
    assert m["mean_per_class_recall"] == m["uar"]
    expected_f1 = (_f1(1.0, 3 / 4) + _f1(1 / 3, 1 / 2) + _f1(3 / 4, 3 / 4)) / 3
    assert m["macro_f1"] == pytest.approx(expected_f1)
    assert m["per_class_support"] == {"a": 4, "b": 2, "c": 4}
    assert m["ece"] is None and "acc2" not in m  # no probabilities, no calibration or top-k


def test_metrics_from_probabilities_use_argmax_and_add_ece():
    probs = np.full((10, 3), 0.1)
    probs[np.arange(10), Y_PRED] = 0.8
    m = classification_metrics(Y_TRUE, probs, NAMES)
    assert m["confusion_matrix"] == CM
    assert m["war"] == pytest.approx(0.7)
    # all confidences 0.8 fall in one bin: |accuracy - confidence| = |0.7 - 0.8|
    assert m["ece"] == pytest.approx(0.1)
    # top 2 = predicted class, then the lower-index other class: samples 5 (true b, top2 c,a) and 8 (true c,
    # top2 b,a) still miss
    assert m["acc2"] == pytest.approx(8 / 10)
    assert "acc3" not in m  # k must be below the number of classes


def test_ece_uses_15_bins_and_top_k_breaks_ties_like_argmax():
    y = np.array([0, 1, 1, 2])
    probs = np.array([
        [0.9, 0.05, 0.05],  # correct, confidence 0.9
        [0.9, 0.05, 0.05],  # wrong, 0.9 (same bin as above)
        [0.15, 0.7, 0.15],  # correct, 0.7
        [0.5, 0.3, 0.2],    # wrong, 0.5; true class is last in the ranking
    ])
    # bins: {0.9, 0.9}: acc 0.5 conf 0.9; {0.7}: acc 1 conf 0.7; {0.5}: acc 0 conf 0.5
    expected = 2 / 4 * 0.4 + 1 / 4 * 0.3 + 1 / 4 * 0.5
    assert expected_calibration_error(y, probs) == pytest.approx(expected)
    assert expected_calibration_error(y, probs, n_bins=1) == pytest.approx(abs(0.5 - 0.75))
    assert top_k_accuracy(y, probs, 1) == pytest.approx(0.5)
    # row 2 ranks [0, 1, 2] (tie between 1 and 2 goes to the lower index), so its true class 1 is in the top 2
    assert top_k_accuracy(y, probs, 2) == pytest.approx(0.75)
    assert top_k_accuracy(y, probs, 3) == pytest.approx(1.0)
    m = classification_metrics(y, probs, NAMES)
    assert m["acc2"] == pytest.approx(0.75)
    assert m["ece"] == pytest.approx(expected)


def test_uar_and_macro_f1_ignore_classes_absent_from_y_true():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 3, 1, 1])  # one sample predicted as class "d", which has no test sample
    m = classification_metrics(y, pred, ["a", "b", "c", "d"])
    assert m["per_class_recall"]["c"] is None and m["per_class_recall"]["d"] is None
    assert m["uar"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["macro_f1"] == pytest.approx((_f1(1.0, 0.5) + 1.0) / 2)
    assert m["confusion_matrix"][0] == [1, 0, 0, 1]
    assert m["war"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    "y, pred, match",
    [
        (np.array([0, 3]), np.array([0, 1]), "outside"),
        (np.array([0, 1]), np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]]), "softmax"),
        (np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]]), "shape"),
        (np.array([], dtype=int), np.array([], dtype=int), "non-empty"),
        (np.array([0, 1, 2]), np.array([0, 1]), "predictions"),
    ],
)
def test_bad_inputs_are_clear_errors(y, pred, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, pred, NAMES)


def test_metrics_equal_scikit_learn_on_random_predictions():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    rng = np.random.RandomState(7)
    for n_classes in (2, 5, 8):
        y = rng.randint(0, n_classes - 1, 300)  # the last class never occurs in y_true
        pred = rng.randint(0, n_classes, 300)
        m = classification_metrics(y, pred, [str(i) for i in range(n_classes)])
        present = sorted(set(y.tolist()))
        assert m["war"] == pytest.approx(accuracy_score(y, pred))
        assert m["uar"] == pytest.approx(recall_score(y, pred, labels=present, average="macro", zero_division=0))
        assert m["macro_f1"] == pytest.approx(f1_score(y, pred, labels=present, average="macro", zero_division=0))
        assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=list(range(n_classes))).tolist()

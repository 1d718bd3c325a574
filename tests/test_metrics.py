import math

import numpy as np
import pandas as pd
import pytest

from scfmbench import InputError
from scfmbench.metrics import accuracy, binary_f1, macro_f1, mse, pearson
from scfmbench.results import METRIC_COLUMNS, metrics_record, read_benchmark, read_metrics, write_metrics


def test_accuracy_by_hand():
    assert accuracy(["a", "b", "b", "c"], ["a", "b", "c", "c"]) == 0.75


def test_macro_f1_by_hand():
    # class a: P=1, R=1 -> 1; class b: P=1, R=1/2 -> 2/3; class c: P=1/2, R=1 -> 2/3
    assert macro_f1(["a", "b", "b", "c"], ["a", "b", "c", "c"]) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_macro_f1_counts_a_class_never_predicted_as_zero():
    assert macro_f1(["a", "a", "b"], ["a", "a", "a"]) == pytest.approx((0.8 + 0.0) / 2)


def test_mse_and_pearson_by_hand():
    assert mse([1, 2, 3], [1, 2, 5]) == pytest.approx(4 / 3)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = (1,2,3,4), y = (1,3,2,4): cov = 4/4... r = 0.8 by hand
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(pearson([1, 2, 3], [0, 0, 0]))


def test_metrics_record_reads_benchmark(tmp_path):
    bench = tmp_path / "b.tsv"
    bench.write_text("s\th:m:s\tmax_rss\tmax_vms\n12.5\t0:00:12\t321.0\t900\n")
    assert read_benchmark(bench) == (12.5, 321.0)
    rec = metrics_record(
        task="annotation", dataset="d", method="m", seed=1, metrics={"accuracy": 0.5, "macro_f1": 0.25}, benchmark=bench
    )
    assert list(rec.columns) == METRIC_COLUMNS
    assert rec["runtime_s"].tolist() == [12.5, 12.5]
    write_metrics(rec, tmp_path / "m.csv")
    back = read_metrics([tmp_path / "m.csv"])
    pd.testing.assert_frame_equal(back, rec)


def test_bad_record_names_file(tmp_path):
    (tmp_path / "bad.csv").write_text("task,value\nannotation,1\n")
    with pytest.raises(InputError, match="bad.csv"):
        read_metrics([tmp_path / "bad.csv"])
    with pytest.raises(InputError, match="unknown task"):
        metrics_record(task="annot", dataset="d", method="m", seed=0, metrics={})


@pytest.mark.parametrize("seed", range(20))
def test_classification_metrics_equal_scikit_learn(seed):
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 60)), int(rng.integers(1, 8))
    # labels drawn from overlapping alphabets: classes only in truth, only in prediction, in both
    y_true = rng.choice([f"c{i}" for i in range(k)], n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.choice([f"c{i}" for i in range(1, k + 2)], n))
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert macro_f1(y_true, y_pred) == pytest.approx(
        f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-12
    )
    # integer codes score like their string forms (the training loop passes class indices)
    positive = y_true == "c0", y_pred == "c0"  # one class against the rest (doublet F1)
    assert binary_f1(*positive) == pytest.approx(f1_score(*positive, zero_division=0), abs=1e-12)
    codes = {c: i for i, c in enumerate(sorted(set(y_true) | set(y_pred)))}
    assert macro_f1([codes[c] for c in y_true], [codes[c] for c in y_pred]) == pytest.approx(
        macro_f1(y_true, y_pred), abs=1e-12
    )


def test_binary_f1_by_hand():
    # TP 1, FP 1, FN 1: 2 / (2 + 1 + 1)
    assert binary_f1([True, True, False, False], [True, False, True, False]) == 0.5
    assert binary_f1([False, False], [False, False]) == 0.0  # no positive anywhere: zero_division=0


def test_classification_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="empty"):
        macro_f1([], [])
    with pytest.raises(ValueError, match="shape"):
        accuracy(["a", "b"], ["a"])

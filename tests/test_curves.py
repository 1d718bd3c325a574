"""Learning curves (scfmbench.curves): every trainer records one, a job writes them, and the
convergence check flags a run stopped at its cap while still improving."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from scfmbench import InputError
from scfmbench.curves import Curve, convergence, curves_to, read_curves, report_curve, write_curves
from scfmbench.report.quality import quality_checks
from scfmbench.train import fit_classifier


def _curve(valid, *, reason, higher=True, every=10):
    c = Curve(criterion="valid macro F1", higher_is_better=higher)
    for i, v in enumerate(valid):
        c.add(step=every * (i + 1), epoch=i + 1, lr=1e-3, train_loss=1.0 / (i + 1), valid=v)
    c.stop(reason)
    return c


def _check(curve) -> pd.Series:
    frame = pd.DataFrame(read_frame(curve))
    return convergence(frame).iloc[0]


def read_frame(curve):
    from scfmbench.curves import curve_frame

    return curve_frame(curve)


# ----------------------------------------------------------------------------- the rule, by hand


def test_capped_and_still_improving_is_not_converged():
    # Best at the last of 10 evaluations (step 100; the last 10% of steps 10..100 starts at 91),
    # gaining 0.1 of a total gain of 0.5 there: 20% > 1%.
    row = _check(_curve([0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.48, 0.5, 0.5, 0.6], reason="step_cap"))
    assert not row.converged and row.best_step == 100 and row.stop_reason == "step_cap"
    assert "still improving" in row.detail


def test_capped_on_a_plateau_is_converged():
    # Best at step 50, nothing better afterwards: the cap did not cut learning short.
    row = _check(_curve([0.1, 0.3, 0.5, 0.55, 0.6, 0.58, 0.59, 0.6, 0.57, 0.59], reason="epoch_cap"))
    assert row.converged and row.best_step == 50


def test_a_hair_above_the_plateau_at_the_end_is_converged():
    # New best at the last evaluation, but by 0.002 of a total gain of 0.5 (0.4% < MIN_GAIN 1%).
    row = _check(_curve([0.1, 0.3, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.602], reason="step_cap"))
    assert row.converged


def test_lower_is_better_criteria_read_the_other_way():
    # A loss still falling at the cap: not converged; the same numbers as a score (higher better)
    # peak at the first evaluation: converged.
    losses = [1.0, 0.8, 0.6, 0.5, 0.45, 0.4, 0.38, 0.36, 0.34, 0.30]
    assert not _check(_curve(losses, reason="step_cap", higher=False)).converged
    assert _check(_curve(losses, reason="step_cap", higher=True)).converged


def test_early_stop_is_converged_and_too_few_evaluations_are_not():
    assert _check(_curve([0.1, 0.5, 0.4, 0.4], reason="early_stop")).converged
    row = _check(_curve([0.1, 0.5], reason="epoch_cap"))
    assert not row.converged and "too few" in row.detail


def test_rows_without_a_validation_value_are_skipped_not_read_as_the_best():
    c = Curve(criterion="valid masked MSE", higher_is_better=False)
    for step, valid in [
        (0, 1.0),
        (5, None),
        (10, 0.5),
        (15, None),
        (20, 0.45),
        (25, None),
        (30, 0.45),
        (35, None),
        (40, 0.46),
    ]:
        c.add(step=step, epoch=step / 10, lr=1e-3, train_loss=0.1, valid=valid)
    c.stop("step_cap")
    row = _check(c)
    assert row.converged and row.best_step == 20


def test_without_validation_the_training_loss_decides():
    c = Curve(criterion="train loss", higher_is_better=False)
    for i, loss in enumerate([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]):
        c.add(step=i + 1, epoch=i + 1, lr=1e-3, train_loss=loss, valid=None)
    c.stop("step_cap")
    row = _check(c)
    assert not row.converged and row.criterion == "train loss"


# ----------------------------------------------------------------------------- a real trainer


class _Rows:
    """Inputs for train.fit: rows of a float matrix."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def batch(self, idx):
        return self.x[idx]

    def to(self, device):
        return self


def _blobs(n=120, seed=0):
    g = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = g.normal(size=(n, 8)) * 1.5 + np.eye(3, 8)[y] * 2.0
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def _train(epochs, lr, patience=3):
    torch.manual_seed(0)
    x, y = _blobs()
    xv, yv = _blobs(60, seed=1)
    model = nn.Sequential(nn.Linear(8, 3))
    with curves_to(None):
        hist = fit_classifier(
            model,
            train=lambda e: _Rows(x),
            y_train=y,
            valid=_Rows(xv),
            y_valid=yv,
            epochs=epochs,
            batch_size=16,
            lr=lr,
            lr_gamma=1.0,
            patience=patience,
            seed=0,
            device="cpu",
        )
    return hist


def test_fit_records_a_curve_per_epoch_and_the_check_flags_the_capped_run(tmp_path):
    # A small learning rate capped at 6 epochs is still climbing (valid macro F1 0.19 -> 0.60);
    # lr 0.05 for up to 200 epochs stops early. The same trainer, the same check: only the capped
    # run is flagged.
    capped, done = _train(epochs=6, lr=3e-3, patience=10), _train(epochs=200, lr=0.05)
    assert capped.curve.step == [8, 16, 24, 32, 40, 48]  # 120 cells / batch 16 = 8 steps an epoch
    assert capped.curve.epoch == [1, 2, 3, 4, 5, 6] and capped.curve.stop_reason == "epoch_cap"
    assert capped.curve.valid == capped.valid_macro_f1 and capped.curve.train_loss == capped.train_loss
    assert done.curve.stop_reason == "early_stop" and len(done.curve.step) < 200
    for name, hist in (("capped", capped), ("done", done)):
        write_curves(tmp_path / f"{name}.csv", {"train": hist.curve})
    records = [
        ("annotation", "d", "capped-model", 0, tmp_path / "capped.csv"),
        ("annotation", "d", "done-model", 0, tmp_path / "done.csv"),
    ]
    metrics = pd.DataFrame(columns=["task", "dataset", "method", "seed", "metric", "value"])
    checks = quality_checks(metrics, curves=records)
    flagged = checks[checks["check"] == "not converged"]
    assert flagged["method"].tolist() == ["capped-model"]
    assert flagged["seed"].tolist() == [0] and flagged["task"].tolist() == ["annotation"]


def test_fit_records_the_learning_rate_of_each_epoch():
    torch.manual_seed(0)
    x, y = _blobs()
    model = nn.Linear(8, 3)
    hist = fit_classifier(
        model,
        train=lambda e: _Rows(x),
        y_train=y,
        valid=_Rows(x),
        y_valid=y,
        epochs=3,
        batch_size=40,
        lr=0.1,
        lr_gamma=0.5,
        patience=10,
        seed=0,
        device="cpu",
    )
    assert hist.curve.lr == pytest.approx([0.1, 0.05, 0.025])


def _masked_linear():
    """A seeded generator, 64 cells x 10 Poisson(2) values, and a linear masked model on them."""
    from scfmbench.pretrain.loop import MaskedModel

    class Linear(MaskedModel):
        def predict(self, batch, mask, offset=None, shown=None):
            return self.backbone(batch.values.masked_fill(mask, 0.0))

    g = torch.Generator().manual_seed(0)
    return g, torch.poisson(torch.full((64, 10), 2.0), generator=g), Linear(nn.Linear(10, 10))


def test_masked_pretraining_records_its_curve():
    from scfmbench.pretrain.loop import MaskedCells, train_masked
    from scfmbench.pretrain.masking import build_strategy

    g, values, model = _masked_linear()
    hist = train_masked(
        model,
        MaskedCells(values),
        strategy=build_strategy("uniform"),
        steps=40,
        batch_size=8,
        lr=1e-2,
        generator=g,
        valid=MaskedCells(values[:16]),
        eval_every=10,
    )
    assert hist.curve.step == [0, 10, 20, 30, 40] and hist.curve.valid == pytest.approx(hist.valid_loss)
    assert hist.curve.stop_reason == "step_cap" and not hist.curve.higher_is_better
    assert hist.curve.epoch[-1] == pytest.approx(40 * 8 / 64)
    # Mean training loss of steps 11..20 in the row of step 20.
    assert hist.curve.train_loss[2] == pytest.approx(np.mean(hist.train_loss[10:20]))
    # Without monitoring cells: a row every twentieth of the run on the training loss.
    hist = train_masked(
        model, MaskedCells(values), strategy=build_strategy("uniform"), steps=40, batch_size=8, lr=1e-2, generator=g
    )
    assert hist.curve.step == list(range(2, 41, 2)) and hist.curve.criterion == "train loss"
    assert all(math.isnan(v) for v in hist.curve.valid)


def test_masked_pretraining_stops_early_and_keeps_the_best_evaluated_state(monkeypatch):
    """patience: stop after that many evaluations without a lower validation masked MSE, keep the
    state of the best one (a model whose validation loss only gets worse after step 10 is stopped
    at step 10 + 3 x 10 and restored to its step-10 weights)."""
    from scfmbench.pretrain.loop import MaskedCells, train_masked
    from scfmbench.pretrain.masking import build_strategy

    g, values, model = _masked_linear()
    snapshots = {}

    # The loop calls monitor_loss at every evaluation; wrap it to see the state it scores and to
    # make the validation loss worsen after step 10 whatever the weights do.
    import scfmbench.pretrain.loop as loop

    scores = iter([5.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])

    def fake_monitor(m, *a, **k):
        snapshots[len(snapshots)] = copy.deepcopy(m.state_dict())
        return next(scores)

    with monkeypatch.context() as mp:
        mp.setattr(loop, "monitor_loss", fake_monitor)
        hist = train_masked(
            model,
            MaskedCells(values),
            strategy=build_strategy("uniform"),
            steps=100,
            batch_size=8,
            lr=1e-2,
            generator=g,
            valid=MaskedCells(values[:16]),
            eval_every=10,
            patience=3,
        )
    assert hist.curve.step == [0, 10, 20, 30, 40] and hist.curve.stop_reason == "early_stop"
    assert len(hist.train_loss) == 40
    for k, v in model.state_dict().items():  # the step-10 state (evaluation 1), not the last one
        assert torch.equal(v, snapshots[1][k]) and not torch.equal(v, snapshots[4][k])
    # Without patience: every step, the last state, the step cap.
    model = _masked_linear()[2]
    hist = train_masked(
        model,
        MaskedCells(values),
        strategy=build_strategy("uniform"),
        steps=30,
        batch_size=8,
        lr=1e-2,
        generator=g,
        valid=MaskedCells(values[:16]),
        eval_every=10,
    )
    assert hist.curve.step == [0, 10, 20, 30] and hist.curve.stop_reason == "step_cap"
    with pytest.raises(InputError, match="eval_every"):
        train_masked(
            model,
            MaskedCells(values),
            strategy=build_strategy("uniform"),
            steps=30,
            batch_size=8,
            lr=1e-2,
            generator=g,
            valid=MaskedCells(values[:16]),
            patience=2,
        )


def test_dca_records_its_curve():
    from scfmbench.impute.dca import DCAConfig, fit_dca

    g = np.random.default_rng(0)
    counts = g.poisson(3.0, size=(80, 12)).astype(np.float32)
    result = fit_dca(
        counts, config=DCAConfig.from_params({"epochs": 5, "hidden_size": (8, 4, 8), "batch_size": 16}), seed=0
    )
    c = result.history.curve
    assert c.epoch == [1, 2, 3, 4, 5] and c.valid == pytest.approx(result.history.val_loss)
    assert c.train_loss == pytest.approx(result.history.loss) and c.lr == pytest.approx(result.history.lr)
    assert c.step == [5, 10, 15, 20, 25]  # 72 training cells (validation_split 0.1) in batches of 16
    assert c.stop_reason == "epoch_cap"


# ----------------------------------------------------------------------------- collection and files


def test_curves_to_collects_every_trainer_of_the_job_and_writes_one_file(tmp_path):
    path = tmp_path / "curves.csv"
    with curves_to(path):
        report_curve(_curve([0.1, 0.2, 0.3], reason="early_stop"), "pretrain")
        report_curve(_curve([0.2, 0.4], reason="epoch_cap"))
        report_curve(_curve([0.3], reason="epoch_cap"))
    frame = read_curves(path)
    assert frame["phase"].tolist() == ["pretrain"] * 3 + ["train"] * 2 + ["train_2"]
    assert frame.loc[frame["phase"] == "train", "stop_reason"].unique().tolist() == ["epoch_cap"]
    report_curve(_curve([0.1], reason="epoch_cap"))  # outside a collector: nowhere to go, no error


def test_a_job_that_declares_curves_but_trains_nothing_fails_and_a_failed_job_writes_none(tmp_path):
    with pytest.raises(RuntimeError, match="no trainer reported"):
        with curves_to(tmp_path / "a.csv"):
            pass
    with pytest.raises(ValueError, match="boom"):
        with curves_to(tmp_path / "b.csv"):
            report_curve(_curve([0.1], reason="epoch_cap"))
            raise ValueError("boom")
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()


def test_read_curves_names_a_file_that_is_not_a_curve(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a curves file"):
        read_curves(tmp_path / "x.csv")


def test_stop_reasons_are_checked():
    with pytest.raises(ValueError, match="stop reason"):
        Curve().stop("tired")


def test_the_curve_figure_draws_every_run(tmp_path):
    from scfmbench.report.figures import plot_curves

    for seed in (0, 1):
        write_curves(tmp_path / f"s{seed}.csv", {"train": _curve([0.1, 0.3, 0.5, 0.6 + seed / 10], reason="step_cap")})
    plot_curves([("annotation", "d", "m", s, tmp_path / f"s{s}.csv") for s in (0, 1)], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_quality_report_prints_seeds_as_integers(tmp_path):
    from scfmbench.report.quality import quality_markdown

    write_curves(tmp_path / "c.csv", {"train": _curve([0.1, 0.2, 0.3, 0.4], reason="step_cap")})
    metrics = pd.DataFrame(
        {
            "task": ["annotation"] * 2,
            "dataset": ["d"] * 2,
            "method": ["m", "majority"],
            "seed": [0, 0],
            "metric": ["macro_f1"] * 2,
            "value": [0.1, 0.5],
        }
    )
    md = quality_markdown(quality_checks(metrics, curves=[("annotation", "d", "m", 3, tmp_path / "c.csv")]))
    assert "| not converged | annotation | d | m | 3 |" in md and "| below control | annotation | d | m |  |" in md

"""Learning curves: one record for every trainer, and the convergence check that reads them.

Every training loop (:func:`scfmbench.train.fit` for the transformers, scHyena's fine-tuning and
the perturbation generator; :func:`scfmbench.pretrain.loop.train_masked` for masked pretraining
and scHyena's pretraining; DCA's Keras-style loop) fills a :class:`Curve` at each evaluation:
optimizer step, epoch, learning rate, training loss and the validation criterion the loop selects
or stops on, plus why it stopped (:data:`STOP_REASONS`). A run writes its curves as one
``curves.csv`` beside its run record (a ``phase`` column when a run trains more than once:
pretraining then fine-tuning, or one DCA fit per fold).

:func:`convergence` decides whether a curve stopped learning before its cap: a run that stopped
at a step or epoch cap while its criterion was still improving is *not converged* (see
:data:`TAIL` and :data:`MIN_GAIN`). The quality check (:mod:`scfmbench.report.quality`) reports one
row per such run.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd

from scfmbench._io import write_csv

#: Why a loop stopped: its early-stopping rule fired, or it ran out of steps or epochs.
STOP_REASONS = ("early_stop", "step_cap", "epoch_cap")
CURVE_COLUMNS = ["phase", "step", "epoch", "lr", "train_loss", "valid", "criterion", "higher_is_better", "stop_reason"]

#: A capped run whose best criterion falls in the last TAIL of its steps is still improving ...
TAIL = 0.10
#: ... unless that last stretch gained less than MIN_GAIN of the curve's whole gain (first
#: evaluation to best): a curve that adds under 1% of its total improvement in its last tenth is
#: flat to the eye and to the metrics (a noisy criterion touches a new best by a hair at the end
#: of many converged runs; the doubled-cap check in docs/curves.md "Convergence" bounds what it hides).
MIN_GAIN = 0.01
#: A capped run evaluated fewer times than this cannot show that it stopped learning.
MIN_EVALS = 3


@dataclass
class Curve:
    """One training run's evaluations, column-wise (``dataclasses.asdict`` stays compact).

    ``valid[i]`` is the criterion the loop selects on after ``step[i]`` optimizer steps (NaN where a
    loop evaluates nothing; then :func:`convergence` reads the training loss), ``lr[i]`` the
    learning rate of the steps before it. ``criterion`` names it ("valid macro F1", "valid loss",
    ...), ``higher_is_better`` its direction.
    """

    criterion: str = "valid"
    higher_is_better: bool = True
    step: list[int] = field(default_factory=list)
    epoch: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    valid: list[float] = field(default_factory=list)
    stop_reason: str = ""

    def add(self, *, step: int, epoch: float, lr: float, train_loss: float, valid: float | None) -> None:
        self.step.append(int(step))
        self.epoch.append(float(epoch))
        self.lr.append(float(lr))
        self.train_loss.append(float("nan") if train_loss is None else float(train_loss))
        self.valid.append(float("nan") if valid is None else float(valid))

    def stop(self, reason: str) -> None:
        if reason not in STOP_REASONS:
            raise ValueError(f"stop reason must be one of {STOP_REASONS}, got {reason!r}")
        self.stop_reason = reason


def curve_frame(curve: Curve | dict, phase: str = "train") -> pd.DataFrame:
    """A curve (or its ``asdict`` form from a run record) as rows of :data:`CURVE_COLUMNS`."""
    c = curve if isinstance(curve, dict) else curve.__dict__
    n = len(c["step"])
    return pd.DataFrame(
        {
            "phase": [phase] * n,
            "step": c["step"],
            "epoch": c["epoch"],
            "lr": c["lr"],
            "train_loss": c["train_loss"],
            "valid": c["valid"],
            "criterion": [c["criterion"]] * n,
            "higher_is_better": [bool(c["higher_is_better"])] * n,
            "stop_reason": [c["stop_reason"]] * n,
        },
        columns=CURVE_COLUMNS,
    )


def write_curves(path, curves: dict) -> None:
    """Write ``{phase: Curve or its dict}`` as one CSV at ``path`` (a temporary file, then renamed:
    no half-written curve is left behind). A phase with no evaluation is an error."""
    frames = []
    for phase, curve in curves.items():
        frame = curve_frame(curve, phase)
        if frame.empty:
            raise ValueError(f"{path}: phase {phase!r} has no evaluation; a trainer must record at least its final one")
        frames.append(frame)
    write_csv(pd.concat(frames, ignore_index=True), path, index=False)


def read_curves(path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = sorted(set(CURVE_COLUMNS) - set(frame.columns))
    if missing:
        raise ValueError(
            f"{path}: not a curves file (missing columns {missing}); it is written by the training rules, rerun them"
        )
    return frame


def convergence(frame: pd.DataFrame, *, tail: float = TAIL, min_gain: float = MIN_GAIN) -> pd.DataFrame:
    """One row per phase of a curves frame: ``converged`` (bool), ``stop_reason``, ``best_step``,
    ``last_step`` and a ``detail`` sentence.

    Early-stopped runs converged by definition (their criterion stopped improving for the
    patience). A run stopped at a cap converged unless its best criterion lies in the last ``tail``
    of its steps *and* that stretch improved the criterion by more than ``min_gain`` of the
    curve's whole gain (first evaluation to best).
    """
    rows = []
    for phase, g in frame.groupby("phase", sort=False):
        g = g.sort_values("step")
        use_valid = g["valid"].notna().any()
        if use_valid:  # rows without a validation value (a loop that monitors less often than it records)
            g = g[g["valid"].notna()]
        crit = (g["valid"] if use_valid else g["train_loss"]).astype(float)
        higher = bool(g["higher_is_better"].iloc[0]) if use_valid else False
        name = g["criterion"].iloc[0] if use_valid else "train loss"
        sign = 1.0 if higher else -1.0
        score = sign * crit  # higher is better from here on
        steps = g["step"].to_numpy()
        last, first_step = int(steps[-1]), int(steps[0])
        best_i = int(score.to_numpy().argmax()) if score.notna().any() else len(g) - 1
        best_step = int(steps[best_i])
        reason = str(g["stop_reason"].iloc[0])
        window_start = last - tail * (last - first_step)
        before = score[g["step"] < window_start]
        total_gain = float(score.max() - score.iloc[0]) if score.notna().any() else 0.0
        tail_gain = float(score.max() - before.max()) if len(before) and before.notna().any() else total_gain
        still = best_step >= window_start and tail_gain > min_gain * max(total_gain, 0.0) and tail_gain > 0
        if reason == "early_stop":
            converged, detail = True, f"early stop at step {last}; best {name} at step {best_step}"
        elif len(g) < MIN_EVALS:
            converged, detail = (
                False,
                f"stopped at its {reason.replace('_', ' ')} (step {last}) after {len(g)} evaluation(s): too few to "
                f"show a plateau (>= {MIN_EVALS})",
            )
        elif still:
            converged = False
            detail = (
                (
                    f"stopped at its {reason.replace('_', ' ')} (step {last}) while {name} was still improving: best "
                    f"at step {best_step}, +{tail_gain:.4g} in the last {tail:.0%} of the run "
                    f"({tail_gain / total_gain:.0%} of its total gain {total_gain:.4g})"
                )
                if total_gain > 0
                else (
                    f"stopped at its {reason.replace('_', ' ')} (step {last}) with its best "
                    f"{name} at the last evaluation"
                )
            )
        else:
            converged = True
            detail = (
                f"{reason.replace('_', ' ')} at step {last}; best {name} at step {best_step}, "
                f"flat in the last {tail:.0%}"
            )
        rows.append(
            dict(
                phase=phase,
                converged=converged,
                stop_reason=reason,
                best_step=best_step,
                last_step=last,
                criterion=name,
                detail=detail,
            )
        )
    return pd.DataFrame(
        rows, columns=["phase", "converged", "stop_reason", "best_step", "last_step", "criterion", "detail"]
    )


# ----------------------------------------------------------------------------- collection
# Trainers report their curve once they stop (:func:`report_curve`); a job collects what its
# trainers reported (:func:`curves_to`) and writes one curves.csv. A collector rather than a return
# value threaded through every task's record: the trainers sit several calls below the rule
# scripts (a DCA fit per fold inside the imputation protocol, scHyena's fine-tuning inside the
# doublet task), and the record formats differ by task.
_COLLECTORS: list[dict] = []


def report_curve(curve: Curve, phase: str = "train") -> None:
    """Hand a finished curve to every active :func:`curves_to` (a no-op outside one); a phase name
    seen before in the same job gets a suffix (``train``, ``train_2``, ...: one per fold)."""
    for got in _COLLECTORS:
        name, i = phase, 1
        while name in got:
            i += 1
            name = f"{phase}_{i}"
        got[name] = curve


@contextmanager
def curves_to(path):
    """Collect the curves reported inside the block and write them to ``path`` when it ends without
    an error (``path`` None: collect nothing, write nothing). A job that declares a curves file but
    trains nothing is an error, not an empty file."""
    if path is None:
        yield {}
        return
    got: dict = {}
    _COLLECTORS.append(got)
    try:
        yield got
    finally:
        _COLLECTORS.remove(got)
    if not got:
        raise RuntimeError(f"{path}: no trainer reported a learning curve in this job")
    write_curves(path, got)

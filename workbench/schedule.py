"""When, in a run's step loop, something is due: a metrics row, an evaluation, a snapshot, the end.

:class:`Schedule` decides from the config's ``log_every``, ``eval_every``, ``snapshot_every``, the
run's budget (``epochs`` / ``max_steps`` as planned steps, ``max_time``) and what the algorithm
asks for (a row after a rare event, the end once converged); :class:`workbench.training.TrainingRun`
does what is due. Checkpoints fall on row boundaries only, so a checkpoint and the rows agree.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Due:
    """What the step that just ended owes the record."""

    row: bool          # a metrics row (the mean training loss since the last one)
    evaluate: bool     # test metrics in that row
    snapshot: bool     # the algorithm's snapshot
    finishing: bool    # the budget is used (or the algorithm converged): the last row


# With ``eval_every=None``, a run planned for fewer epochs than this is also evaluated every
# total / MIN_EVALUATIONS steps, so that each curve has at least this many points.
MIN_EVALUATIONS = 10


class Schedule:
    """The due-dates of one run. ``total``: the planned steps (None: only ``max_time`` limits it);
    ``per_epoch``: steps in an epoch.

    Evaluations: every ``eval_every`` steps when it is set; else at each epoch end, and for a run
    planned for fewer than :data:`MIN_EVALUATIONS` epochs also every ``ceil(total / 10)`` steps."""

    def __init__(self, config, total: int | None, per_epoch: int | None = None):
        self.log_every, self.eval_every = config["log_every"], config["eval_every"]
        self.snapshot_every, self.save_every = config["snapshot_every"], config["save_every"]
        self.max_time, self.total = config["max_time"], total
        self.auto_every = None
        if self.eval_every is None and total and per_epoch and total / per_epoch < MIN_EVALUATIONS:
            self.auto_every = -(-total // MIN_EVALUATIONS)

    def used_up(self, step: int, seconds: float) -> bool:
        """The budget is spent (a run resumed at its end trains no further)."""
        return (self.total is not None and step >= self.total) or (self.max_time is not None and seconds >= self.max_time)

    def after_step(self, step: int, seconds: float, epoch_done: bool, converged: bool, wants_row: bool) -> Due:
        if self.eval_every:
            evaluate = step % self.eval_every == 0
        else:
            evaluate = epoch_done or (self.auto_every is not None and step % self.auto_every == 0)
        finishing = self.used_up(step, seconds) or converged
        row = step % self.log_every == 0 or epoch_done or evaluate or finishing or wants_row
        snapshot = bool(self.snapshot_every) and step % self.snapshot_every == 0
        return Due(row=row, evaluate=evaluate or finishing, snapshot=snapshot, finishing=finishing)

    def save_due(self, last_checkpoint: float) -> bool:
        """``save_every`` seconds since the last checkpoint (asked on row boundaries)."""
        return time.perf_counter() - last_checkpoint >= self.save_every

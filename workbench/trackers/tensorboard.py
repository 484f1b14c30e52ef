"""TensorBoard event files under the run folder: ``<run folder>/tensorboard/<label>/seed_<seed>/``.

Every metric of a row is a scalar at the row's step (float64, so the values read back are the
record's to the last bit), ``time`` and ``epoch`` included; the run's parameters, seed, algorithm
and phase are its hparams. Files are flushed every 10 s, so ``tensorboard --logdir results`` shows
a running experiment's curves. A run continued by ``--resume`` writes TensorBoard's purge marker at
the step it continues from, so rows it trains again replace the ones written before.
"""
from __future__ import annotations

from workbench.errors import ConfigError
from workbench.trackers import BaseTracker, run_name

FLUSH_SECONDS = 10


class Tracker(BaseTracker):
    @classmethod
    def check_available(cls) -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("tracker=\"tensorboard\" needs the tensorboard package, which setup installs: run "
                              "./setup.sh again (or .venv/bin/python -m pip install tensorboard)") from None

    def __init__(self, run_dir, history):
        super().__init__(run_dir, history)
        self.writers: dict = {}

    def start_run(self, index, spec, resumed_at):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self._close(index)
        folder = self.run_dir / "tensorboard" / run_name(spec["label"], spec["seed"])
        writer = SummaryWriter(str(folder), flush_secs=FLUSH_SECONDS,
                               purge_step=None if resumed_at is None else resumed_at + 1)
        self.writers[index] = writer
        if resumed_at is None or resumed_at < 0:  # a new run, or one trained again from the start
            values = {k: v if isinstance(v, (int, float, str, bool)) else repr(v) for k, v in spec["params"].items()}
            values.update(seed=spec["seed"], algorithm=spec["algorithm"], phase=spec.get("phase", "final"))
            for summary in hparams(values, {}):
                writer.file_writer.add_summary(summary)

    def log(self, index, row):
        writer = self.writers.get(index)
        if writer is None:
            return
        step = int(row["step"])
        for key, value in row.items():
            if key != "step":
                writer.add_scalar(key, float(value), global_step=step, new_style=True, double_precision=True)

    def end_run(self, index, status):
        self._close(index)

    def close(self):
        for index in list(self.writers):
            self._close(index)

    def _close(self, index):
        writer = self.writers.pop(index, None)
        if writer is not None:
            writer.close()

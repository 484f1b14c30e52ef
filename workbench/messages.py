"""What a run tells the driver, wherever it trains: small typed messages, in the order a run sends them.

:class:`Start` -> :class:`Reset` (a fresh start) -> :class:`Rows`, :class:`Snapshot`,
:class:`Progress` and :class:`Checkpoint` while it trains -> :class:`Done`. They travel as they are
through a pipe (worker processes) or Ray's object store; :class:`workbench.record.Record` applies
them to the record, the driver routes :class:`Progress` to the progress display. A checkpoint holds
the counts of rows and snapshots the record had when it was taken, so a resumed run drops what was
recorded after it and redoes exactly those steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class Start:
    index: int
    where: dict[str, Any]       # executor, host, pid, device, subnormals_flushed


@dataclass(frozen=True)
class Reset:
    """A fresh start: the record's rows and snapshots of the run are cleared."""
    index: int
    info: dict[str, Any]        # the algorithm's static facts
    facts: dict[str, Any]       # the summary table's columns (e.g. the effective step size)


@dataclass(frozen=True)
class Rows:
    index: int
    rows: list[dict[str, float]] = field(default_factory=list)   # metric rows, in step order


@dataclass(frozen=True)
class Snapshot:
    index: int
    values: dict[str, Any]      # the algorithm's snapshot with its "step"


@dataclass(frozen=True)
class Progress:
    index: int
    facts: dict[str, Any]       # step, total, and at a row: loss, epoch, acc


@dataclass(frozen=True)
class Checkpoint:
    """Bytes of a resumable checkpoint (None with ``checkpoint=False``): the driver writes the
    history first, then the checkpoint."""
    index: int
    data: bytes | None


@dataclass(frozen=True)
class Done:
    index: int
    status: str                 # finished | stopped | diverged | failed
    error: str | None = None


Message = Union[Start, Reset, Rows, Snapshot, Progress, Checkpoint, Done]

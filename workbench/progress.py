"""The progress display of an experiment: on a terminal, a bar of runs done and one bar per run
that trains (:class:`Bars`); with stderr going to a file or a pipe (a cluster job, ``nohup``), plain
lines at a bounded rate (:class:`Lines`). :func:`display` picks one. A stack of runs
(``stack = True``) has one line: its runs, step, mean loss and how many diverged; its first run's
index stands for it (its other runs send no progress)."""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


def display(plan: list[dict], done: int, enabled: bool, stream=None):
    """Bars on a terminal, lines otherwise, nothing with ``progress=False``."""
    stream = stream or sys.stderr
    if not enabled:
        return Bars(plan, done, quiet=True)
    isatty = getattr(stream, "isatty", None)
    return Bars(plan, done, quiet=None) if isatty is not None and isatty() else Lines(plan, done, stream)


class Lines:
    """One plain line per run when it starts, when it ends, and between: after each ``fraction``
    of its steps (at most one line per ``gap`` seconds) and at least every ``seconds``: label, seed,
    step, loss, the last evaluation. A run of a few seconds says only its start and its end."""

    def __init__(self, plan: list[dict], done: int, stream, seconds: float = 60.0, fraction: float = 0.1,
                 gap: float = 5.0):
        self.plan, self.done, self.stream = plan, done, stream
        self.seconds, self.fraction, self.gap = seconds, fraction, gap
        self.last: dict[int, tuple[float, int]] = {}   # index -> (time of its last line, its last decile)
        self.facts: dict[int, dict] = {}
        self.stacks = _Stacks()

    def _say(self, text: str) -> None:
        self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.stream.flush()

    def _name(self, index: int) -> str:
        spec = self.plan[index]
        return f"{spec['label']} seed={spec['seed']}"

    def start(self, index: int, stack: dict | None = None) -> None:
        if not self.stacks.start(index, stack):
            return
        self.last[index] = (time.monotonic(), 0)
        self.facts[index] = {}
        if stack is not None:
            names = ", ".join(self._name(i) for i in stack["runs"])
            self._say(f"start a stack of {len(stack['runs'])} runs: {names}")
        else:
            self._say(f"start {self._name(index)} (run {index + 1} of {len(self.plan)})")

    def progress(self, index: int, facts: dict) -> None:
        if index not in self.last:
            return
        known = self.facts[index]
        known.update({k: v for k, v in facts.items() if v is not None})
        total, step = known.get("total"), known.get("step", 0)
        decile = int(step / total / self.fraction) if total else 0
        then, last_decile = self.last[index]
        waited = time.monotonic() - then
        if (decile > last_decile and waited >= self.gap) or waited >= self.seconds:
            self.last[index] = (time.monotonic(), decile)
            self._say(f"{self._name(index)}: {self._state(known)}")

    @staticmethod
    def _state(facts: dict) -> str:
        total = facts.get("total")
        step = facts.get("step", 0)
        parts = [f"step {step}" + (f"/{total} ({100 * step / total:.0f}%)" if total else "")]
        stack = facts.get("members") is not None  # a stack's line: its runs' means
        if stack:
            parts.append(f"stack: {facts['members']} runs training, {facts.get('diverged', 0)} diverged")
        if facts.get("loss") is not None:
            parts.append(f"{'mean loss' if stack else 'loss'} {facts['loss']:.4g}")
        if facts.get("acc") is not None:
            parts.append(f"{'mean acc' if stack else 'acc'} {facts['acc']:.2f}")
        return ", ".join(parts)

    def finish(self, index: int, counted: bool = True, status: str | None = None) -> None:
        lead, last = self.stacks.finish(index)
        facts = self.facts.get(lead, {})
        if last:
            self.facts.pop(lead, None)
            self.last.pop(lead, None)
        if counted:
            self.done += 1
        ended = status or ("ended" if counted else "to be trained again")
        self._say(f"{ended} {self._name(index)}: {self._state(facts)} ({self.done}/{len(self.plan)} runs done)")

    def close(self) -> None:
        pass


class Bars:
    """The runs bar (done/total) and one line per active run (label, seed, step, loss)."""

    def __init__(self, plan: list[dict], done: int, quiet: bool | None):
        self.plan, self.quiet = plan, quiet
        self.outer = tqdm(total=len(plan), initial=done, desc="runs", unit="run", disable=quiet, position=0)
        self.lines: dict[int, tqdm] = {}
        self.slots: dict[int, int] = {}
        self.stacks = _Stacks()

    def start(self, index: int, stack: dict | None = None) -> None:
        if not self.stacks.start(index, stack):
            return
        spec = self.plan[index]
        slot = min(set(range(1, len(self.slots) + 2)) - set(self.slots.values()))
        self.slots[index] = slot
        desc = f"{spec['label']} seed={spec['seed']}"
        if stack is not None:
            desc = f"stack of {len(stack['runs'])}: {desc} ..."
        self.lines[index] = tqdm(total=None, desc=desc, unit="step",
                                 leave=False, disable=self.quiet, position=slot, dynamic_ncols=True)

    def progress(self, index: int, facts: dict) -> None:
        bar = self.lines.get(index)
        if bar is None:
            return
        if bar.total != facts.get("total"):
            bar.total = facts.get("total")
        bar.update(facts["step"] - bar.n)
        if facts.get("loss") is not None:
            shown = {"loss": f"{facts['loss']:.4g}", "epoch": f"{facts['epoch']:.2f}"}
            if facts.get("acc") is not None:
                shown["acc"] = f"{facts['acc']:.2f}"
            if facts.get("members") is not None:
                shown.update(runs=facts["members"], diverged=facts.get("diverged", 0))
            bar.set_postfix(shown, refresh=False)

    def finish(self, index: int, counted: bool = True, status: str | None = None) -> None:
        """Close the run's line (a stack's once its last run ends); ``counted``: the run is done (a
        restarted one is not)."""
        lead, last = self.stacks.finish(index)
        bar = self.lines.pop(lead, None) if last else None
        if last:
            self.slots.pop(lead, None)
        if bar is not None:
            bar.close()
        if counted:
            self.outer.update(1)

    def close(self) -> None:
        for bar in self.lines.values():
            bar.close()
        self.outer.close()


class _Stacks:
    """Which runs share a line: a stack's runs stand behind its first run (the lead)."""

    def __init__(self):
        self.lead: dict[int, int] = {}        # run -> the lead of its stack
        self.left: dict[int, set[int]] = {}   # lead -> its stack's runs still training

    def start(self, index: int, stack: dict | None) -> bool:
        """Note a run's start; True if it gets a line of its own (a single run, or a stack's lead)."""
        if stack is None:
            return True
        lead = stack["runs"][0]
        self.lead[index] = lead
        self.left.setdefault(lead, set()).add(index)
        return index == lead

    def finish(self, index: int) -> tuple[int, bool]:
        """(the run whose line shows ``index``, whether that line ends now)."""
        lead = self.lead.pop(index, index)
        left = self.left.get(lead)
        if left is None:
            return lead, True
        left.discard(index)
        if left:
            return lead, False
        del self.left[lead]
        return lead, True

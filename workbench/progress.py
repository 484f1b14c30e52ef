"""The progress display of an experiment: a bar of runs done and one line per run that trains."""
from __future__ import annotations

from tqdm.auto import tqdm


class Bars:
    """The runs bar (done/total) and one line per active run (label, seed, step, loss)."""

    def __init__(self, plan: list[dict], done: int, quiet: bool | None):
        self.plan, self.quiet = plan, quiet
        self.outer = tqdm(total=len(plan), initial=done, desc="runs", unit="run", disable=quiet, position=0)
        self.lines: dict[int, tqdm] = {}
        self.slots: dict[int, int] = {}

    def start(self, index: int) -> None:
        spec = self.plan[index]
        slot = min(set(range(1, len(self.slots) + 2)) - set(self.slots.values()))
        self.slots[index] = slot
        self.lines[index] = tqdm(total=None, desc=f"{spec['label']} seed={spec['seed']}", unit="step",
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
            bar.set_postfix(shown, refresh=False)

    def finish(self, index: int, counted: bool = True) -> None:
        """Close the run's line; ``counted``: the run is done (a restarted one is not)."""
        bar = self.lines.pop(index, None)
        self.slots.pop(index, None)
        if bar is not None:
            bar.close()
        if counted:
            self.outer.update(1)

    def close(self) -> None:
        for bar in self.lines.values():
            bar.close()
        self.outer.close()

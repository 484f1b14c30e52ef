"""history.pkl by appends: always one standard pickle equal to the history in memory, a save costs
what changed, and a crash at any byte of a save leaves the previous save readable."""
from __future__ import annotations

import errno
import math
import pickle

import numpy as np
import pytest

from workbench import record
from workbench.history_file import HistoryFile


def _plain_load(path):
    with open(path, "rb") as f:  # what a user does: the standard library only
        return pickle.load(f)


def _assert_equal(loaded: dict, history: dict, tables: list[record.MetricTable]) -> None:
    assert {k: v for k, v in loaded.items() if k != "runs"} == {k: v for k, v in history.items() if k != "runs"}
    assert len(loaded["runs"]) == len(history["runs"])
    for got, run, table in zip(loaded["runs"], history["runs"], tables):
        assert {k: v for k, v in got.items() if k not in ("metrics", "snapshots")} == \
            {k: v for k, v in run.items() if k not in ("metrics", "snapshots")}
        assert set(got["metrics"]) == set(table.keys())
        for key in table.keys():
            column = got["metrics"][key]
            assert isinstance(column, np.ndarray) and column.dtype == np.float64
            assert np.array_equal(column, table.column(key), equal_nan=True), key
            assert column.size == len(table)
        assert set(got["snapshots"]) == set(run["snapshots"])
        for key, values in run["snapshots"].items():
            assert len(got["snapshots"][key]) == len(values)
            for a, b in zip(got["snapshots"][key], values):
                assert np.array_equal(a, b)


class _Workload:
    """A random record that grows, is cut back (a resume), gains columns and runs, and snapshots."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.history = {"name": "w", "finished": None, "runs": []}
        self.tables: list[record.MetricTable] = []
        self.step = 0

    def add_run(self):
        self.history["runs"].append({"label": f"r{len(self.tables)}", "status": "running", "metrics": {},
                                     "snapshots": {}})
        self.tables.append(record.MetricTable())

    def change(self):
        rng = self.rng
        if not self.tables or rng.random() < 0.1:
            self.add_run()
        for index, table in enumerate(self.tables):
            if rng.random() < 0.15 and len(table):
                table.truncate(int(rng.integers(0, len(table))))
            for _ in range(int(rng.integers(0, 40))):
                self.step += 1
                row = {"step": self.step, "train_loss": float(rng.normal())}
                if rng.random() < 0.2:
                    row["test_acc"] = float(rng.uniform(0, 100))
                if rng.random() < 0.02:
                    row[f"extra{int(rng.integers(3))}"] = math.inf
                table.add_row(row)
            run = self.history["runs"][index]
            if rng.random() < 0.3:
                snaps = run["snapshots"]
                snaps.setdefault("step", []).append(self.step)
                snaps.setdefault("W", []).append(rng.normal(size=(3, 2)))
            if rng.random() < 0.1 and run["snapshots"]:
                for column in run["snapshots"].values():
                    del column[len(column) // 2:]
            run["status"] = str(rng.choice(["running", "finished"]))


@pytest.mark.parametrize("seed", range(6))
def test_every_save_is_a_standard_pickle_equal_to_the_history(tmp_path, seed):
    work, writer = _Workload(seed), HistoryFile(tmp_path / "history.pkl")
    kinds = []
    for _ in range(60):
        work.change()
        writer.save(work.history, work.tables)
        kinds.append(writer.last_save)
        _assert_equal(_plain_load(writer.path), work.history, work.tables)
        _assert_equal(record.load_history(tmp_path), work.history, work.tables)
    assert kinds[0] == "rewrite" and kinds.count("append") > 30


def test_a_save_costs_what_changed_not_the_whole_run(tmp_path):
    writer, table = HistoryFile(tmp_path / "history.pkl"), record.MetricTable()
    history = {"name": "long", "runs": [{"label": "a", "metrics": {}, "snapshots": {}}]}
    rows_per_save, columns = 500, ("step", "time", "epoch", "train_loss", "test_acc")
    sizes = []
    for save in range(200):
        for i in range(rows_per_save):
            table.add_row({key: float(save * rows_per_save + i) for key in columns})
        before = writer.path.stat().st_size if writer.path.exists() else 0
        writer.save(history, [table])
        if writer.last_save == "append":
            sizes.append(writer.path.stat().st_size - before)
    new_data = rows_per_save * len(columns) * 8
    assert len(sizes) > 150
    # each append: the new values plus a few hundred bytes per column of structure, at any length
    assert max(sizes) < new_data + 700 * len(columns), (max(sizes), new_data)
    assert np.array_equal(_plain_load(writer.path)["runs"][0]["metrics"]["step"], np.arange(200 * rows_per_save))


def test_a_crash_at_any_byte_of_an_append_leaves_the_previous_save(tmp_path):
    work, writer = _Workload(7), HistoryFile(tmp_path / "history.pkl")
    for _ in range(3):
        work.change()
        writer.save(work.history, work.tables)
    old = writer.path.read_bytes()
    old_history = _plain_load(writer.path)
    work.change()
    writer.save(work.history, work.tables)
    assert writer.last_save == "append"
    new = writer.path.read_bytes()
    assert new[: len(old) - 1] == old[:-1] and old[-1:] == pickle.STOP and new[len(old) - 1: len(old)] == pickle.POP
    appended = new[len(old):]
    for cut in range(0, len(appended) + 1, max(1, len(appended) // 97)):
        torn = tmp_path / "torn.pkl"
        torn.write_bytes(old + appended[:cut])  # the commit byte is written last
        assert _equal_records(_plain_load(torn), old_history), cut
    _assert_equal(_plain_load(writer.path), work.history, work.tables)


def _equal_records(a, b) -> bool:
    return pickle.dumps(a) == pickle.dumps(b)


def test_a_failed_append_keeps_the_file_and_the_next_save_rewrites_it(tmp_path, monkeypatch):
    work, writer = _Workload(3), HistoryFile(tmp_path / "history.pkl")
    for _ in range(3):
        work.change()
        writer.save(work.history, work.tables)
    previous = writer.path.read_bytes()
    work.change()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("workbench.history_file.os.fsync", full_disk)
    with pytest.raises(OSError):
        writer.save(work.history, work.tables)
    assert writer.path.read_bytes() == previous, "the torn bytes are cut off again"
    monkeypatch.undo()
    writer.save(work.history, work.tables)
    assert writer.last_save == "rewrite"
    _assert_equal(_plain_load(writer.path), work.history, work.tables)


def test_rewrites_keep_the_file_small_and_the_chunks_few(tmp_path):
    writer, table = HistoryFile(tmp_path / "history.pkl"), record.MetricTable()
    history = {"runs": [{"label": "a", "metrics": {}, "snapshots": {}}]}
    kinds = []
    for save in range(2000):
        table.add_row({"step": save})
        writer.save(history, [table])
        kinds.append(writer.last_save)
        assert table.n_chunks() <= HistoryFile.MAX_CHUNKS + 1
    assert 3 <= kinds.count("rewrite") <= 2000 // HistoryFile.MAX_CHUNKS + 1
    live = len(pickle.dumps(_plain_load(writer.path)))
    assert writer.path.stat().st_size < 2 * live + HistoryFile.MIN_REWRITE_BYTES + 64 * 1024


def test_metric_table_grows_pads_and_truncates():
    table = record.MetricTable()
    for i in range(3000):  # past the first buffer of 1024 rows, twice
        table.add_row({"step": i, **({"test_acc": i / 2} if i % 7 == 0 else {})})
    assert len(table) == 3000 and np.array_equal(table.column("step"), np.arange(3000))
    acc = table.column("test_acc")
    assert np.array_equal(acc[::7], np.arange(0, 3000, 7) / 2) and np.isnan(acc[1::7]).all()
    table.truncate(10)
    table.add_row({"step": 99})
    assert np.array_equal(table.column("step"), [*range(10), 99]) and np.isnan(table.column("test_acc")[-1])
    assert table.last("step") == 99 and len(table) == 11
    table.seal()
    table.add_row({"new": 1.0})
    assert np.isnan(table.column("new")[:-1]).all() and table.column("new")[-1] == 1.0
    assert all(len(table.chunks(k)) == table.n_chunks() for k in table.keys())
    with pytest.raises(ValueError):
        table.chunks("step")[0][0] = 1.0  # written chunks never change


def test_version_1_records_load_with_array_columns(tmp_path):
    old = {"name": "v1", "runs": [{"label": "a", "metrics": {"step": [0, 1, 2], "loss": [1.0, math.nan, 0.5]},
                                   "snapshots": {}}]}
    (tmp_path / "history.pkl").write_bytes(pickle.dumps(old))
    metrics = record.load_history(tmp_path)["runs"][0]["metrics"]
    assert metrics["step"].dtype == np.float64 and np.array_equal(metrics["loss"], [1.0, math.nan, 0.5], equal_nan=True)


@pytest.mark.parametrize("content", [b"", b"\x80\x04\x95", pickle.dumps({"runs": []})[:-5], pickle.dumps([1, 2])])
def test_an_unreadable_history_names_the_file(tmp_path, content):
    (tmp_path / "history.pkl").write_bytes(content)
    with pytest.raises(record.CorruptRecord, match="history.pkl"):
        record.load_history(tmp_path)


def test_a_table_of_empty_columns_loads_and_grows():
    """A record saved right after a cut to zero rows keeps its (empty) columns."""
    table = record.MetricTable({"step": np.zeros(0), "loss": np.zeros(0)})
    assert len(table) == 0 and set(table.keys()) == {"step", "loss"}
    table.add_row({"step": 1.0})
    table.seal()
    assert np.array_equal(table.column("step"), [1.0]) and np.isnan(table.column("loss")).all()
    assert len(table.column("loss")) == 1

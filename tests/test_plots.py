"""The common plots through their figure objects: long series thinned for drawing."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def test_thin_keeps_every_bucket_extreme_and_at_most_max_points():
    from workbench.plots.common import thin

    rng = np.random.default_rng(0)
    x = np.arange(1_000_003, dtype=float)
    y = rng.normal(size=x.size)
    y[123_457], y[999_999] = 50.0, -50.0  # spikes must survive
    tx, ty = thin(x, y, 4000)
    assert tx.size <= 4000 and np.all(np.diff(tx) > 0)
    assert ty.max() == 50.0 and ty.min() == -50.0 and np.array_equal(ty, y[tx.astype(int)])
    width = -(-x.size // 2000)
    for b in (0, 7, (x.size - 1) // width):  # each bucket's min and max are among the kept points
        part = y[b * width:(b + 1) * width]
        kept = ty[(tx >= b * width) & (tx < (b + 1) * width)]
        assert part.min() in kept and part.max() in kept
    assert thin(x[:10], y[:10], 4000)[0].size == 10


def test_a_million_row_curve_is_drawn_through_a_few_thousand_points():
    from workbench.plots.common import plot_metric

    n = 1_000_000
    run = {"label": "long", "status": "finished",
           "metrics": {"step": np.arange(n, dtype=float), "train_loss": np.exp(-np.arange(n) / n) + 1e-3}}
    fig, ax = plt.subplots()
    assert plot_metric([run], "train_loss", "step", "training loss", True, ax)
    (line,) = ax.get_lines()
    assert line.get_xdata().size <= 4000 and line.get_xdata()[0] == 0 and line.get_xdata()[-1] == n - 1
    plt.close(fig)

"""PNG plots (nasdeploy/plots.py): each writes a whole PNG atomically, with or without intervals, references and a
target."""
from __future__ import annotations

from PIL import Image

from nasdeploy.plots import latency_scatter, pareto_plot, throughput_plot


def _png(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_every_plot_is_a_whole_png_and_leaves_no_temporary_file(tmp_path):
    a = latency_scatter(tmp_path / "lat.png", [1.0, 2.0, 3.0], [1.1, 1.9, 3.3], [1.0, 2.05, 3.1], "table")
    b = pareto_plot(tmp_path / "pareto.png", [(1.0, 60.0), (2.0, 70.0), (3.0, 65.0)],
                    [(1.0, 60.0, (55.0, 65.0)), (2.0, 70.0, (66.0, 74.0))], 2.5,
                    {"fairnas_a": (2.2, 68.0, (64.0, 72.0)), "proxy": (1.5, None)}, (2.0, 70.0), "search")
    c = throughput_plot(tmp_path / "tput.png", {"onnxruntime fp32": [(16, 900.0), (1, 120.0)]}, "bench")
    for p in (a, b, c):
        w, h = _png(p)
        assert w > 300 and h > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lat.png", "pareto.png", "tput.png"]


def test_a_front_without_intervals_and_no_target_still_plots(tmp_path):
    p = pareto_plot(tmp_path / "sub" / "p.png", [], [(1.0, 0.5), (2.0, 0.9)], None, {}, None, "proxy search",
                    "PROXY: log10(MACs)")
    assert _png(p)[0] > 300

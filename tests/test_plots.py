"""softseg.study.plots: colorize exactly, and every figure is a real PNG of a sensible size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softseg.study import plots
from softseg.study.plots import (
    colorize,
    plot_class_gains,
    plot_label_panel,
    plot_miou_vs_compute,
    plot_miou_vs_factor,
    plot_retention,
)

COLORS = [(200, 0, 0), (0, 100, 0), (0, 0, 60)]


def summary_rows() -> list[dict]:
    rows = []
    for factor in (2.0, 4.0, 8.0):
        for method, base in (("nearest", 50.0), ("soft", 53.0), ("mode", 51.0)):
            rows.append({
                "method": method, "factor": factor, "n": 3,
                "miou_mean": base - 3 * factor, "miou_std": 0.5 if method != "mode" else None,
                "per_class": {"road": base + 20, "pole": base - 40 - factor, "sky": None},
            })  # fmt: skip
    return rows


def check_png(path: Path, min_px: tuple[int, int] = (300, 200), max_px: int = 4000) -> None:
    assert path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert min_px[0] <= w <= max_px and min_px[1] <= h <= max_px, (w, h)
    assert [p for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


# --------------------------------------------------------------------------- colorize
def test_colorize_hard_exact_with_ignore_black():
    labels = torch.tensor([[0, 1], [2, 255]])
    rgb = colorize(labels, COLORS)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    np.testing.assert_array_equal(rgb, [[[200, 0, 0], [0, 100, 0]], [[0, 0, 60], [0, 0, 0]]])
    # the same from numpy, and with no ignore index
    np.testing.assert_array_equal(colorize(labels.numpy(), COLORS), rgb)
    no_ignore = colorize(np.array([[1]]), COLORS, ignore_index=None)
    np.testing.assert_array_equal(no_ignore, [[[0, 100, 0]]])


def test_colorize_soft_mixture_exact():
    soft = torch.zeros(3, 1, 3)
    soft[:, 0, 0] = torch.tensor([0.25, 0.5, 0.25])  # full mass: a mixture of the three colours
    soft[:, 0, 1] = torch.tensor([0.5, 0.0, 0.0])  # half the footprint ignored: half as bright
    # column 2 stays all zero: fully ignored pixel is black
    rgb = colorize(soft, COLORS)
    np.testing.assert_array_equal(rgb, [[[50, 50, 15], [100, 0, 0], [0, 0, 0]]])
    # a one-hot soft map gives exactly the hard colours
    one_hot = torch.nn.functional.one_hot(torch.tensor([[2, 0]]), 3).permute(2, 0, 1).float()
    hard = colorize(torch.tensor([[2, 0]]), COLORS)
    np.testing.assert_array_equal(colorize(one_hot, COLORS), hard)


def test_colorize_clips_negative_lobes():
    soft = torch.tensor([1.1, -0.2, 0.0]).reshape(3, 1, 1)
    np.testing.assert_array_equal(colorize(soft, COLORS), [[[220, 0, 0]]])


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.tensor([[0, 3]]), "label value 3"),
        (torch.zeros(2, 2), "integer"),
        (torch.zeros(4, 2, 2), "4 classes"),
        (torch.zeros(2), "shape"),
        (torch.zeros(3, 2, 2, dtype=torch.long), "float"),
    ],  # fmt: skip
)
def test_colorize_errors(x, message):
    with pytest.raises(ValueError, match=message):
        colorize(x, COLORS)


def test_colorize_bad_colors():
    with pytest.raises(ValueError, match="RGB triples"):
        colorize(torch.zeros(2, 2, dtype=torch.long), [(1, 2)])
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        colorize(torch.zeros(2, 2, dtype=torch.long), [(1, 2, 300)])


# --------------------------------------------------------------------------- figures
def test_plot_miou_vs_factor(tmp_path):
    path = plot_miou_vs_factor(summary_rows(), tmp_path / "sub" / "miou.png")
    assert path == tmp_path / "sub" / "miou.png"
    check_png(path, min_px=(500, 350), max_px=1200)


def test_plot_miou_vs_compute_places_each_method_at_its_epoch_times(tmp_path, monkeypatch):
    rows = summary_rows()
    for r in rows:
        r["epoch_time_s_median"] = 40.0 / r["factor"] + (0.5 if r["method"] == "soft" else 0.0)
    untimed = {"method": "soft", "factor": 1.0, "miou_mean": 60.0, "epoch_time_s_median": None}
    drawn = {}
    save = plots._save

    def capture(fig, path):
        for bars in fig.axes[0].containers:
            x, y = bars.lines[0].get_data()
            drawn[bars.get_label()] = (list(x), list(y))
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", capture)
    check_png(plot_miou_vs_compute(rows + [untimed], tmp_path / "compute.png"))
    assert drawn["soft"] == ([20.5, 10.5, 5.5], [47.0, 41.0, 29.0])  # factors 2, 4, 8; x1 untimed
    assert drawn["nearest"][0] == [20.0, 10.0, 5.0]
    with pytest.raises(ValueError, match="epoch_time_s_median"):
        plot_miou_vs_compute([untimed], tmp_path / "none.png")


def test_plot_miou_vs_factor_single_factor(tmp_path):
    rows = [r for r in summary_rows() if r["factor"] == 4.0]
    check_png(plot_miou_vs_factor(rows, tmp_path / "one.png"))
    with pytest.raises(ValueError, match="empty"):
        plot_miou_vs_factor([], tmp_path / "none.png")


def test_plot_class_gains(tmp_path):
    path = plot_class_gains(summary_rows(), tmp_path / "gains.png", method="soft")
    check_png(path, min_px=(500, 350), max_px=2000)
    check_png(plot_class_gains(summary_rows(), tmp_path / "mode.png", method="mode"))
    with pytest.raises(ValueError, match="'soft-area'"):
        plot_class_gains(summary_rows(), tmp_path / "x.png", method="soft-area")


def test_plot_retention(tmp_path):
    table = {
        "nearest": [100.0, 35.5, float("nan")],
        "mode": torch.tensor([99.0, 10.0, float("nan")], dtype=torch.float64),
        "soft": np.full(3, 100.0),
    }
    path = plot_retention(table, ["road", "pole", "sky"], tmp_path / "retention.png")
    check_png(path, min_px=(500, 350), max_px=2000)
    with pytest.raises(ValueError, match="2 class names"):
        plot_retention(table, ["road", "pole"], tmp_path / "bad.png")


def test_plot_label_panel(tmp_path):
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8, generator=g)
    hard = torch.randint(0, 3, (32, 48), generator=g)
    hard[:4] = 255
    low = hard[::4, ::4]
    soft = torch.softmax(torch.randn(3, 8, 12, generator=g), dim=0) * 0.9
    rows = [("labels", hard), ("nearest", low), ("soft", soft)]
    path = plot_label_panel(image, rows, COLORS, tmp_path / "panel.png")
    check_png(path, min_px=(1000, 200), max_px=2000)
    # float image, and wrapping onto a second row of panels
    float_image = image.float() / 255
    four = rows + rows[:1]
    wrapped = plot_label_panel(float_image, four, COLORS, tmp_path / "wrap.png", max_cols=2)
    with Image.open(wrapped) as im:
        w, h = im.size
    with Image.open(path) as im:
        assert h > im.size[1] and w < im.size[0]  # two rows of two panels instead of one of four


def test_plot_label_panel_bad_image(tmp_path):
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        plot_label_panel(torch.zeros(32, 48), [], COLORS, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- global state
IMPORT_EVERYTHING = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import matplotlib

    backend, rc = matplotlib.get_backend(), dict(matplotlib.rcParams)
    import softseg

    names = [m.name for m in pkgutil.walk_packages(softseg.__path__, "softseg.")]
    for name in names:
        if not name.endswith("__main__"):  # runs the CLI
            importlib.import_module(name)
    changed = sorted(k for k, v in matplotlib.rcParams.items() if rc.get(k) != v)
    print(json.dumps({"before": backend, "after": matplotlib.get_backend(), "changed": changed,
                      "pyplot": "matplotlib.pyplot" in sys.modules, "modules": names}))
    """
)


def test_importing_softseg_leaves_matplotlib_state_alone(tmp_path):
    # a backend other than Agg: a module that switched to Agg on import would show here
    env = {**os.environ, "MPLBACKEND": "svg", "MPLCONFIGDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "softseg.study.plots" in report["modules"] and "softseg.cli" in report["modules"]
    assert report["before"] == report["after"] == "svg"
    assert report["changed"] == []
    assert not report["pyplot"]  # figures are drawn without pyplot's global registry

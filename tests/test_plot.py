"""shapo-plot: curves of real small runs, seeds pooled by config, runs in progress, bad input."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from compile_options import quick_compile_flags
from shapo_jax import plot

RUN_ARGS = ["--env", "PointHazard", "--num-envs", "8", "--unroll-length", "16", "--num-minibatches", "2",
            "--update-epochs", "1", "--num-seeds", "2", "--episode-length", "8", "--total-steps", "384",
            "--no-progress"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A 3-update, 2-seed shapo-train run (subprocess, the session's compilation cache)."""
    out = tmp_path_factory.mktemp("plot") / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path_factory.getbasetemp() / "xdg_cache"),
           "XLA_FLAGS": quick_compile_flags()}
    result = subprocess.run([sys.executable, "-m", "shapo_jax.cli", *RUN_ARGS, "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def variant(real_run, folder, **config_changes):
    """A copy of the real run with other config.json entries (another experiment or seed)."""
    shutil.copytree(real_run, folder)
    with open(folder / "config.json") as f:
        config = json.load(f)
    config.update(config_changes)
    with open(folder / "config.json", "w") as f:
        json.dump(config, f)
    return folder


def assert_image(path, kind):
    """A valid image of ``kind`` with something drawn on it."""
    data = path.read_bytes()
    if kind == "png":
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400
        assert pixels.std() > 5 and len(np.unique(pixels)) > 20  # lines and text, not a blank canvas
    elif kind == "svg":
        assert data.lstrip().startswith(b"<?xml") and b"<svg" in data and data.count(b"<path") > 10
    else:
        assert data.startswith(b"%PDF") and len(data) > 5000


def test_plot_of_one_run_has_a_line_per_panel_and_the_cost_limit(real_run, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert plot.main([str(real_run), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert_image(out, "png")
    assert [name for name in os.listdir(tmp_path) if ".tmp" in name] == []

    figure = plot.make_figure(plot.load_groups([str(real_run)]), plot.DEFAULT_METRICS)
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == ["episode return", "episode cost", "cost paid in training (cumulative)"]
    assert [len(axis.get_lines()) for axis in axes] == [1, 2, 1]  # the cost panel draws the limit too
    limit = axes[1].get_lines()[1]
    assert set(limit.get_ydata()) == {2.0} and limit.get_linestyle() == "--"  # PointHazard's cost limit
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["ppo_lag rho=0 (2 seeds)"]
    assert list(axes[0].get_lines()[0].get_xdata()) == [128, 256, 384]
    assert len(axes[0].collections) == 1  # the band


def test_glob_pools_seeds_of_equal_configs_and_overlays_experiments(real_run, tmp_path):
    root = tmp_path / "runs"
    variant(real_run, root / "pidlag-0", algo="trpo_pid", rho=0.05, perturbation_radius=0.05, seed=0)
    variant(real_run, root / "pidlag-1", algo="trpo_pid", rho=0.05, perturbation_radius=0.05, seed=1)
    variant(real_run, root / "base-0", seed=0)
    groups = plot.load_groups([str(root / "pidlag-*"), str(root / "base-*")])
    assert [len(group.runs) for group in groups] == [2, 1]
    assert plot.default_labels(groups) == ["trpo_pid rho=0.05 (4 seeds)", "ppo_lag rho=0 (2 seeds)"]
    figure = plot.make_figure(groups, ["episode_return", "episode_cost"], band="ci95")
    assert [len(axis.get_lines()) for axis in figure.axes] == [2, 3]
    assert len(figure.legends[0].get_texts()) == 2
    assert len(plot.load_groups([str(root / "*")], separate=True)) == 3

    for kind in ("svg", "pdf"):
        out = tmp_path / "plots" / f"runs.{kind}"  # the folder is made
        assert plot.main([str(root / "*"), "--out", str(out), "--label", "PIDLag+SHAPO", "PPO-Lag"]) == 0
        assert_image(out, kind)
    out = tmp_path / "steps.png"
    assert plot.main([str(root / "base-0"), "--out", str(out), "--x", "update", "--metrics", "multiplier",
                      "--band", "none"]) == 0
    assert_image(out, "png")


def test_mean_and_bands_over_seeds():
    curves = [(np.array([1.0, 2.0]), np.array([1.0, 3.0])), (np.array([1.0, 2.0, 3.0]), np.array([3.0, 5.0, 7.0]))]
    xs, mean, low, high = plot.pooled(curves, "std")
    np.testing.assert_allclose(xs, [1, 2, 3])
    np.testing.assert_allclose(mean, [2, 4, 7])
    np.testing.assert_allclose(high - mean, [1, 1, 0])  # x = 3: one seed so far, no spread
    _, _, low, high = plot.pooled(curves, "ci95")
    np.testing.assert_allclose(high - mean, [1.96 * np.sqrt(2) / np.sqrt(2), 1.96, 0])
    _, _, low, high = plot.pooled(curves, "none")
    np.testing.assert_allclose(low, mean)


def test_a_run_in_progress_plots_its_complete_rows(real_run, tmp_path):
    """A run writing metrics.csv: the last update has only seed 0, and a line is cut short."""
    run = variant(real_run, tmp_path / "running")
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 3 * 2
    (run / "metrics.csv").write_text("".join(lines[:6]) + lines[6][:25])  # update 3: seed 0, half of seed 1
    columns = plot.read_columns(str(run / "metrics.csv"))
    assert list(columns["update"]) == [1, 1, 2, 2, 3]
    groups = plot.load_groups([str(run)])
    figure = plot.make_figure(groups, ["episode_return"])
    assert list(figure.axes[0].get_lines()[0].get_xdata()) == [128, 256, 384]
    assert plot.main([str(run), "--out", str(tmp_path / "running.png")]) == 0

    fresh = variant(real_run, tmp_path / "fresh")  # started: header only; plotted beside another run
    (fresh / "metrics.csv").write_text(lines[0])
    warnings = []
    assert len(plot.load_groups([str(run), str(fresh)], warn=warnings.append)) == 1
    assert len(warnings) == 1 and str(fresh) in warnings[0]


def error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("shapo-plot: error: "), captured.err
    return lines[0]


def test_bad_input_is_one_line_naming_the_path_or_flag(real_run, tmp_path, capsys):
    out = str(tmp_path / "x.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    no_metrics = tmp_path / "no_metrics"
    no_metrics.mkdir()
    (no_metrics / "config.json").write_text("{}")
    header_only = variant(real_run, tmp_path / "header_only")
    (header_only / "metrics.csv").write_text("update,seed,env_steps\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = [
        ([str(tmp_path / "missing")], str(tmp_path / "missing")),
        ([str(empty)], str(empty)),
        ([str(no_metrics)], "metrics.csv"),
        ([str(tmp_path / "nothing-*")], "nothing-*"),
        ([str(header_only)], str(header_only)),
        ([str(real_run), "--metrics", "episode_return", "reward_of_joy"], "--metrics"),
        ([str(real_run), "--x", "wall_time"], "--x"),
        ([str(real_run), "--label", "a", "b"], "--label"),
    ]
    for arguments, named in cases:
        assert plot.main([*arguments, "--out", out]) == plot.EXIT_USAGE, arguments
        line = error_line(capsys)
        assert named in line, (arguments, line)
    assert plot.main([str(no_metrics), "--out", out]) == 2 and str(no_metrics) in error_line(capsys)
    assert plot.main([str(real_run), "--metrics", "nope", "--out", out]) == 2 and "'nope'" in error_line(capsys)
    for bad_out in (str(a_file / "x.png"), str(tmp_path / "x.jpg")):
        assert plot.main([str(real_run), "--out", bad_out]) == plot.EXIT_USAGE
        assert error_line(capsys).startswith("shapo-plot: error: --out:")
    assert not os.path.exists(out)


def test_shapo_plot_is_a_console_script():
    import tomllib

    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as f:
        assert tomllib.load(f)["project"]["scripts"]["shapo-plot"] == "shapo_jax.plot:main"

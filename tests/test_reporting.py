"""Tests for shapo_jax.reporting: atomic write_json and the Reporter's CSV / TensorBoard output."""

import csv
import glob
import json
import math
import os

import numpy as np
import pytest

from shapo_jax import reporting
from shapo_jax.reporting import CSV_FIRST_COLUMNS, Reporter, write_json


def strict_load(path):
    """json.load that rejects NaN / Infinity, which are not JSON."""
    def reject(constant):
        raise ValueError(f"non-JSON constant {constant}")

    with open(path) as f:
        return json.load(f, parse_constant=reject)


def test_write_json_nan_and_inf_become_null(tmp_path):
    path = tmp_path / "summary.json"
    data = {
        "a": float("nan"),
        "b": [1.0, float("inf"), -float("inf"), 2],
        "c": {"d": float("nan"), "e": (3.5, float("nan"))},
        "f": np.float64("nan"),  # a float subclass
        "g": "text",
        "h": None,
        "i": 7,
    }
    write_json(str(path), data)
    loaded = strict_load(path)
    assert loaded == {
        "a": None,
        "b": [1.0, None, None, 2],
        "c": {"d": None, "e": [3.5, None]},
        "f": None,
        "g": "text",
        "h": None,
        "i": 7,
    }
    assert os.listdir(tmp_path) == ["summary.json"]  # no temporary file left behind


def test_write_json_writes_a_temp_file_then_renames(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text('{"old": true}\n')
    calls = []
    real_replace = os.replace

    def spy(source, destination):
        # At the moment of the rename the complete new JSON is in the temporary file and
        # the destination still holds the old content: a reader never sees a partial file.
        source, destination = os.fspath(source), os.fspath(destination)
        calls.append((source, destination))
        assert source != destination
        assert os.path.dirname(os.path.abspath(source)) == os.path.dirname(os.path.abspath(destination))
        with open(source) as f:
            assert json.load(f) == {"new": [1, 2, None]}
        with open(destination) as f:
            assert json.load(f) == {"old": True}
        real_replace(source, destination)

    monkeypatch.setattr(reporting.os, "replace", spy)
    write_json(str(path), {"new": [1, 2, float("nan")]})
    assert calls and calls[0][1] == str(path)
    assert strict_load(path) == {"new": [1, 2, None]}
    assert not os.path.exists(calls[0][0])


def test_write_json_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json(str(path), {"ok": 1})
    with pytest.raises(TypeError):
        write_json(str(path), {"bad": object()})  # not serialisable: fails mid-write
    assert strict_load(path) == {"ok": 1}


def update_metrics(update, num_seeds=2, steps_per_update=10):
    """One update's metrics, as the compiled update returns them: arrays over seeds."""
    seeds = np.arange(num_seeds)
    return {
        "update": np.full(num_seeds, update, np.int32),
        "env_steps": np.full(num_seeds, update * steps_per_update, np.int32),
        "episode_return": (10.0 * update + seeds).astype(np.float32),
        "episode_cost": (0.5 * update + 0.25 * seeds).astype(np.float32),
        "total_cost": (3.0 * update + seeds).astype(np.float32),
        "multiplier": (0.125 * update * (seeds + 1)).astype(np.float32),
        "approx_kl": (0.001 * update + 0.0001 * seeds).astype(np.float32),
        "actor_loss": (-0.5 * update - seeds).astype(np.float32),
    }


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_reporter_writes_and_flushes_rows_per_seed(tmp_path, capsys):
    out = tmp_path / "run"
    reporter = Reporter(num_seeds=2, num_updates=3, steps_per_update=10, out_dir=str(out), progress=False)
    try:
        for update in (1, 2, 3):
            reporter.log_update(update_metrics(update))
            # Read while the reporter is still open: the rows are already on disk.
            rows = read_rows(out / "metrics.csv")
            assert len(rows) == 2 * update
            for row in rows[-2:]:
                seed = int(row["seed"])
                expected = {name: values[seed] for name, values in update_metrics(update).items()}
                assert int(row["update"]) == update
                assert int(row["env_steps"]) == update * 10
                for name in ("episode_return", "episode_cost", "total_cost", "multiplier", "approx_kl",
                             "actor_loss"):
                    assert float(row[name]) == pytest.approx(float(expected[name]), rel=1e-6), name
        with open(out / "metrics.csv") as f:
            header = f.readline().strip().split(",")
        # The fixed columns first, in their order, then the rest sorted.
        assert header == list(CSV_FIRST_COLUMNS) + ["actor_loss", "approx_kl"]
        assert [(int(r["update"]), int(r["seed"])) for r in rows] == [
            (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
        assert reporter.steps_per_second is not None and reporter.steps_per_second > 0
    finally:
        reporter.close()
    assert glob.glob(str(out / "tensorboard" / "events.out.tfevents.*"))
    # progress=False: no progress bar on stderr.
    captured = capsys.readouterr()
    assert "update" not in captured.err and "it/s" not in captured.err


def test_reporter_scalar_metrics_single_seed(tmp_path):
    """One seed whose metrics arrive as 0-d arrays or [1] arrays."""
    reporter = Reporter(num_seeds=1, num_updates=1, steps_per_update=5, out_dir=str(tmp_path), progress=False)
    try:
        reporter.log_update({name: np.asarray(values[0]) for name, values in update_metrics(1, 1, 5).items()})
        rows = read_rows(tmp_path / "metrics.csv")
        assert len(rows) == 1 and rows[0]["seed"] == "0" and float(rows[0]["episode_return"]) == 10.0
    finally:
        reporter.close()


def test_reporter_without_out_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reporter = Reporter(num_seeds=2, num_updates=2, steps_per_update=10, out_dir=None, progress=False)
    reporter.log_update(update_metrics(1))
    reporter.log_update(update_metrics(2))
    reporter.close()
    assert os.listdir(tmp_path) == []


def test_reporter_progress_bar(tmp_path, capsys):
    reporter = Reporter(num_seeds=2, num_updates=2, steps_per_update=10, out_dir=None, progress=True)
    reporter.log_update(update_metrics(1))
    reporter.log_update(update_metrics(2))
    reporter.close()
    err = capsys.readouterr().err
    # The bar shows the mean over seeds of the latest return (20.5) and cost (1.125 -> "1.12"/"1.13").
    assert "2/2" in err and "return=20.50" in err and "cost=1.1" in err
    assert not math.isnan(reporter.steps_per_second)


def _metrics(update: int) -> dict:
    return {"update": np.array([update]), "env_steps": np.array([update * 10]), "episode_return": np.array([1.0]),
            "episode_cost": np.array([0.0]), "total_cost": np.array([0.0]), "multiplier": np.array([0.0])}


@pytest.mark.parametrize("append,expected_updates", [(False, ["1"]), (True, ["1", "1"])])
def test_reporter_starts_metrics_anew_unless_appending(tmp_path, append, expected_updates):
    first = Reporter(1, 1, 10, out_dir=str(tmp_path), progress=False)
    first.log_update(_metrics(1))
    first.close()
    second = Reporter(1, 1, 10, out_dir=str(tmp_path), progress=False, append=append)
    second.log_update(_metrics(1))
    second.close()
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["update"] for row in rows] == expected_updates

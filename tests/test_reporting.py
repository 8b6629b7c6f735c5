"""Tests for shapo_jax.reporting: atomic write_json and the Reporter's CSV / TensorBoard output."""

import csv
import glob
import json
import math
import os

import numpy as np
import pytest

from compile_options import quick_compile_flags
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


# ----------------------------------------------------------------------------------------
# An earlier run's files, and Weights & Biases.
# ----------------------------------------------------------------------------------------

def test_clear_earlier_run_removes_outputs_but_not_checkpoints_nor_other_files(tmp_path):
    assert not reporting.clear_earlier_run(str(tmp_path))  # nothing there: not an earlier run
    for name in ("config.json", "metrics.csv", "summary.json", "policy.npz", "eval_256.json", "summary.json.tmp",
                 "notes.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out.tfevents.1").write_text("x")
    (tmp_path / "checkpoints" / "128").mkdir(parents=True)
    assert reporting.clear_earlier_run(str(tmp_path))
    # config.json is replaced atomically by the new run; the user's own files and checkpoints stay.
    assert sorted(os.listdir(tmp_path)) == ["checkpoints", "config.json", "notes.txt"]
    assert os.listdir(tmp_path / "checkpoints") == ["128"]


class FakeWandbRun:
    """Records what the Reporter sends to a wandb run."""

    def __init__(self):
        self.logged, self.summary, self.exit_code = [], {}, None

    def log(self, row, step):
        self.logged.append((step, dict(row)))

    def finish(self, exit_code=0):
        self.exit_code = exit_code


def test_reporter_mirrors_every_update_to_wandb_per_seed_and_mean(tmp_path):
    run = FakeWandbRun()
    reporter = Reporter(2, 2, 10, out_dir=str(tmp_path), progress=False, wandb_run=run)
    reporter.log_update(update_metrics(1))
    reporter.log_update(update_metrics(2))
    reporter.close({"env_steps_per_second": 123.0, "device": "cpu:cpu x1", "episode_return": [1.0, 2.0]})
    assert [step for step, _ in run.logged] == [10, 20]  # env steps per seed
    step, row = run.logged[1]
    assert row["update"] == 2
    assert row["episode_return/seed_0"] == 20.0 and row["episode_return/seed_1"] == 21.0
    assert row["episode_return/mean"] == 20.5
    assert row["total_cost/seed_1"] == 7.0 and row["approx_kl/mean"] == pytest.approx(0.00205)
    assert not any(key.startswith(("seed", "env_steps/")) for key in row)
    assert run.summary == {"env_steps_per_second": 123.0, "device": "cpu:cpu x1"}  # lists stay in summary.json
    assert run.exit_code == 0
    assert len(read_rows(tmp_path / "metrics.csv")) == 4  # the CSV as before


def test_require_wandb_without_the_package_says_how_to_install_it(monkeypatch):
    import sys

    from shapo_jax.config import ConfigError, TrainConfig

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    reporting.require_wandb(TrainConfig())  # not asked for: nothing to check
    with pytest.raises(ConfigError) as info:
        reporting.require_wandb(TrainConfig(wandb_project="shapo"))
    assert info.value.flag == "--wandb-project" and "pip install" in str(info.value) and "[wandb]" in str(info.value)
    assert "\n" not in str(info.value)


WANDB_RUN_ARGS = ["--env", "PointHazard", "--num-envs", "8", "--unroll-length", "16", "--num-minibatches", "2",
                  "--update-epochs", "1", "--total-steps", "256", "--num-seeds", "2", "--episode-length", "8",
                  "--no-progress", "--wandb-project", "shapo-test", "--wandb-group", "group-g", "--wandb-name",
                  "name-n"]


def test_shapo_train_logs_to_wandb_offline(tmp_path, tmp_path_factory):
    """A real run in wandb's offline mode (no network): the run's local record holds the
    config, the per-seed and mean keys of every update, the group and the name."""
    pytest.importorskip("wandb")
    import subprocess
    import sys

    env = {**os.environ, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_dir"),
           "WANDB_SILENT": "true", "XDG_CACHE_HOME": str(tmp_path_factory.getbasetemp() / "xdg_cache"),
           "XLA_FLAGS": quick_compile_flags()}
    (tmp_path / "wandb_dir").mkdir()
    result = subprocess.run([sys.executable, "-m", "shapo_jax.cli", *WANDB_RUN_ARGS, "--out", str(tmp_path / "run")],
                            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    records = glob.glob(str(tmp_path / "wandb_dir" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(records) == 1, os.listdir(tmp_path / "wandb_dir")
    with open(records[0], "rb") as f:
        data = f.read()
    for key in (b"episode_return/seed_0", b"episode_return/seed_1", b"episode_cost/mean", b"total_cost/mean",
                b"perturbation_radius", b"cost_limit", b"env_steps_per_second", b"group-g", b"name-n", b"shapo-test"):
        assert key in data, key
    assert (tmp_path / "run" / "metrics.csv").exists() and not (tmp_path / "wandb").exists()


def test_start_wandb_passes_the_flags_and_reports_a_failure_in_one_line(monkeypatch):
    import sys
    import types

    from shapo_jax.config import ConfigError, TrainConfig

    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if kwargs["project"] == "offline-and-no-key":
            raise RuntimeError("api_key not configured (no-tty).\ncall wandb.login(key=...)")
        return "the run"

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    assert reporting.start_wandb(TrainConfig(), {"a": 1}) is None and not calls  # not asked for
    config = TrainConfig(wandb_project="p", wandb_entity="e", wandb_group="g", wandb_name="n")
    assert reporting.start_wandb(config, {"rho": 0.05}) == "the run"
    assert calls[-1] == {"project": "p", "entity": "e", "group": "g", "name": "n", "config": {"rho": 0.05},
                         "job_type": "train"}
    with pytest.raises(ConfigError) as info:
        reporting.start_wandb(TrainConfig(wandb_project="offline-and-no-key"), {})
    assert info.value.flag == "--wandb-project" and "\n" not in str(info.value) and "api_key" in str(info.value)

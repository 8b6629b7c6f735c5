"""shapo-eval on a saved run: per-seed return and cost of both policies, the JSON report, errors."""

import json
import math
import os
import subprocess
import sys

import pytest

from shapo_jax import evaluate

RUN_ARGS = ["--env", "PointHazard", "--num-envs", "8", "--unroll-length", "16", "--num-minibatches", "2",
            "--update-epochs", "1", "--num-seeds", "2", "--episode-length", "8", "--total-steps", "256",
            "--checkpoint-every", "128", "--no-progress"]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A 2-update, 2-seed run with checkpoints at steps 128 and 256 (subprocess: XLA at
    optimisation level 0, and the session's shared compilation cache)."""
    out = tmp_path_factory.mktemp("eval") / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path_factory.getbasetemp() / "xdg_cache"),
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()}
    result = subprocess.run([sys.executable, "-m", "shapo_jax.cli", *RUN_ARGS, "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_eval_reports_finite_return_and_cost_per_seed_for_both_policies(saved_run, capsys):
    assert evaluate.main(["--run", str(saved_run), "--episodes", "3"]) == 0
    report_path = saved_run / "eval_256.json"
    with open(report_path) as f:
        report = json.load(f)
    assert report["step"] == 256 and report["episodes_per_seed"] == 3 and report["env"] == "PointHazard"
    for policy in ("deterministic", "stochastic"):
        part = report[policy]
        assert set(part) == {"episode_return", "episode_cost", "mean_return", "mean_cost"}
        assert len(part["episode_return"]) == len(part["episode_cost"]) == 2
        values = part["episode_return"] + part["episode_cost"] + [part["mean_return"], part["mean_cost"]]
        assert all(isinstance(x, float) and math.isfinite(x) for x in values)
        assert all(c >= 0 for c in part["episode_cost"])
    assert report["deterministic"] != report["stochastic"]
    assert "deterministic" in capsys.readouterr().out


def test_eval_of_an_earlier_step_and_of_a_missing_one(saved_run, tmp_path, capsys):
    earlier = evaluate.evaluate_run(str(saved_run), num_episodes=2, step=128)
    assert earlier["step"] == 128
    assert evaluate.main(["--run", str(saved_run), "--step", "999", "--json", str(tmp_path / "x.json")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("shapo-eval: error: --step 999") and "128, 256" in error


def test_eval_errors_are_one_line(saved_run, tmp_path, capsys):
    assert evaluate.main(["--run", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err
    assert evaluate.main(["--run", str(saved_run), "--episodes", "1", "--json", str(tmp_path / "r.json"),
                          "--video", str(tmp_path / "v.mp4")]) == 2
    assert "no renderer" in capsys.readouterr().err  # PointHazard is pure JAX

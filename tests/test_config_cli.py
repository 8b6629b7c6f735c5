"""Tests for shapo_jax.config (validate, properties) and the shapo-train CLI (via subprocess)."""

import concurrent.futures
import csv
import dataclasses
import glob
import json
import math
import os
import subprocess
import sys
import time

import pytest

from compile_options import quick_compile_flags
import shapo_envs
from shapo_jax.config import ConfigError, TrainConfig, flag_name, validate

KNOWN_ENVS = shapo_envs.list_envs()
BASE = TrainConfig(env="PointHazard", num_envs=8, unroll_length=16, num_minibatches=2, total_steps=256)


def test_base_config_is_valid():
    assert validate(BASE, KNOWN_ENVS) is BASE


def test_default_config_is_valid():
    validate(TrainConfig(), KNOWN_ENVS)


@pytest.mark.parametrize(
    "changes,flag",
    [
        ({"env": "NoSuchEnv"}, "--env"),
        ({"algo": "trpo"}, "--algo"),
        ({"rho": -0.1}, "--rho"),
        ({"rho": float("nan")}, "--rho"),
        ({"rho": float("inf")}, "--rho"),
        ({"num_envs": 0}, "--num-envs"),
        ({"num_envs": -4}, "--num-envs"),
        ({"num_minibatches": 3}, "--num-minibatches"),  # 8*16 = 128 is not divisible by 3
        ({"total_steps": 300}, "--total-steps"),  # not a multiple of 128
        ({"rho": 0.1, "perturbation_target_kl": 1e-3, "geometry": "fisher"}, "--perturbation-target-kl"),
        ({"perturbation_target_kl": 1e-3, "geometry": "euclidean"}, "--perturbation-target-kl"),
        ({"perturbation_target_kl": -1e-3, "geometry": "fisher"}, "--perturbation-target-kl"),
        ({"gamma": 1.5}, "--gamma"),
        ({"gamma": -0.01}, "--gamma"),
        ({"gamma": float("nan")}, "--gamma"),
        ({"gae_lambda": 1.01}, "--gae-lambda"),
        ({"geometry": "riemann"}, "--geometry"),
        ({"unroll_length": 0}, "--unroll-length"),
        ({"update_epochs": 0}, "--update-epochs"),
        ({"num_seeds": 0}, "--num-seeds"),
        ({"clip_epsilon": 0.0}, "--clip-epsilon"),
        ({"multiplier_init": -1.0}, "--multiplier-init"),
        ({"cost_limit": -1.0}, "--cost-limit"),
        ({"episode_length": 0}, "--episode-length"),
        ({"hidden_sizes": ()}, "--hidden-sizes"),
        ({"physics_impl": "cuda"}, "--physics-impl"),
        ({"physics_impl": "warp", "num_devices": 2}, "--physics-impl"),
    ],
)
def test_validate_names_the_flag(changes, flag):
    config = dataclasses.replace(BASE, **changes)
    with pytest.raises(ConfigError) as info:
        validate(config, KNOWN_ENVS)
    assert info.value.flag == flag
    assert str(info.value).startswith(flag + ":")
    assert isinstance(info.value, ValueError)


def test_validate_env_check_needs_known_envs():
    config = dataclasses.replace(BASE, env="NoSuchEnv")
    assert validate(config) is config  # no registry given: the name is not checked
    with pytest.raises(ConfigError, match="PointHazard"):  # the message lists the valid names
        validate(config, KNOWN_ENVS)


def test_validate_accepts_edge_values():
    for changes in ({"gamma": 0.0}, {"gamma": 1.0}, {"gae_lambda": 0.0}, {"gae_lambda": 1.0}, {"rho": 0.0},
                    {"rho": 0.05, "geometry": "fisher"}, {"perturbation_target_kl": 1e-5, "geometry": "fisher"},
                    {"algo": "ppo"}, {"cost_limit": 0.0}):
        config = dataclasses.replace(BASE, **changes)
        assert validate(config, KNOWN_ENVS) is config


def test_flag_name():
    assert flag_name("num_envs") == "--num-envs"
    assert flag_name("perturbation_target_kl") == "--perturbation-target-kl"
    assert flag_name("rho") == "--rho"


def test_properties():
    config = dataclasses.replace(BASE, num_envs=8, unroll_length=64, num_minibatches=4, total_steps=8 * 64 * 5)
    assert config.steps_per_update == 512
    assert config.num_updates == 5
    assert config.minibatch_size == 128
    assert BASE.num_updates == 2 and BASE.minibatch_size == 64
    assert BASE.perturbation_radius == 0.0 and not BASE.uses_sharpness
    euclid = dataclasses.replace(BASE, rho=0.05)
    assert euclid.perturbation_radius == 0.05 and euclid.uses_sharpness
    for delta in (1e-5, 1e-3, 0.02):
        fisher = dataclasses.replace(BASE, perturbation_target_kl=delta, geometry="fisher")
        assert fisher.perturbation_radius == pytest.approx(math.sqrt(2 * delta), rel=1e-12)
        assert fisher.uses_sharpness
    assert dataclasses.replace(BASE, perturbation_target_kl=1e-5).perturbation_radius == pytest.approx(
        0.004472135955, rel=1e-9)


# ----------------------------------------------------------------------------------------
# The CLI, in subprocesses (each would otherwise share this process's JAX state).
# ----------------------------------------------------------------------------------------

CLI_ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
# For the training runs only: XLA's quick compile (compile_options) compiles the update
# in about half the time (~5 s instead of ~10 s); the outputs checked here do not depend on it.
TRAIN_ENV = {**CLI_ENV, "XLA_FLAGS": quick_compile_flags()}


def run_cli(args, cwd, timeout=180, env=CLI_ENV):
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "shapo_jax.cli", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
    )
    return result, time.perf_counter() - start


BAD_INPUTS = {
    "unknown-env": (["--env", "NoSuchEnv"], "--env"),
    "unknown-algo": (["--algo", "nope"], "--algo"),
    "negative-rho": (["--rho", "-1"], "--rho"),
    "zero-envs": (["--num-envs", "0"], "--num-envs"),
    "minibatches": (["--num-envs", "8", "--unroll-length", "64", "--num-minibatches", "3"], "--num-minibatches"),
    "rho-and-kl": (["--geometry", "fisher", "--rho", "0.1", "--perturbation-target-kl", "0.001"],
                   "--perturbation-target-kl"),
    "warp-without-the-option": (["--env", "SafetyHopperVelocity", "--physics-impl", "warp"], "--physics-impl"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_cli_bad_input_fails_fast_naming_the_flag(cli_runs, name):
    result, elapsed, _ = cli_runs[name]
    flag = BAD_INPUTS[name][1]
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no error message on stderr"
    assert flag in lines[-1], lines[-1]
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr
    assert "compiled" not in result.stdout  # failed before compiling anything
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_cli_bad_input_writes_nothing(cli_runs):
    assert os.listdir(cli_runs["help"][2]) == []


def test_cli_help_lists_every_flag(cli_runs):
    result, elapsed, _ = cli_runs["help"]
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    for field in dataclasses.fields(TrainConfig):
        assert flag_name(field.name) in text, field.name
    assert "--no-progress" in text and "--no-compilation-cache" in text
    assert elapsed < 30


# One tiny real training run, the same command again (same seed), and a different seed.
# --episode-length 8 makes episodes finish inside the 32 steps per env, so that the
# summary's episode_return depends on the seed (with the task's 60-step episodes no
# episode ends in 256 steps and every seed reports the same 0.0).
TRAIN_ARGS = ["--env", "PointHazard", "--num-envs", "8", "--unroll-length", "16", "--num-minibatches", "2",
              "--update-epochs", "1", "--total-steps", "256", "--num-seeds", "2", "--episode-length", "8",
              "--no-progress", "--no-compilation-cache"]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """All CLI subprocesses of this file: the bad inputs and --help (they only import), then
    the three training runs (each compiles for a few seconds).

    Returns name -> (CompletedProcess, elapsed seconds, out dir or cwd).
    """
    root = tmp_path_factory.mktemp("cli")
    bad_cwd = root / "bad"
    bad_cwd.mkdir()
    jobs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        jobs[name] = (TRAIN_ARGS + ["--seed", seed, "--out", str(root / name)], root, root / name, 240, TRAIN_ENV)
    for name, (args, _) in BAD_INPUTS.items():
        jobs[name] = (args, bad_cwd, bad_cwd, 60, CLI_ENV)
    jobs["help"] = (["--help"], bad_cwd, bad_cwd, 60, CLI_ENV)
    # First the quick runs, two at a time (so each one's wall time is its own on a 2-core
    # machine), then the three training runs at once.
    results = {}
    for names, workers in ([n for n in jobs if n not in ("a", "b", "c")], 2), (["a", "b", "c"], 3):
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {name: pool.submit(run_cli, *(jobs[name][i] for i in (0, 1, 3, 4))) for name in names}
            results.update({name: (*futures[name].result(), jobs[name][2]) for name in names})
    return results


@pytest.fixture(scope="module")
def train_runs(cli_runs):
    for name in ("a", "b", "c"):
        result = cli_runs[name][0]
        assert result.returncode == 0, (name, result.stdout, result.stderr)
    return {name: (cli_runs[name][0], cli_runs[name][2]) for name in ("a", "b", "c")}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_cli_train_outputs(train_runs):
    result, out = train_runs["a"]
    assert "Traceback" not in result.stdout + result.stderr
    assert "env steps/s" in result.stdout

    config = read_json(out / "config.json")
    assert config["algo"] == "ppo_lag" and config["geometry"] == "euclidean" and config["rho"] == 0.0
    assert config["env"] == "PointHazard" and config["num_updates"] == 2 and config["episode_length"] == 8
    # resolved: the task's defaults as values (PointHazard: limit 2, layouts kept), no nulls for them
    assert config["cost_limit"] == 2.0 and config["redraw_resets"] is False
    assert config["device"].startswith("cpu")
    assert isinstance(config["versions"]["jax"], str) and config["versions"]["jax"][0].isdigit()

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2  # num_updates x num_seeds
    for column in ("update", "seed", "episode_return", "episode_cost", "total_cost"):
        assert column in rows[0], column
    assert [(int(r["update"]), int(r["seed"])) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert [int(r["env_steps"]) for r in rows] == [128, 128, 256, 256]

    summary = read_json(out / "summary.json")
    for key in ("episode_return", "episode_cost", "total_cost"):
        assert isinstance(summary[key], list) and len(summary[key]) == 2, key
        assert all(isinstance(x, float) and math.isfinite(x) for x in summary[key]), key
    assert summary["env_steps_per_second"] > 0
    assert summary["device"] == config["device"]
    # The summary is the last update's metrics.
    last = [r for r in rows if int(r["update"]) == 2]
    for seed in (0, 1):
        assert float(last[seed]["episode_return"]) == pytest.approx(summary["episode_return"][seed], rel=1e-6)
        assert float(last[seed]["total_cost"]) == pytest.approx(summary["total_cost"][seed], abs=1e-6)
    # Episodes of 8 steps finished, so the returns are real numbers of finished episodes.
    assert all(float(r["episodes_finished"]) > 0 for r in rows)

    events = glob.glob(str(out / "tensorboard" / "events.out.tfevents.*"))
    assert events and os.path.getsize(events[0]) > 0


def test_cli_same_seed_same_result_other_seed_differs(train_runs):
    a = read_json(train_runs["a"][1] / "summary.json")
    b = read_json(train_runs["b"][1] / "summary.json")
    c = read_json(train_runs["c"][1] / "summary.json")
    assert a["episode_return"] == b["episode_return"]
    assert a["total_cost"] == b["total_cost"]
    assert a["episode_return"] != c["episode_return"]
    # Seeds inside one run differ too (keys split from --seed).
    assert a["episode_return"][0] != a["episode_return"][1]
    # Every logged metric (no wall-clock columns in the CSV) is reproduced exactly.
    with open(train_runs["a"][1] / "metrics.csv") as f1, open(train_runs["b"][1] / "metrics.csv") as f2:
        assert f1.read() == f2.read()


# ----------------------------------------------------------------------------------------
# The GPU hint: a GPU the system sees (nvidia-smi) but JAX does not (CPU-only jaxlib).
# ----------------------------------------------------------------------------------------

def fake_nvidia_smi(folder, output: str, code: int = 0) -> str:
    """An ``nvidia-smi`` in ``folder`` printing ``output``; returns a PATH with only it."""
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{output}'\nexit {code}\n")
    script.chmod(0o755)
    return str(folder)


def test_nvidia_smi_sees_gpu_runs_it(tmp_path, monkeypatch):
    from shapo_jax.cli import nvidia_smi_sees_gpu

    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-1234)"))
    assert nvidia_smi_sees_gpu()
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed: no driver", code=9))
    assert not nvidia_smi_sees_gpu()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert not nvidia_smi_sees_gpu()


def test_gpu_warning_only_when_jax_misses_a_visible_gpu():
    from shapo_jax.cli import gpu_warning

    def never():
        raise AssertionError("nvidia-smi must not run when the answer is known without it")

    warning = gpu_warning("cpu", None, lambda: True)
    assert warning is not None and "\n" not in warning and "[cuda12]" in warning and "nvidia-smi" in warning
    assert gpu_warning("cpu", "", lambda: True) == warning
    assert gpu_warning("cpu", None, lambda: False) is None
    assert gpu_warning("gpu", None, never) is None  # JAX has the GPU
    assert gpu_warning("cpu", "cpu", never) is None  # the user asked for the CPU


@pytest.mark.parametrize("changes,flag", [({"wandb_group": "g"}, "--wandb-group"), ({"wandb_entity": "e"}, "--wandb-entity"),
                                          ({"wandb_name": "n"}, "--wandb-name"), ({"wandb_project": " "}, "--wandb-project")])
def test_wandb_flags_need_a_project(changes, flag):
    with pytest.raises(ConfigError) as info:
        validate(dataclasses.replace(BASE, **changes), KNOWN_ENVS)
    assert info.value.flag == flag
    validate(dataclasses.replace(BASE, wandb_project="p", wandb_entity="e", wandb_group="g", wandb_name="n"))


def test_wandb_without_the_package_fails_before_compiling_with_one_line(tmp_path, monkeypatch, capsys):
    from shapo_jax import cli

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed: import wandb raises ImportError
    argv = ["--env", "PointHazard", "--num-envs", "8", "--unroll-length", "16", "--num-minibatches", "2",
            "--total-steps", "256", "--no-progress", "--wandb-project", "shapo", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("shapo-train: error: --wandb-project:"), captured.err
    assert "pip install 'shapo-jax[wandb]'" in lines[0]
    assert "compiled" not in captured.out and not (tmp_path / "run").exists()

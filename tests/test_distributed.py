"""Training on a mesh of devices and across processes equals training on one device.

The multi-device runs need a JAX started with several host devices, and the multi-host run
needs separate processes, so both run in subprocesses (``sharded_runs.py`` and
``python -m shapo_jax.cli``); this process, which has one CPU device, checks the mesh rules
and the one-line errors.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest

from shapo_jax import cli, distributed
from shapo_jax.config import ConfigError, TrainConfig, validate

HERE = os.path.dirname(os.path.abspath(__file__))
# Reduction order is the only difference: parameters agree to float32 rounding (~1e-6 here);
# the observation normaliser's running sums of squares (~1e4) to a few float32 ulps.
PARAMETER_TOLERANCE = 1e-5
STATE_TOLERANCE = 5e-5


def _environment(num_devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


@pytest.mark.parametrize(
    "num_seeds, num_envs, num_devices, expected",
    [(1, 16, 4, (1, 4)), (2, 16, 4, (2, 2)), (8, 16, 4, (4, 1)), (6, 16, 4, (2, 2)), (3, 8, 2, (1, 2)), (5, 7, 1, (1, 1))],
)
def test_mesh_puts_seeds_first_then_envs(num_seeds, num_envs, num_devices, expected):
    assert distributed.mesh_shape(num_seeds, num_envs, num_devices) == expected


def test_mesh_rejects_envs_that_do_not_split():
    with pytest.raises(distributed.MeshError, match="must be a multiple of 4") as raised:
        distributed.mesh_shape(1, 10, 4)
    assert raised.value.field == "num_envs"


def test_asking_for_more_devices_than_visible_is_one_line(capsys):
    code = cli.main(["--env", "PointHazard", "--num-devices", "4", "--total-steps", "16384", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_USAGE
    assert err.startswith("shapo-train: error: --num-devices: asks for 4 devices, but 1 are visible")
    assert "xla_force_host_platform_device_count" in err and "\n" not in err


@pytest.mark.parametrize(
    "changes, flag",
    [({"num_devices": -1}, "--num-devices"), ({"num_processes": 0}, "--num-processes"),
     ({"num_processes": 2, "process_id": 2}, "--process-id")],
)
def test_bad_device_flags_name_the_flag(changes, flag):
    with pytest.raises(ConfigError) as raised:
        validate(TrainConfig(**changes))
    assert raised.value.flag == flag


def test_multi_host_is_on_with_any_distributed_flag():
    assert not TrainConfig().multi_host
    assert TrainConfig(coordinator_address="127.0.0.1:1234").multi_host
    assert TrainConfig(distributed=True).multi_host


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """The runs of ``sharded_runs.py`` on 4 host devices, and their comparison to 1 device."""
    workdir = tmp_path_factory.mktemp("sharded")
    done = subprocess.run([sys.executable, os.path.join(HERE, "sharded_runs.py"), str(workdir)],
                          env=_environment(4), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(workdir / "result.json") as f:
        return workdir, json.load(f)


@pytest.mark.parametrize("run, mesh", [("seeds1_d4", {"seed": 1, "env": 4}), ("seeds2_d4", {"seed": 2, "env": 2})])
def test_four_devices_match_one(sharded, run, mesh):
    _, result = sharded
    found = result[run]
    assert found["num_devices"] == 4 and found["mesh"] == mesh and found["base_num_devices"] == 1
    assert found["integers_equal"], "counters, keys or episode lengths differ"
    assert found["max_parameter_difference"] < PARAMETER_TOLERANCE, found
    assert found["max_difference"] < STATE_TOLERANCE, found


def test_checkpoint_from_four_devices_resumes_on_two(sharded):
    _, result = sharded
    found = result["seeds2_d4_then_d2"]
    assert found["num_devices"] == 2 and found["resumed_from_step"] > 0
    assert found["integers_equal"]
    assert found["max_parameter_difference"] < PARAMETER_TOLERANCE, found
    assert found["max_difference"] < STATE_TOLERANCE, found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_over_loopback_match_one_device(sharded, tmp_path):
    """2 processes x 2 CPU devices, one seed whose envs span both processes (gloo all-reduce)."""
    workdir, _ = sharded
    sys.path.insert(0, HERE)
    import sharded_runs

    port = _free_port()
    outs = [tmp_path / "process0", tmp_path / "process1"]
    argv = sharded_runs.COMMON + ["--num-seeds", "1", "--num-devices", "0", "--total-steps",
                                  str(sharded_runs.TOTAL_STEPS), "--coordinator-address", f"127.0.0.1:{port}",
                                  "--num-processes", "2"]
    processes = [
        subprocess.Popen([sys.executable, "-m", "shapo_jax.cli", *argv, "--process-id", str(i), "--out", str(outs[i])],
                         env=_environment(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in (0, 1)
    ]
    try:
        logs = [p.communicate(timeout=400)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert [p.returncode for p in processes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert not outs[1].exists(), "process 1 wrote files"
    assert "shapo-train" not in logs[1], "process 1 printed the run's report"
    with open(outs[0] / "summary.json") as f:
        summary = json.load(f)
    assert summary["num_processes"] == 2 and summary["num_devices"] == 4 and summary["mesh"] == {"seed": 1, "env": 4}
    found = sharded_runs.compare(sharded_runs.final_state(str(workdir / "seeds1_d1"), 1),
                                 sharded_runs.final_state(str(outs[0]), 1))
    assert found["integers_equal"]
    assert found["max_parameter_difference"] < PARAMETER_TOLERANCE, found
    assert found["max_difference"] < STATE_TOLERANCE, found


@pytest.mark.slow
def test_mjx_task_runs_finite_on_four_devices(tmp_path):
    """On MJX tasks contact dynamics amplify the rounding of differently compiled programs (a
    128-step Hopper rollout already differs ~2e-3 relative between 1 and 4 devices), so
    only that it runs, sharded, and stays finite is checked."""
    argv = ["--env", "SafetyHopperVelocity", "--num-seeds", "1", "--num-envs", "8", "--unroll-length", "16",
            "--num-minibatches", "2", "--update-epochs", "1", "--total-steps", "256", "--num-devices", "4",
            "--no-progress", "--no-compilation-cache", "--out", str(tmp_path)]
    done = subprocess.run([sys.executable, "-m", "shapo_jax.cli", *argv], env=_environment(4),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert summary["mesh"] == {"seed": 1, "env": 4} and summary["failed_update"] == [-1]
    assert all(map(math.isfinite, summary["episode_return"] + summary["total_cost"]))

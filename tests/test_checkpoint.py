"""Checkpoints, exact resume, the NaN stop and resume's flag checks (shapo_jax.checkpoint, cli)."""

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from compile_options import quick_compile_flags
from shapo_jax import cli
from shapo_jax.checkpoint import COMMIT_FILE, Checkpoints
from shapo_jax.config import ConfigError, TrainConfig, validate
from shapo_jax.train import make_trainer, seed_keys

SMALL_FLAGS = {"env": "PointHazard", "num_envs": 8, "unroll_length": 16, "num_minibatches": 2, "update_epochs": 1,
               "num_seeds": 2, "episode_length": 8}


def small_args(**changes) -> list[str]:
    """SMALL_FLAGS with ``changes`` as shapo-train arguments."""
    flags = {**SMALL_FLAGS, **changes}
    return [text for name, value in flags.items() for text in (f"--{name.replace('_', '-')}", str(value))] + ["--no-progress"]


SMALL = small_args()
STEPS_PER_UPDATE = 8 * 16
TIMING_KEYS = {"compile_seconds", "train_seconds", "env_steps_per_second", "resumed_from_step"}


def small_config(out, **changes) -> TrainConfig:
    """SMALL as a TrainConfig, in-process (the conftest's compilation cache, not the user's)."""
    values = dict(env="PointHazard", num_envs=8, unroll_length=16, num_minibatches=2, update_epochs=1, num_seeds=2,
                  episode_length=8, progress=False, compilation_cache=False, out=str(out),
                  total_steps=4 * STEPS_PER_UPDATE, checkpoint_every=2 * STEPS_PER_UPDATE)
    return TrainConfig(**{**values, **changes})


def read_rows(out):
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def final_state(out, config: TrainConfig):
    trainer = make_trainer(config)
    abstract = jax.eval_shape(jax.vmap(trainer.init), seed_keys(config.seed, config.num_seeds))
    return Checkpoints(str(out)).restore(config.total_steps, abstract).state


def cli_env(tmp_path_factory) -> dict:
    """Subprocess env: CPU, XLA's quick compile (half the compile time), and one
    compilation cache for every run of the session, so equal programs compile once."""
    cache = tmp_path_factory.getbasetemp() / "xdg_cache"
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(cache),
            "XLA_FLAGS": quick_compile_flags()}


NAN_MAIN = """
import sys
sys.path.insert(0, {tests_dir!r})
import shapo_envs
from faulty_envs import NaNRewardAfter
from shapo_jax import cli

shapo_envs.register("NaNPointHazard", lambda **kw: NaNRewardAfter(shapo_envs.make_env("PointHazard"), 16 * 2 - 1),
                    cost_limit=2.0, episode_length=60, overwrite=True)
sys.exit(cli.main(sys.argv[1:]))
""".format(tests_dir=os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs at once: a finished 4-update run with checkpoints at updates 2 and 4 (started
    with --resume in an empty dir), and a run whose reward turns NaN in update 2."""
    root, env = tmp_path_factory.mktemp("runs"), cli_env(tmp_path_factory)
    finished = small_args(total_steps=4 * STEPS_PER_UPDATE, checkpoint_every=2 * STEPS_PER_UPDATE)
    nan = small_args(env="NaNPointHazard", episode_length=60, total_steps=8 * STEPS_PER_UPDATE,
                     checkpoint_every=STEPS_PER_UPDATE)
    commands = {"finished": ["-m", "shapo_jax.cli", *finished, "--resume"], "nan": ["-c", NAN_MAIN, *nan]}
    processes = {name: subprocess.Popen([sys.executable, *command, "--out", str(root / name)], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name, command in commands.items()}
    return {name: (root / name, *process.communicate(timeout=240), process.returncode)
            for name, process in processes.items()}


@pytest.fixture
def finished_run(runs):
    out, stdout, stderr, returncode = runs["finished"]
    assert returncode == 0, stdout + stderr
    return out, stdout


def test_checkpoint_every_must_be_a_multiple_of_the_update_and_needs_out(tmp_path):
    with pytest.raises(ConfigError) as info:
        validate(small_config(tmp_path, checkpoint_every=100))
    assert info.value.flag == "--checkpoint-every" and "128" in str(info.value)
    with pytest.raises(ConfigError, match="--out"):
        validate(dataclasses.replace(small_config(tmp_path), out=None))
    with pytest.raises(ConfigError) as info:
        validate(dataclasses.replace(small_config(tmp_path, checkpoint_every=0), out=None, resume=True))
    assert info.value.flag == "--resume"


def test_resume_without_checkpoint_starts_fresh_and_keeps_the_last_k(finished_run):
    out, stdout = finished_run
    assert "no checkpoint" in stdout and "starting fresh" in stdout
    assert read_json(out / "summary.json")["resumed_from_step"] == 0
    assert Checkpoints(str(out)).steps() == [256, 512]
    assert [(int(r["update"]), int(r["seed"])) for r in read_rows(out)] == [(u, s) for u in range(1, 5) for s in (0, 1)]


def test_resume_after_sigkill_matches_an_uninterrupted_run_bit_for_bit(tmp_path, tmp_path_factory, runs):
    """Killed with SIGKILL after its first checkpoint, then resumed: the same metrics.csv,
    summary.json (less wall-clock fields) and final parameters as a run never stopped."""
    env = cli_env(tmp_path_factory)  # after `runs`: the update program is in the cache
    args = small_args(total_steps=40 * STEPS_PER_UPDATE, checkpoint_every=5 * STEPS_PER_UPDATE)
    command = lambda out, *extra: [sys.executable, "-m", "shapo_jax.cli", *args, "--out", str(out), *extra]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = subprocess.Popen(command(whole), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / str(5 * STEPS_PER_UPDATE) / COMMIT_FILE
    deadline = time.time() + 120
    while not first.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"
    output, _ = reference.communicate(timeout=180)
    assert reference.returncode == 0, output

    resumed = subprocess.run(command(killed, "--resume"), env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout

    with open(whole / "metrics.csv") as a, open(killed / "metrics.csv") as b:
        assert a.read() == b.read()
    expected, got = read_json(whole / "summary.json"), read_json(killed / "summary.json")
    assert got["resumed_from_step"] > 0 and expected["resumed_from_step"] == 0
    assert {k: v for k, v in got.items() if k not in TIMING_KEYS} == {k: v for k, v in expected.items() if k not in TIMING_KEYS}
    config = small_config(whole, total_steps=40 * STEPS_PER_UPDATE)
    for a, b in zip(jax.tree.leaves(final_state(whole, config)), jax.tree.leaves(final_state(killed, config))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_incomplete_checkpoints_are_ignored_on_resume(finished_run, tmp_path, tmp_path_factory):
    """orbax's temp dir of an interrupted save, and a step dir without orbax's commit marker,
    are both skipped: the run resumes from the newest whole checkpoint and saves past them."""
    out = tmp_path / "out"
    shutil.copytree(finished_run[0], out)
    checkpoints = out / "checkpoints"
    os.remove(checkpoints / "512" / COMMIT_FILE)  # a copy cut short: not committed
    (checkpoints / "768.orbax-checkpoint-tmp-1234" / "state").mkdir(parents=True)  # a save cut short
    args = small_args(total_steps=6 * STEPS_PER_UPDATE, checkpoint_every=2 * STEPS_PER_UPDATE)
    result = subprocess.run([sys.executable, "-m", "shapo_jax.cli", *args, "--out", str(out), "--resume"],
                            env=cli_env(tmp_path_factory), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_json(out / "summary.json")["resumed_from_step"] == 256
    assert "setting aside checkpoint 512" in result.stdout
    assert Checkpoints(str(out)).steps() == [256, 512, 768]  # 512 and 768 written anew
    assert [(int(r["update"]), int(r["seed"])) for r in read_rows(out)] == [(u, s) for u in range(1, 7) for s in (0, 1)]


def test_resume_with_other_training_flags_fails_with_one_line_listing_them(finished_run, capsys):
    argv = small_args(total_steps=1024, rho=0.1, num_envs=16) + ["--out", str(finished_run[0]), "--resume"]
    assert cli.main(argv) == cli.EXIT_USAGE
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("shapo-train: error: --resume:"), lines
    assert "--rho 0.0 (now 0.1)" in lines[0] and "--num-envs 8 (now 16)" in lines[0]
    assert "--total-steps" not in lines[0]  # may grow


def test_a_run_whose_config_json_has_nulls_for_task_defaults_still_resumes(finished_run, tmp_path, capsys):
    """config.json as versions before ``config.resolve`` could write it (nulls for the task's
    defaults, no redraw_resets): --resume resolves it and continues the run."""
    out = tmp_path / "out"
    shutil.copytree(finished_run[0], out)
    recorded = read_json(out / "config.json")
    recorded["cost_limit"] = None
    del recorded["redraw_resets"]
    (out / "config.json").write_text(json.dumps(recorded))
    argv = small_args(total_steps=4 * STEPS_PER_UPDATE, checkpoint_every=2 * STEPS_PER_UPDATE)
    assert cli.main(argv + ["--out", str(out), "--resume", "--no-compilation-cache"]) == 0, capsys.readouterr().err
    assert read_json(out / "summary.json")["resumed_from_step"] == 4 * STEPS_PER_UPDATE
    rewritten = read_json(out / "config.json")
    assert rewritten["cost_limit"] == 2.0 and rewritten["redraw_resets"] is False


def test_fresh_run_refuses_to_overwrite_checkpoints(finished_run, capsys):
    argv = small_args(total_steps=512, checkpoint_every=256) + ["--out", str(finished_run[0])]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "pass --resume" in capsys.readouterr().err


def test_nan_stops_at_the_failed_update_and_keeps_the_last_good_checkpoint(runs):
    out, stdout, stderr, returncode = runs["nan"]
    assert returncode == cli.EXIT_FAILED, stdout + stderr
    assert "Traceback" not in stderr
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("shapo-train: error:") and "seed 0 at update 2" in error and "last checkpoint" in error
    assert Checkpoints(str(out)).steps() == [STEPS_PER_UPDATE]  # nothing saved from the failed update
    rows = read_rows(out)  # stopped at update 2 of 8; its rows (non-finite) are left out
    assert [(int(r["update"]), int(r["seed"])) for r in rows] == [(1, 0), (1, 1)]
    assert read_json(out / "summary.json")["failed_update"] == [2, 2]


def test_a_run_without_checkpoint_flags_also_refuses_a_dir_with_checkpoints(finished_run, capsys):
    """Only checkpoints that --resume could continue stop a fresh run; other earlier files
    are replaced (tests/test_evaluate.py)."""
    argv = small_args(total_steps=256) + ["--out", str(finished_run[0])]
    assert cli.main(argv) == cli.EXIT_USAGE
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("shapo-train: error: --out:") and "pass --resume" in lines[0]


def test_a_finished_run_saves_its_final_policy_beside_its_checkpoints(finished_run):
    from shapo_jax.checkpoint import load_policy, policy_of

    out = finished_run[0]
    config = small_config(out)
    trainer = make_trainer(config)
    abstract = jax.eval_shape(jax.vmap(trainer.init), seed_keys(config.seed, config.num_seeds))
    saved = load_policy(str(out), policy_of(abstract))
    assert (saved.step, saved.update) == (config.total_steps, 4)
    last = final_state(out, config)
    for a, b in zip(jax.tree.leaves(saved.policy), jax.tree.leaves(policy_of(last))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert load_policy(str(out / "checkpoints"), policy_of(abstract)) is None  # no file: None


def test_a_format_1_checkpoint_of_a_flat_state_restores_into_the_nested_state(tmp_path):
    """Checkpoints written before ``TrainState`` nested its learner, runner and episode
    statistics (format 1: those fields at the top level, no "format" in the meta) convert."""
    import orbax.checkpoint as ocp

    from shapo_jax.checkpoint import checkpoint_dir, host_copy

    config = small_config(tmp_path)
    trainer = make_trainer(config)
    keys = seed_keys(config.seed, config.num_seeds)
    state = jax.jit(jax.vmap(trainer.init))(keys)
    state = state._replace(update=state.update + 3)  # a value init would not give
    nested = host_copy(state)
    parts = ("learner", "runner", "episodes")
    flat = {name.split(".", 1)[1] if name.split(".")[0] in parts else name: value for name, value in nested.items()}
    assert "learner.actor_params.params.MLP_0.Dense_0.kernel" in nested
    assert "actor_params.params.MLP_0.Dense_0.kernel" in flat and "env_state.obs" in flat and "total_cost" in flat
    os.makedirs(checkpoint_dir(str(tmp_path)))
    manager = ocp.CheckpointManager(checkpoint_dir(str(tmp_path)), options=ocp.CheckpointManagerOptions(
        enable_async_checkpointing=False, create=False))
    manager.save(384, args=ocp.args.Composite(state=ocp.args.StandardSave(flat),
                                              meta=ocp.args.JsonSave({"step": 384, "update": 3})))
    manager.close()

    abstract = jax.eval_shape(jax.vmap(trainer.init), keys)
    restored = Checkpoints(str(tmp_path)).restore_latest(abstract)
    assert (restored.step, restored.update) == (384, 3)
    assert jax.tree.structure(restored.state) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored.state)):
        if jax.numpy.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

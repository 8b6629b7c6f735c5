"""The benchmark scripts: their command lines, the zero-cost env they time the update with, and
(slow) the reference results as a regression check on learning."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import stat
import statistics
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
REFERENCE = os.path.join(BENCHMARKS, "results", "reference.json")
SG_PYTHON = os.path.join(BENCHMARKS, "cpu_peer", ".venv", "bin", "python")
BRAX_PYTHON = os.path.join(BENCHMARKS, "brax_peer", ".venv", "bin", "python")


def load(name: str):
    """Imports ``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    module_name = "benchmarks_" + name.replace("/", "_")
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["throughput", "scaling", "pareto", "reference", "env_throughput", "paper_throughput",
                                  "brax_peer/run"])
def test_help(name, capsys):
    parser = load(name).build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_throughput_requires_out():
    with pytest.raises(SystemExit):
        load("throughput").build_parser().parse_args([])


def test_throughput_targets_and_fisher_settings():
    """The paper's setting (TRPO-PID with Fisher SHAPO) and PPO's Fisher SHAPO have targets, and
    the JSON records what Fisher SHAPO ran with (montrealrobotics/shapo@1bb7704 shapo.py
    ``compute_shapo_gradients_actor``)."""
    from shapo_jax.config import PAPER_PRESET, TrainConfig

    throughput = load("throughput")
    assert throughput.TARGETS["trpo_shapo_overhead"] == ("<=", 1.10)
    assert throughput.TARGETS["shapo_fisher_overhead"] == ("<=", 1.25)
    settings = throughput.fisher_settings(TrainConfig(), 1e-5)
    assert settings["target_kl"] == 1e-5
    assert {k: settings[k] for k in ("cg_iters", "damping")} == {
        "cg_iters": PAPER_PRESET["cg_iters"], "damping": PAPER_PRESET["cg_damping"]}
    assert (settings["backtrack_factor"], settings["backtrack_tries"], settings["fallback_scale"]) == (0.8, 10, 0.1)
    assert settings["trust_region_cg_iters"] == 15 and settings["line_search_steps"] == 15
    assert settings["fisher_vector_product"] == "gauss_newton"


def test_throughput_ratio_summary_pairs_rounds():
    summary = load("throughput")._ratio_summary([(2.0, 1.0), (3.0, 2.0), (9.0, 3.0)])
    assert summary["median"] == 2.0 and summary["per_round"] == [2.0, 1.5, 3.0]
    assert summary["ratio_of_medians"] == 1.5 and summary["ratio_of_minimums"] == 2.0


def test_pareto_config_turns_the_transform_on():
    pareto = load("pareto")
    config, rhos = pareto.make_config(pareto.build_parser().parse_args([]))
    assert rhos[0] == 0.0 and config.uses_sharpness  # rho=0 baseline runs through the chain
    assert config.total_steps % config.steps_per_update == 0
    config, rhos = pareto.make_config(pareto.build_parser().parse_args(["--rhos", "0", "--geometry", "fisher"]))
    assert config.uses_sharpness and config.geometry == "fisher"


def test_null_env_steps_like_a_brax_env():
    import jax
    import jax.numpy as jnp

    common = load("_common")
    env = common.NullEnv(observation_size=5, action_size=2)
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    state = jax.jit(env.step)(state, jnp.ones(2))
    assert state.obs.shape == (5,) and state.reward.shape == () and state.info["cost"].shape == ()
    assert bool(jnp.all(jnp.isfinite(state.obs)))


def test_reference_json_is_complete():
    reference = load("reference")
    with open(REFERENCE) as f:
        data = json.load(f)
    assert data["budget"]["num_seeds"] == reference.NUM_SEEDS
    assert {k: data["budget"][k] for k in reference.BUDGET} == reference.BUDGET, "reference.json is stale: re-run benchmarks/reference.py"
    for env, algos in reference.TASKS.items():
        for algo in algos:
            row = data["results"][env][algo]
            for figure in reference.FIGURES:
                lo, hi = row[figure]["band"]
                assert lo <= row[figure]["mean"] <= hi


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("algo", ["ppo_lag", "ppo"])
def test_reference_results_reproduce(algo):
    """A fresh run at the reference budget lands inside the stored band for every figure."""
    reference = load("reference")
    with open(REFERENCE) as f:
        stored = json.load(f)["results"]["PointHazard"][algo]
    fresh = reference.run("PointHazard", algo)
    assert fresh["failed_runs"] == 0
    outside = []
    for figure in reference.FIGURES:
        lo, hi = stored[figure]["band"]
        if not lo <= fresh[figure]["mean"] <= hi:
            outside.append(f"{figure}: fresh mean {fresh[figure]['mean']:.3f} outside [{lo:.3f}, {hi:.3f}] "
                           f"(reference {stored[figure]['mean']:.3f} +- {stored[figure]['std']:.3f})")
    assert not outside, f"PointHazard {algo} left its reference band:\n" + "\n".join(outside)


@pytest.mark.slow
def test_pareto_sweep_smoke(tmp_path):
    """The one-program rho x seed sweep runs and writes its JSON and PNG."""
    pareto = load("pareto")
    prefix = str(tmp_path / "p")
    assert pareto.main(["--rhos", "0", "0.1", "--num-seeds", "2", "--num-envs", "4", "--unroll-length", "8",
                        "--num-minibatches", "2", "--update-epochs", "1", "--total-steps", "64",
                        "--out-prefix", prefix]) == 0
    with open(prefix + ".json") as f:
        data = json.load(f)
    assert data["num_runs"] == 4 and [r["rho"] for r in data["per_rho"]] == [0.0, 0.1]
    assert os.path.getsize(prefix + ".png") > 0


# --- env_throughput.py: Safety-Gymnasium side by side ---------------------------------------


def fake_sg_python(tmp_path, steps_per_s: float = 500.0, exit_code: int = 0) -> str:
    """An executable standing in for SG's python: records its arguments, prints noise, then one JSON line."""
    script = tmp_path / "fake_sg_python"
    record = {"benchmark": "cpu_peer_navigation", "steps_per_s": steps_per_s, "num_envs": 1,
              "versions": {"safety-gymnasium": "fake"}}
    script.write_text("#!/bin/sh\n"
                      f"echo \"$@\" > {shlex.quote(str(tmp_path / 'args.txt'))}\n"
                      "echo 'a line SG prints'\n"
                      "echo 'a warning' >&2\n"
                      f"echo {shlex.quote(json.dumps(record))}\n"
                      f"exit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_sg_ratios_divide_ours_by_sg():
    env_throughput = load("env_throughput")
    rows = [{"num_envs": 1, "steps_per_s": 250.0}, {"num_envs": 1024, "steps_per_s": 4000.0}]
    summary = env_throughput.sg_ratios(rows, {"steps_per_s": 500.0})
    assert summary["sg_steps_per_s"] == 500.0 and summary["ratio_vs_sg"] == {"1": 0.5, "1024": 8.0}
    assert [r["ratio_vs_sg"] for r in rows] == [0.5, 8.0] and all(r["sg_steps_per_s"] == 500.0 for r in rows)
    failed = env_throughput.sg_ratios([{"num_envs": 1, "steps_per_s": 1.0}], {"error": "boom"})
    assert failed["sg_steps_per_s"] is None and failed["ratio_vs_sg"] == {"1": None}


def test_run_sg_reads_the_last_json_line_and_reports_failures(tmp_path):
    env_throughput = load("env_throughput")
    result = env_throughput.run_sg(fake_sg_python(tmp_path), "SafetyPointGoal1", steps=300, seed=7)
    assert result["steps_per_s"] == 500.0
    args = (tmp_path / "args.txt").read_text().split()
    assert args[0].endswith("run.py") and args[args.index("--navigation") + 1] == "SafetyPointGoal1"
    assert args[args.index("--steps") + 1] == "300" and args[args.index("--seed") + 1] == "7"
    assert args[args.index("--json") + 1] == "-"
    failed = env_throughput.run_sg(fake_sg_python(tmp_path, exit_code=3), "SafetyPointGoal1", steps=10, seed=0)
    assert failed == {"error": "exit 3: a warning"}
    missing = env_throughput.run_sg(str(tmp_path / "absent"), "SafetyPointGoal1", steps=10, seed=0)
    assert "error" in missing


def test_env_throughput_without_sg_python_says_how_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        load("env_throughput").main(["--envs", "SafetyPointGoal1", "--sg-python", str(tmp_path / "absent"),
                                     "--out", str(tmp_path / "e.json")])
    message = str(exit_info.value.code)
    assert "cpu_peer/setup.sh" in message and "--no-sg" in message and "\n" not in message
    assert not (tmp_path / "e.json").exists()  # failed before anything compiled or was written


def test_env_throughput_writes_sg_side_by_side(tmp_path, monkeypatch):
    """main() with a fake SG python: rows and the per-task summary carry SG's rate and our ratio.

    PointHazard stands in for a navigation task (it compiles in a second; an MJX task takes 20+ s
    on 2 cores), so this checks the interleaving and the JSON, not MJX.
    """
    import shapo_envs.navigation

    monkeypatch.setattr(shapo_envs.navigation, "NAMES", shapo_envs.navigation.NAMES + ("PointHazard",))
    env_throughput = load("env_throughput")
    out = tmp_path / "e.json"
    assert env_throughput.main(["--envs", "PointHazard", "--num-envs", "1", "4", "--steps", "3", "--repeats", "1",
                                "--sg-python", fake_sg_python(tmp_path, 400.0), "--sg-steps", "50",
                                "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["device"]["platform"] and data["date"] and "git_commit" in data
    assert data["config"]["sg"]["steps"] == 50 and data["config"]["physics_impl"] is None
    rows = data["results"]
    assert [r["num_envs"] for r in rows] == [1, 4]
    for row in rows:
        assert row["reset_compile_s"] > 0  # one vmapped reset compiled per batch size
        assert row["sg_steps_per_s"] == 400.0
        assert row["ratio_vs_sg"] == pytest.approx(row["steps_per_s"] / 400.0)
    sg = data["sg"]["PointHazard"]
    assert sg["ratio_vs_sg"] == {str(r["num_envs"]): pytest.approx(r["ratio_vs_sg"]) for r in rows}
    assert sg["run"]["versions"] == {"safety-gymnasium": "fake"}
    assert "--sg-steps" not in (tmp_path / "args.txt").read_text() and "50" in (tmp_path / "args.txt").read_text()
    # --no-sg: no SG section, and no SG python needed
    assert env_throughput.main(["--envs", "PointHazard", "--num-envs", "1", "--steps", "2", "--repeats", "1",
                                "--no-sg", "--sg-python", str(tmp_path / "absent"), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert "sg" not in data and data["config"]["sg"] is None and "ratio_vs_sg" not in data["results"][0]


def test_physics_impl_flag_and_its_make_env_options():
    env_throughput = load("env_throughput")
    options = {o for a in env_throughput.build_parser()._actions for o in a.option_strings}
    assert env_throughput.physics_impl_supported() and "--physics-impl" in options
    assert env_throughput.physics_kwargs("SafetyPointGoal1", None) == {}
    assert env_throughput.physics_kwargs("SafetyPointGoal1", "jax", 64) == {"physics_impl": "jax"}
    assert env_throughput.physics_kwargs("SafetyPointGoal1", "warp", 64) == {"physics_impl": "warp", "max_worlds": 64}
    assert env_throughput.physics_kwargs("SafetyHopperVelocity", "warp", 64) == {}  # navigation only


def test_physics_impl_warp_without_warp_fails_in_one_line(tmp_path, monkeypatch):
    from shapo_envs.navigation import physics

    monkeypatch.setattr(physics, "warp_installed", lambda: False)
    with pytest.raises(SystemExit) as raised:
        load("env_throughput").main(["--envs", "SafetyPointGoal1", "--num-envs", "4", "--no-sg",
                                     "--physics-impl", "warp", "--out", str(tmp_path / "x.json")])
    assert str(raised.value) == ("env_throughput.py: --physics-impl warp: 'warp' needs warp-lang, which is not "
                                 "installed (pip install 'shapo-jax[warp]')")
    assert not (tmp_path / "x.json").exists()


def test_env_throughput_devices_splits_the_batch_over_host_devices(tmp_path):
    """--devices 2 on a CPU makes two host devices (a fresh process: JAX reads the XLA flag when it
    starts) and keeps the env states split over both through the timed rollout."""
    out = tmp_path / "d.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "env_throughput.py"), "--envs", "PointHazard",
                           "--num-envs", "4", "--steps", "2", "--repeats", "1", "--no-sg", "--devices", "2",
                           "--out", str(out)], env=dict(env, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["config"]["devices"] == 2 and data["device"]["num_devices"] == 2
    (row,) = data["results"]
    assert row["num_devices"] == row["devices_holding_states"] == 2 and row["nonfinite_final_obs_envs"] == 0


def test_env_throughput_devices_that_do_not_divide_the_batch_fail_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as raised:
        load("env_throughput").main(["--envs", "PointHazard", "--num-envs", "1", "4", "--no-sg", "--devices", "2",
                                     "--out", str(tmp_path / "x.json")])
    assert str(raised.value) == "env_throughput.py: --devices: must be >= 1 and divide every --num-envs [1, 4], got 2"
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(not os.path.exists(SG_PYTHON), reason="no Safety-Gymnasium venv (bash benchmarks/cpu_peer/setup.sh)")
def test_run_sg_steps_safety_gymnasium():
    """The real subprocess: cpu_peer/run.py --navigation in SG's own venv."""
    result = load("env_throughput").run_sg(SG_PYTHON, "SafetyPointGoal1", steps=50, seed=0, warmup=5)
    assert "error" not in result, result
    assert result["env_id"] == "SafetyPointGoal1-v0" and result["num_envs"] == 1 and result["steps"] == 50
    assert result["steps_per_s"] > 0 and result["versions"]["safety-gymnasium"] == "1.0.0"


# --- throughput.py: Brax PPO in its own venv, in lockstep ------------------------------------


def fake_brax_python(tmp_path, epochs: int = 4, exit_code: int = 0, platform: str = "cpu") -> str:
    """A python standing in for the peer's: per epoch a JSON line, then it waits for a line on stdin.

    It logs "epoch i" when it prints and "resumed" when the parent's line arrives, so the test
    sees that the parent's work ran while the peer waited; then the record (or a failure).
    """
    script = tmp_path / "fake_brax_python"
    log = str(tmp_path / "peer_log.txt")
    record = {"benchmark": "brax_peer_ppo", "versions": {"jax": "0.9.2", "brax": "0.14.2"}, "lockstep": True,
              "device": {"platform": platform, "device_kind": "cpu"}, "epoch_s": [3.0, 2.0] + [0.5] * (epochs - 2),
              "setup_s": 1.5, "total_call_s": 9.0, "date": "today"}
    epoch_s = record["epoch_s"]
    script.write_text(f"""#!{sys.executable}
import json, sys
with open({log!r}, "w") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
    for i, t in enumerate({epoch_s!r}):
        print("a line Brax logs", flush=True)
        log.write(f"epoch {{i}}\\n"); log.flush()
        print(json.dumps({{"epoch": i, "epoch_s": t}}), flush=True)
        assert sys.stdin.readline() == "\\n"
        log.write("resumed\\n"); log.flush()
    if {exit_code}:
        print("Traceback: something broke", file=sys.stderr)
        sys.exit({exit_code})
    print(json.dumps({record!r}), flush=True)
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_brax_peer_command_matches_our_ppo_lag():
    """The peer trains with our PPO-Lag's sizes and hyperparameters, parsed by its own parser."""
    from shapo_jax.config import TrainConfig

    throughput = load("throughput")
    args = throughput.build_parser().parse_args(["--quick", "--out", "x.json", "--seed", "3"])
    args.num_envs, args.unroll_length, args.num_minibatches, args.update_epochs, args.rounds = 64, 32, 4, 2, 5
    base = TrainConfig(max_grad_norm=0.5, hidden_sizes=(32, 16), actor_learning_rate=1e-3)
    command = throughput.brax_peer_command("PY", args, base)
    assert command[:3] == ["PY", throughput.BRAX_RUN, "--lockstep"]
    peer = load("brax_peer/run").build_parser().parse_args(command[2:])
    assert (peer.env, peer.num_envs, peer.unroll_length, peer.num_minibatches, peer.update_epochs) == (
        "SafetyHopperVelocity", 64, 32, 4, 2)
    assert peer.epochs == 5 + 2 and peer.lockstep and peer.seed == 3  # two compiling epochs before the rounds
    assert peer.hidden_sizes == [32, 16] and peer.learning_rate == 1e-3 and peer.max_grad_norm == 0.5
    assert (peer.entropy_cost, peer.discounting, peer.gae_lambda, peer.clipping_epsilon) == (
        base.entropy_coefficient, base.gamma, base.gae_lambda, base.clip_epsilon)


def test_brax_peer_restores_device_put_replicated_as_jax_had_it():
    """On a jax without ``device_put_replicated`` the peer adds one: a copy per device, stacked on a
    new leading axis sharded over the devices (what Brax 0.14.2's pmapped trainer takes)."""
    import types

    import jax
    import numpy as np

    fake = types.SimpleNamespace(**{n: getattr(jax, n) for n in ("device_put", "numpy", "tree")})
    assert load("brax_peer/run").restore_device_put_replicated(fake)
    tree = {"w": np.arange(6.0).reshape(2, 3), "step": np.int32(4)}
    devices = jax.local_devices()
    out = fake.device_put_replicated(tree, devices)
    assert out["w"].shape == (len(devices), 2, 3) and out["step"].shape == (len(devices),)
    np.testing.assert_array_equal(out["w"][0], tree["w"])
    assert out["step"].dtype == np.int32 and set(out["w"].devices()) == set(devices)
    had = types.SimpleNamespace(device_put_replicated=print)
    assert not load("brax_peer/run").restore_device_put_replicated(had) and had.device_put_replicated is print


def test_run_brax_peer_times_ours_while_the_peer_waits(tmp_path):
    throughput = load("throughput")
    events = []
    log = tmp_path / "peer_log.txt"

    def between():  # the peer has printed epoch i and is blocked on stdin
        events.append(log.read_text().splitlines()[-1])

    record = throughput.run_brax_peer([fake_brax_python(tmp_path, epochs=4), "--lockstep"], between)
    assert events == ["epoch 0", "epoch 1", "epoch 2", "epoch 3"]
    assert log.read_text().splitlines()[1:] == ["epoch 0", "resumed", "epoch 1", "resumed",
                                                "epoch 2", "resumed", "epoch 3", "resumed"]
    assert record["epoch_s"] == [3.0, 2.0, 0.5, 0.5] and record["versions"]["brax"] == "0.14.2"
    failed = throughput.run_brax_peer([fake_brax_python(tmp_path, epochs=3, exit_code=3)], lambda: None)
    assert failed == {"error": "exit 3: Traceback: something broke"}
    missing = throughput.run_brax_peer([str(tmp_path / "absent")], lambda: None)
    assert missing["error"].startswith("FileNotFoundError")


def test_throughput_without_brax_python_says_how_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        load("throughput").main(["--quick", "--brax-python", str(tmp_path / "absent"), "--out", str(tmp_path / "t.json")])
    message = str(exit_info.value.code)
    assert "brax_peer/setup.sh" in message and "--skip brax" in message and "\n" not in message
    assert not (tmp_path / "t.json").exists()  # failed before anything compiled or was written


@pytest.mark.slow
def test_throughput_tiny_with_a_fake_brax_peer(tmp_path):
    """main() end to end at tiny sizes on PointHazard: the Brax rows and ratio come from the peer's epochs."""
    throughput = load("throughput")
    out = tmp_path / "t.json"
    assert throughput.main(["--env", "PointHazard", "--num-envs", "4", "--unroll-length", "4", "--num-minibatches", "2",
                            "--update-epochs", "1", "--rounds", "2", "--skip", "fisher", "trpo",
                            "--brax-python", fake_brax_python(tmp_path, epochs=4), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["iteration_s"]["brax_ppo"] == [0.5, 0.5] and len(data["iteration_s"]["ppo_lag_between_brax_epochs"]) == 2
    assert data["compile_s"]["brax_ppo"] == pytest.approx(3.0 + 2.0 - 2 * 0.5)
    assert data["brax_setup_s"] == 1.5 and data["brax_peer"]["versions"]["jax"] == "0.9.2"
    assert data["versions"]["jax"] != "0.9.2" or data["versions"]["brax"]  # ours: this process's pins
    ours = data["iteration_s"]["ppo_lag_between_brax_epochs"]
    # iteration_s is rounded to 10 us, the ratio is of the unrounded times
    assert data["ours_vs_brax_ppo"] == pytest.approx(statistics.median(0.5 / t for t in ours), rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("python", [sys.executable, BRAX_PYTHON], ids=["project_pins", "brax_peer_venv"])
def test_brax_peer_trains_brax_ppo(python):
    """The real peer: Brax 0.14.2's PPO trainer on an MJX task, one JSON line per epoch; on the
    project's own jax (>= 0.10) through run.py's ``device_put_replicated``, in the peer venv on 0.9.2.

    (PointHazard would compile faster, but its step rebuilds ``info``, which Brax's wrappers extend.)
    """
    if not os.path.exists(python):
        pytest.skip("no Brax peer venv (bash benchmarks/brax_peer/setup.sh)")
    done = subprocess.run([python, os.path.join(BENCHMARKS, "brax_peer", "run.py"), "--env", "SafetyHopperVelocity",
                           "--num-envs", "4", "--unroll-length", "4", "--num-minibatches", "2", "--update-epochs", "1",
                           "--epochs", "3"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["epoch"] for line in lines[:-1]] == [0, 1, 2]
    record = lines[-1]
    assert record["benchmark"] == "brax_peer_ppo" and len(record["epoch_s"]) == 3 and min(record["epoch_s"]) > 0
    old_jax = record["versions"]["jax"] == "0.9.2"
    assert record["versions"]["brax"] == "0.14.2" and old_jax == (python == BRAX_PYTHON)
    assert record["device_put_replicated_shim"] == (not old_jax)
    assert record["steps_per_epoch"] == 16 and record["setup_s"] > 0


# --- paper_throughput.py ------------------------------------------------------------------------


def test_paper_config_is_the_papers_setting():
    paper = load("paper_throughput")
    config, overrides = paper.paper_config(paper.build_parser().parse_args([]))
    assert overrides == {} and config.env == "SafetyPointGoal1" and config.algo == "trpo_pid"
    assert (config.num_seeds, config.num_envs, config.unroll_length) == (16, 20, 1000)
    assert (config.num_minibatches, config.update_epochs) == (160, 10)
    assert config.geometry == "fisher" and config.perturbation_target_kl == 1e-5 and config.uses_sharpness
    assert config.total_steps == 4 * 20_000  # warm-up + 3 timed updates
    assert paper.setting(config, overrides)["paper_setting"]
    # an override equal to TrainConfig's default stays (the preset is resolved once, then frozen)
    config, _ = paper.paper_config(paper.build_parser().parse_args(["--num-envs", "64", "--num-minibatches", "64"]))
    assert config.num_envs == 64 and config.steps_per_update == 64_000


def test_paper_summary_ratios():
    paper = load("paper_throughput")
    got = paper.summary(steps_per_update=20_000, seeds=16, times=[4.0, 2.0, 3.0])
    assert got["steps_per_s"] == pytest.approx(16 * 20_000 / 3.0)
    assert got["steps_per_s_per_seed"] == pytest.approx(20_000 / 3.0)
    assert got["speedup_vs_released"] == pytest.approx(got["steps_per_s"] / 535.0)
    assert got["per_seed_vs_released"] == pytest.approx(got["steps_per_s_per_seed"] / 535.0)


def test_paper_throughput_smoke(tmp_path):
    """Tiny sizes on PointHazard (the paper's task costs minutes to compile on 2 cores)."""
    paper = load("paper_throughput")
    out = tmp_path / "p.json"
    assert paper.main(["--env", "PointHazard", "--seeds", "2", "--updates", "2", "--num-envs", "2",
                       "--unroll-length", "8", "--num-minibatches", "2", "--update-epochs", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["device"]["platform"] and data["date"] and data["benchmark"] == "paper_throughput"
    assert data["released"] == {**paper.RELEASED, "steps_per_s": 535.0} and not data["released"]["measured_here"]
    assert data["setting"]["num_seeds"] == 2 and data["setting"]["steps_per_update_per_seed"] == 16
    assert not data["setting"]["paper_setting"] and data["setting"]["geometry"] == "fisher"
    assert len(data["update_s"]) == 2 and data["failed_updates"] == 0
    assert set(data["compile_s"]) == {"reset", "init", "update"}
    # the median of two updates is their mean (update_s is rounded to 0.1 ms)
    assert data["steps_per_s"] == pytest.approx(2 * 16 * 2 / sum(data["update_s"]), rel=0.05)
    assert data["speedup_vs_released"] == pytest.approx(data["steps_per_s"] / 535.0)


# --- gpu.sh -----------------------------------------------------------------------------------


def gpu_sh(*args, **env):
    return subprocess.run(["bash", os.path.join(BENCHMARKS, "gpu.sh"), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **env}, timeout=120)


def test_gpu_sh_dry_run_commands_parse():
    """Every benchmark command gpu.sh would run parses with that script's own parser; one run stays within 9 minutes.

    The parts together outlast one lease, so a lease runs those still missing; ``ONLY`` names each here.
    """
    parts = ["navigation_jax", "throughput", "scaling", "paper_throughput", "navigation_car"]
    lines = []
    for part in parts:
        done = gpu_sh("--dry-run", ONLY=part)
        assert done.returncode == 0, done.stderr
        lines += done.stdout.splitlines()
    commands = [shlex.split(line) for line in lines if ".py " in line and "benchmarks/" in line]
    scripts = [next(a for a in c if a.startswith("benchmarks/")) for c in commands]
    assert {"benchmarks/env_throughput.py", "benchmarks/paper_throughput.py", "benchmarks/throughput.py",
            "benchmarks/scaling.py"} <= set(scripts)
    for command, script in zip(commands, scripts):
        name = os.path.basename(script)[:-3]
        args = command[command.index(script) + 1:]
        load(name).build_parser().parse_args(args)
        outs = [a for i, a in enumerate(args) if i and args[i - 1] in ("--out", "--out-prefix")]
        assert len(outs) == 1 and outs[0].startswith("benchmarks/results/") and "gpu_KIND" in outs[0]
    nav = commands[scripts.index("benchmarks/env_throughput.py")]
    assert nav[nav.index("--num-envs") + 1] == "4096"
    assert {"SafetyPointGoal1", "SafetyPointButton1"} <= set(nav)
    car = commands[len(parts) - 1]
    assert "SafetyCarGoal2" in car and car[car.index("--num-envs") + 1] == "1024"
    paper = commands[scripts.index("benchmarks/paper_throughput.py")]
    assert paper[paper.index("--seeds") + 1] == "16"
    assert len(commands) == len(parts)
    done = gpu_sh("--dry-run")  # a cold machine: the parts in order, as many as the budget bounds
    timeouts = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("timeout ")]
    assert 2 <= len(timeouts) - 2 and sum(timeouts[2:]) <= 540  # device check and nvidia-smi aside
    only = gpu_sh("--dry-run", ONLY="scaling")
    ran = [line for line in only.stdout.splitlines() if ".py " in line and not line.startswith("#")]
    assert len(ran) == 1 and "benchmarks/scaling.py" in ran[0]


def test_gpu_sh_trains_on_warp_with_flags_shapo_train_takes():
    """Part 7's command is a shapo-train command line that parses to the paper's setting on Warp,
    writing its run under benchmarks/results."""
    from shapo_jax.cli import parse_flags

    done = gpu_sh("--dry-run", ONLY="train_warp")
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if "shapo_jax.cli" in line]
    command = shlex.split(line)
    config = parse_flags(command[command.index("shapo_jax.cli") + 1:])
    assert (config.env, config.algo, config.preset, config.physics_impl) == ("SafetyPointGoal1", "trpo_pid", "paper", "warp")
    assert config.num_seeds == 16 and config.out.startswith("benchmarks/results/train_warp_gpu_KIND")


def test_gpu_sh_needs_a_gpu():
    import jax

    if jax.devices()[0].platform == "gpu":
        pytest.skip("this machine has a GPU")
    done = gpu_sh()
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "no GPU" in done.stderr


# --- nav_profile.py ---------------------------------------------------------------------------


def test_nav_profile_times_stages_per_variant(tmp_path):
    """Each asked stage timed under each variant, on a model whose options the variant set
    (the env's own model unchanged); the sizes are the env's own. Two variants and one stage:
    each variant compiles a forward and each stage (129 s for three variants and two stages)."""
    import mujoco
    import shapo_envs

    nav_profile = load("nav_profile")
    out = tmp_path / "profile.json"
    assert nav_profile.main(["--env", "SafetyPointGoal1", "--num-envs", "2", "--repeats", "1",
                             "--warmup-steps", "0", "--stages", "solver",
                             "--variants", "as_built", "iterations_2", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data["variants"]) == ["as_built", "iterations_2"]
    assert data["variants"]["as_built"]["options"] == {}
    assert data["variants"]["iterations_2"]["options"] == {"iterations": 2}
    assert {k: int(v) for k, v in nav_profile.variant_options("solver_cg").items()} == {"solver": int(mujoco.mjtSolver.mjSOL_CG)}
    for row in data["variants"].values():
        assert set(row["ms"]) == {"solver"} and all(ms > 0 for ms in row["ms"].values())
    env = shapo_envs.make_env("SafetyPointGoal1")
    assert data["nv"] == env.mj_model.nv and env.mj_model.opt.solver == mujoco.mjtSolver.mjSOL_NEWTON
    assert env.mj_model.opt.iterations != 2  # the variant's option did not leak into the env's model
    assert data["constraint_rows"] > 0 and data["frameskip"] == env.robot.frameskip  # a vase stands on its feet


@pytest.mark.parametrize("argv, flag", [(["--variants", "solver_pgs"], "--variants"),
                                        (["--env", "SafetyHopperVelocity"], "--env"),
                                        (["--num-envs", "0"], "--num-envs")])
def test_nav_profile_bad_input_is_one_line(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load("nav_profile").main(argv)
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err.strip().splitlines()[-1]

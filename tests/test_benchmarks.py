"""The benchmark scripts: their command lines, the zero-cost env they time the update with, and
(slow) the reference results as a regression check on learning."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
REFERENCE = os.path.join(BENCHMARKS, "results", "reference.json")


def load(name: str):
    """Imports ``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["throughput", "scaling", "pareto", "reference"])
def test_help(name, capsys):
    parser = load(name).build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_throughput_requires_out():
    with pytest.raises(SystemExit):
        load("throughput").build_parser().parse_args([])


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

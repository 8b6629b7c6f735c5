"""Every algorithm, with and without SHAPO, gives exactly the numbers it gave before the
algorithms became functions and the trainer named steps (issue 14).

``fixtures/algorithm_regression.json`` holds, per run, every metric of each update and the
first and last values of each final actor and critic parameter, made by ``python
tests/test_algorithm_regression.py REFERENCE.npz`` from runs of the pre-refactor code (commit
ee0837e, jax 0.9.2 on CPU; the runs: ``CASES`` below), against which the refactored code was
equal bit for bit on jax 0.9.2. A change of JAX, XLA or the CPU may move the last bit; then
regenerate from runs of a commit known to be right with ``python
tests/test_algorithm_regression.py --current``, and say so. The move to jax 0.10.2 moved it by
up to 4e-6 absolute (round-off; 541 of 1024 arrays stayed identical): the fixture now holds
runs of the refactored trainer (a5e722c, equal to ee0837e on jax 0.9.2) on jax 0.10.2.
Turning off XLA's YNNPACK fusions (shapo_jax/xla_flags.py) moved it again, by up to 3e-6 (22
of 44 and 26 of 47 arrays identical in the two default cases): regenerated with ``--current``
from the code that passed the previous fixture bit for bit, with only the flag changed.

Bit equality holds only on the kind of CPU that made the fixture: XLA compiles for the CPU it
runs on, and on a Xeon with AVX-512 and AMX (2026-12-01) the same code and pins moved the
values by round-off (ppo_lag-euclid, cpo-fisher, trpo_pid-paper, cpo-paper, trpo_pid-fisher;
16-22 of 44-47 arrays identical): at most 1.7e-6 absolute, and every value within
``ATOL + 1.9e-5 |value|`` of the fixture. So values are compared within ``RTOL`` = 1e-4, five
times that, with ``ATOL`` for values near zero; a change of the algorithm that moves a metric
by more than 0.01% fails.
"""

import json
import os
import sys

import jax
import numpy as np
import pytest

from shapo_jax import TrainConfig, make_trainer, seed_keys

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "algorithm_regression.json")
TINY = dict(env="PointHazard", num_envs=8, unroll_length=16, num_minibatches=2, update_epochs=2, total_steps=8 * 16 * 2)
ALGORITHMS = ("ppo", "ppo_lag", "ppo_pid", "trpo_lag", "trpo_pid", "cpo", "crpo")


def case_config(name: str) -> TrainConfig:
    algo, variant = name.split("-")
    if variant == "paper":  # the released code's settings: cost window, per-step statistics, torch init
        return TrainConfig(**dict(TINY, total_steps=8 * 16 * 3), algo=algo, preset="paper")
    sharpness = {"base": {}, "euclid": dict(rho=0.05), "fisher": dict(geometry="fisher", rho=0.05)}[variant]
    return TrainConfig(**TINY, algo=algo, **sharpness)


CASES = [f"{a}-{v}" for a in ALGORITHMS for v in ("base", "euclid", "fisher")] + ["trpo_pid-paper", "cpo-paper"]
FAST = ("ppo_lag-euclid", "cpo-fisher")  # the default suite's share; the rest is -m slow
RTOL, ATOL = 1e-4, 1e-7  # round-off across CPUs (docstring); ATOL for values near zero


def parameter_digest(name: str, tree) -> dict[str, list[float]]:
    """The first and last 4 values of each leaf, by path: enough to catch any change of the step."""
    digest = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        flat = np.asarray(leaf).ravel()
        digest[name + jax.tree_util.keystr(path)] = [float(x) for x in np.concatenate([flat[:4], flat[-4:]])]
    return digest


def summary(metrics: dict, actor_params, critic_params) -> dict:
    return {
        "metrics": {k: np.asarray(v).tolist() for k, v in sorted(metrics.items())},
        "params": {**parameter_digest("actor", actor_params), **parameter_digest("critic", critic_params)},
    }


def run_case(name: str):
    trainer = make_trainer(case_config(name))
    output = jax.block_until_ready(jax.jit(trainer.train)(seed_keys(0, 1)[0]))
    return summary(jax.device_get(output.metrics), output.state.learner.actor_params,
                   output.state.learner.critic_params)


@pytest.mark.parametrize(
    "name", [pytest.param(c, marks=() if c in FAST else pytest.mark.slow) for c in CASES])
def test_results_equal_the_pre_refactor_code_to_round_off(name):
    with open(FIXTURE) as f:
        expected = json.load(f)[name]
    actual = run_case(name)
    assert sorted(actual["metrics"]) == sorted(expected["metrics"])
    for key, values in expected["metrics"].items():
        # float32 values stored as exact doubles; NaN where the fixture has NaN
        np.testing.assert_allclose(np.asarray(actual["metrics"][key], float), np.asarray(values, float),
                                   rtol=RTOL, atol=ATOL, err_msg=key)
    assert sorted(actual["params"]) == sorted(expected["params"])
    for key, values in expected["params"].items():
        np.testing.assert_allclose(actual["params"][key], values, rtol=RTOL, atol=ATOL, err_msg=key)


def write_fixture(reference_npz: str) -> None:
    """The fixture from a file of runs saved by the pre-refactor code: ``CASE/metric/NAME`` and
    ``CASE/state/.actor_params...`` / ``.critic_params...`` arrays (one seed, unbatched)."""
    saved = np.load(reference_npz)
    fixture = {}
    for name in CASES:
        metrics = {k.split("/", 2)[2]: saved[k] for k in saved.files if k.startswith(f"{name}/metric/")}
        params = {}
        for prefix, label in ((".actor_params", "actor"), (".critic_params", "critic")):
            for k in saved.files:
                if k.startswith(f"{name}/state/{prefix}"):
                    flat = saved[k].ravel()
                    params[label + k.split(prefix, 1)[1]] = [float(x) for x in np.concatenate([flat[:4], flat[-4:]])]
        fixture[name] = {"metrics": {k: np.asarray(v).tolist() for k, v in sorted(metrics.items())},
                         "params": dict(sorted(params.items()))}
    with open(FIXTURE, "w") as f:
        json.dump(fixture, f, indent=0, sort_keys=True)
        f.write("\n")


def write_current_fixture() -> None:
    """The fixture from runs of the code as it is (after a JAX upgrade moved the last bit)."""
    fixture = {name: run_case(name) for name in CASES}
    with open(FIXTURE, "w") as f:
        json.dump(fixture, f, indent=0, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    write_current_fixture() if sys.argv[1] == "--current" else write_fixture(sys.argv[1])

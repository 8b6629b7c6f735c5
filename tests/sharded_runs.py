"""Runs ``shapo-train`` on several device meshes in one process and compares the results.

Started by ``test_distributed.py`` in a fresh interpreter with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the device count is fixed when JAX
starts, so it cannot be changed inside the pytest process). Usage:

  python tests/sharded_runs.py WORKDIR

Writes ``WORKDIR/result.json``: for each compared run, the largest absolute and relative
difference of its final training state (every leaf, from its last checkpoint) to the
1-device run, and the summary's device fields.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

from shapo_jax import cli
from shapo_jax.checkpoint import host_copy
from shapo_jax.evaluate import load_config, load_state
from shapo_jax.train import make_trainer

# PointHazard (pure JAX, so the compiled programs differ only in reduction order), 4 updates.
STEPS_PER_UPDATE = 16 * 32
TOTAL_STEPS = 4 * STEPS_PER_UPDATE
COMMON = ["--env", "PointHazard", "--num-envs", "16", "--unroll-length", "32", "--num-minibatches", "4",
          "--update-epochs", "2", "--no-progress", "--no-compilation-cache", "--checkpoint-every",
          str(2 * STEPS_PER_UPDATE)]


def train(out: str, num_seeds: int, num_devices: int, total_steps: int = TOTAL_STEPS, resume: bool = False) -> dict:
    argv = COMMON + ["--num-seeds", str(num_seeds), "--num-devices", str(num_devices), "--total-steps",
                     str(total_steps), "--out", out] + (["--resume"] if resume else [])
    code = cli.main(argv)
    assert code == 0, f"shapo-train {' '.join(argv)} exited {code}"
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def final_state(out: str, num_seeds: int) -> dict:
    """The run's final checkpoint (as ``shapo-eval`` loads it) as a flat dict of NumPy leaves."""
    trainer = make_trainer(load_config(out))
    assert trainer.config.num_seeds == num_seeds
    state, _ = load_state(out, trainer, TOTAL_STEPS)
    return host_copy(state)


def difference(a: dict, b: dict) -> dict:
    """Over all float leaves: the largest difference relative to max(|a|, 1) (absolute below 1,
    relative above: the normaliser's running sums reach 1e4), the leaf it is in, and whether
    all integer leaves (counters, keys) are equal."""
    worst, where, integers_equal = 0.0, "", True
    for name, x in a.items():
        if x is None:
            continue
        x, y = np.asarray(x), np.asarray(b[name])
        if not np.issubdtype(x.dtype, np.floating):
            integers_equal &= bool(np.array_equal(x, y))
            continue
        scaled = np.abs(x.astype(np.float64) - y) / np.maximum(np.abs(x), 1.0)
        if scaled.size and scaled.max() > worst:
            worst, where = float(scaled.max()), name
    return {"max_difference": worst, "worst_leaf": where, "integers_equal": integers_equal}


def compare(a: dict, b: dict) -> dict:
    """``difference`` over the whole state, and over the network parameters alone."""
    parameters = lambda state: {k: v for k, v in state.items() if k.startswith(("learner.actor_params", "learner.critic_params"))}
    return {**difference(a, b), "max_parameter_difference": difference(parameters(a), parameters(b))["max_difference"]}


def main(workdir: str) -> None:
    assert jax.device_count() == 4, f"expected 4 host devices, got {jax.device_count()}"
    result = {}
    for num_seeds in (1, 2):  # 1 seed: its envs split over 4 devices; 2: seeds x envs = 2 x 2
        base = os.path.join(workdir, f"seeds{num_seeds}_d1")
        sharded = os.path.join(workdir, f"seeds{num_seeds}_d4")
        summary_1, summary_4 = train(base, num_seeds, 1), train(sharded, num_seeds, 4)
        result[f"seeds{num_seeds}_d4"] = {
            **compare(final_state(base, num_seeds), final_state(sharded, num_seeds)),
            "num_devices": summary_4["num_devices"], "mesh": summary_4["mesh"],
            "base_num_devices": summary_1["num_devices"],
        }
    # Resharding: half the run on 4 devices, the rest resumed from its checkpoint on 2.
    resumed = os.path.join(workdir, "seeds2_d4_then_d2")
    train(resumed, 2, 4, total_steps=TOTAL_STEPS // 2)
    summary = train(resumed, 2, 2, resume=True)
    result["seeds2_d4_then_d2"] = {
        **compare(final_state(os.path.join(workdir, "seeds2_d1"), 2), final_state(resumed, 2)),
        "num_devices": summary["num_devices"], "resumed_from_step": summary["resumed_from_step"],
    }
    with open(os.path.join(workdir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])

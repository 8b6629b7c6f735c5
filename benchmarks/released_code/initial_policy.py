"""The untrained policy's first update on SafetyPointButton1: the released code against ours.

In the first update (20k env steps, all taken by the initial policy before any policy step)
the released code's mean episode cost is ~3x ours (released_vs_ours_PointButton1.json). This
measures, per seed, what the initial policy does on each side, and cross-checks that hold the
policy (or the actions) fixed and change the env:

  released             the released venv runs the released code's own env maker
                       (safepo/common/env.py make_sa_safetygym_env: 5 envs in
                       SafetyAsyncVectorEnv, SafeRescaleAction, SafeNormalizeObservation),
                       ActorVCritic and policy.step sampling, seeded and stepped as
                       trpo_pid.py's first epoch (5 envs x 4000 steps; imported from the
                       checkout given, nothing copied). Its episode costs are checked, in
                       order, against the logged runs of run.py;
  ours                 our untrained ``--preset paper-base`` trainer (20 envs x 1000 steps)
                       through the trainer's own ``train.init`` and ``train.collect``, keys as
                       shapo-train --seed 0 --num-seeds 3 draws them;
  ported               our env and ``train.collect`` (5 x 4000, per-step normalisation) driven
                       by the released actors' own initial weights (exported by the released
                       side), so that only the env differs from ``released``;
  ported_20x1000       the same actors in our 20 x 1000 setup;
  ours_5x4000          our own actors in the 5 x 4000 setup;
  *_zero_actor         the actor's weights and biases set to 0 on both stacks: both envs driven
                       by the same i.i.d. N(0, 1) actions;
  ours_N_seeds         our setup with more seeds (--more-seeds), for the spread over actors;
  ported_torch_N_seeds the released code's initial actors of torch seeds 0..N-1 (--torch-seeds)
                       with the env keys of ours_N_seeds: only the actors' draws differ.

  python benchmarks/released_code/initial_policy.py --released-code /tmp/shapo_released \\
      --python /tmp/released_venv/bin/python

Run with our venv's python. The released side's per-seed results are kept in ``--work`` and
reused. Writes benchmarks/results/released_initial_policy_PointButton1.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _sibling(name):
    """run.py or compare.py next to this file (stdlib only at import, so both interpreters load them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"released_code_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_run, _compare = _sibling("run"), _sibling("compare")
COMMIT, TASK, released_args, cpu_model = _run.COMMIT, _run.TASK, _run.released_args, _run.cpu_model
_released_versions, _write_json = _run._released_versions, _run._write_json
agreement, mean_std = _compare.agreement, _compare.mean_std

DEFAULT_JSON = os.path.normpath(os.path.join(HERE, "..", "results", "released_initial_policy_PointButton1.json"))
EPISODE_LENGTH = 1000  # SafetyPointButton1: episodes are truncated at 1000 steps, never terminate
RELEASED_ENVS, RELEASED_STEPS = 5, 4000  # trpo_pid.py: --num-envs 5, 20000 // 5 steps per epoch
OURS_ENVS, OURS_STEPS = 20, 1000  # --preset paper-base


def rollout_statistics(observation, action_mean, action, reward, cost):
    """Statistics of one seed's rollout. Arrays are time-major: observation [T, E, O] (normalised,
    as the policy saw it), action_mean and action [T, E, A] (sampled, before any clipping),
    reward and cost [T, E]. Episodes are the E envs' blocks of EPISODE_LENGTH steps (all envs
    reset together), listed block by block, env by env (the order episodes end in)."""
    steps, envs = cost.shape
    blocks = steps // EPISODE_LENGTH

    def per_episode(x):  # [T, E, ...] -> [blocks * E, EPISODE_LENGTH, ...]
        x = x[: blocks * EPISODE_LENGTH].reshape((blocks, EPISODE_LENGTH, envs) + x.shape[2:])
        return np.moveaxis(x, 2, 1).reshape((blocks * envs, EPISODE_LENGTH) + x.shape[3:])

    episode_cost = per_episode(cost).sum(1)
    episode_return = per_episode(reward).sum(1)
    episode_drift = np.abs(per_episode(action_mean).mean(1))  # [episodes, A]
    flat_mean = action_mean.reshape(-1, action_mean.shape[-1])
    outside = np.abs(action.reshape(-1, action.shape[-1])) > 1.0
    abs_obs = np.abs(observation.reshape(-1, observation.shape[-1]))
    return {
        "episode_cost": episode_cost.tolist(),
        "episode_return": episode_return.tolist(),
        "mean_episode_cost": float(episode_cost.mean()),
        "mean_episode_return": float(episode_return.mean()),
        "cost_per_step": float(cost.mean()),
        "action_mean_abs": np.abs(flat_mean).mean(0).tolist(),
        "action_mean_std": flat_mean.std(0).tolist(),
        "action_mean_episode_drift": episode_drift.mean(0).tolist(),
        "sampled_outside_unit_box": float(outside.mean()),
        "sampled_outside_unit_box_per_component": outside.mean(0).tolist(),
        "normalized_observation_abs_mean": float(abs_obs.mean()),
        "normalized_observation_abs_max": float(abs_obs.max()),
        "normalized_observation_over_10": float((abs_obs > 10).mean()),
        "normalized_observation_abs_max_per_dim": abs_obs.max(0).round(3).tolist(),
        "normalized_observation_abs_mean_per_dim": abs_obs.mean(0).round(4).tolist(),
    }


# --- the released side (run by the released venv's python) --------------------------------


def released_seed(checkout, seed, export, zero_actor=False):
    """trpo_pid.py's first epoch for one seed, with the released code's own pieces; also saves
    the actor's initial weights to ``export`` (npz). ``zero_actor``: the actor's weights and
    biases set to 0 after init, so that every action is N(0, 1) (log_std 0), whatever the
    observation."""
    import random

    import torch

    from safepo.common.env import make_sa_safetygym_env
    from safepo.common.model import ActorVCritic
    from safepo.utils.config import single_agent_args

    sys.argv = ["trpo_pid.py"] + released_args("base", seed, 20000, 1e-5, 10.0, tempfile.gettempdir())
    args, _ = single_agent_args()
    # trpo_pid.py main(): seeds, then the training env (its eval env, made next, draws from no
    # generator used here), then ActorVCritic (reward critic, cost critic, actor, in that order).
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = True
    torch.set_num_threads(1)  # run.py's launcher does the same; no number changes
    env, obs_space, act_space = make_sa_safetygym_env(args, num_envs=args.num_envs, env_id=args.task, seed=args.seed)
    policy = ActorVCritic(obs_dim=obs_space.shape[0], act_dim=act_space.shape[0], hidden_sizes=[64, 64])
    np.savez(export, **{name: value.detach().numpy() for name, value in policy.actor.state_dict().items()})
    if zero_actor:
        with torch.no_grad():
            for parameter in policy.actor.mean.parameters():
                parameter.zero_()
    assert args.num_envs == RELEASED_ENVS and args.steps_per_epoch // args.num_envs == RELEASED_STEPS
    obs, _ = env.reset()
    obs = torch.as_tensor(obs, dtype=torch.float32)
    record = {key: [] for key in ("observation", "action_mean", "action", "reward", "cost")}
    for step in range(RELEASED_STEPS):
        with torch.no_grad():
            mean = policy.actor(obs).mean  # no random draw: the draws below are the script's own
            act, _, _, _ = policy.step(obs, deterministic=False)
        action = act.detach().squeeze().cpu().numpy()
        next_obs, reward, cost, terminated, truncated, info = env.step(action)
        for key, value in (("observation", obs.numpy()), ("action_mean", mean.numpy()), ("action", action),
                           ("reward", reward), ("cost", cost)):
            record[key].append(np.asarray(value, np.float64))
        next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
        # the script's bootstrap calls of policy.step draw from torch's generator too
        epoch_end = step >= RELEASED_STEPS - 1
        for idx, (done, time_out) in enumerate(zip(terminated, truncated)):
            if not done and (epoch_end or time_out):
                with torch.no_grad():
                    if epoch_end:
                        policy.step(next_obs[idx], deterministic=False)
                    if time_out:
                        final = torch.as_tensor(np.asarray(info["final_observation"][idx]), dtype=torch.float32)
                        policy.step(final, deterministic=False)
        obs = next_obs
    env.close()
    return rollout_statistics(**{key: np.stack(value) for key, value in record.items()})


def released_main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--released-code", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--export", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--zero-actor", action="store_true")
    args = parser.parse_args(argv)
    sys.path[:0] = _run.import_paths(args.released_code)
    start = time.time()
    result = released_seed(args.released_code, args.seed, args.export, args.zero_actor)
    result["seconds"] = time.time() - start
    _write_json(args.out, result)


def export_main(argv):
    """Only the released actors' initial weights for seeds 0..N-1 (trpo_pid.py draws nothing
    from torch's generator between ``torch.manual_seed`` and ``ActorVCritic``, so these are the
    actors its runs with those seeds start from)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--released-code", required=True)
    parser.add_argument("--seeds", type=int, required=True)
    parser.add_argument("--obs-dim", type=int, required=True)
    parser.add_argument("--act-dim", type=int, required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    sys.path[:0] = _run.import_paths(args.released_code)
    import torch

    from safepo.common.model import ActorVCritic

    for seed in range(args.seeds):
        torch.manual_seed(seed)
        policy = ActorVCritic(obs_dim=args.obs_dim, act_dim=args.act_dim, hidden_sizes=[64, 64])
        np.savez(os.path.join(args.out_dir, f"actor_torch_seed{seed}.npz"),
                 **{name: value.detach().numpy() for name, value in policy.actor.state_dict().items()})


# --- our side ------------------------------------------------------------------------------


def our_config(num_envs, unroll_length):
    from shapo_jax import TrainConfig

    return TrainConfig(env="SafetyPointButton1", algo="trpo_pid", preset="paper-base", num_envs=num_envs,
                       unroll_length=unroll_length, num_minibatches=max(1, num_envs * unroll_length // 125),
                       seed=0, num_seeds=3)


def first_collect(pieces, keys, actor_params=None, actor_scale=1.0):
    """The first update's rollout of every seed, exactly as ``train.update`` collects it (its
    rollout key split from the initial state's key); ``actor_params`` [seeds] replaces the
    initial actors; ``actor_scale`` 0 zeroes the actor's weights and biases (log_std stays 0),
    so every action is N(0, 1). Returns per seed the arrays ``rollout_statistics`` takes."""
    import jax

    from shapo_jax import train

    def one(key, params):
        state = train.init(pieces, key)
        params = state.learner.actor_params if params is None else params
        params = {"params": {**params["params"], "MLP_0": jax.tree.map(lambda p: p * actor_scale,
                                                                        params["params"]["MLP_0"])}}
        state = state._replace(learner=state.learner._replace(actor_params=params))
        rollout_key = jax.random.split(state.key, 3)[0]
        collected = train.collect(pieces, state, rollout_key)
        t = collected.transitions
        mean, _ = pieces.actor.apply(params, t.observation)
        return t.observation, mean, t.action, t.reward, t.cost

    outputs = jax.jit(jax.vmap(one))(keys, actor_params)
    names = ("observation", "action_mean", "action", "reward", "cost")
    return [rollout_statistics(**{name: np.asarray(x[s], np.float64) for name, x in zip(names, outputs)})
            for s in range(len(keys))]


def ported_actor_params(pieces, exports):
    """Our GaussianActor params [seeds] holding the released actors' initial weights
    (torch Linear y = x W^T + b; flax Dense y = x K + b, so K = W^T)."""
    import jax
    import jax.numpy as jnp

    trees = []
    for path in exports:
        w = np.load(path)
        layers = {f"Dense_{i}": {"kernel": jnp.asarray(w[f"mean.{2 * i}.weight"].T),
                                 "bias": jnp.asarray(w[f"mean.{2 * i}.bias"])} for i in range(3)}
        trees.append({"params": {"MLP_0": layers, "log_std": jnp.asarray(w["log_std"])}})
    reference = jax.eval_shape(pieces.actor.init, jax.random.PRNGKey(0), jnp.zeros((1, pieces.env.observation_size)))
    assert jax.tree.structure(reference) == jax.tree.structure(trees[0]), "actor parameter trees differ"
    return jax.tree.map(lambda *x: jnp.stack(x), *trees)


def ours(exports, more_seeds, torch_exports=()):
    """Our runs ({name: per-seed statistics}) and the seconds each took (compile included)."""
    from shapo_jax.train import make_pieces, seed_keys

    keys = seed_keys(0, 3)
    released_shape = make_pieces(our_config(RELEASED_ENVS, RELEASED_STEPS))
    ours_shape = make_pieces(our_config(OURS_ENVS, OURS_STEPS))
    plan = [  # name, pieces, keys, actor params (None: the seed's own init), actor scale
        ("ours", ours_shape, keys, None, 1.0),
        ("ours_zero_actor", ours_shape, keys, None, 0.0),
        ("ported", released_shape, keys, ported_actor_params(released_shape, exports), 1.0),
        ("ported_20x1000", ours_shape, keys, ported_actor_params(ours_shape, exports), 1.0),
        ("ours_5x4000", released_shape, keys, None, 1.0),
    ]
    if more_seeds:
        plan.append((f"ours_{more_seeds}_seeds", ours_shape, seed_keys(0, more_seeds), None, 1.0))
    if torch_exports:
        plan.append((f"ported_torch_{len(torch_exports)}_seeds", ours_shape, seed_keys(0, len(torch_exports)),
                     ported_actor_params(ours_shape, torch_exports), 1.0))
    runs, seconds = {}, {}
    for name, pieces, run_keys, params, scale in plan:
        start = time.time()
        runs[name] = first_collect(pieces, run_keys, params, scale)
        seconds[name] = time.time() - start
        print(f"{name}: mean episode cost {np.mean([r['mean_episode_cost'] for r in runs[name]]):.2f} "
              f"({seconds[name]:.0f} s)", flush=True)
    return runs, seconds


# --- summary -------------------------------------------------------------------------------

SUMMARISED = ("mean_episode_cost", "mean_episode_return", "cost_per_step", "sampled_outside_unit_box",
              "normalized_observation_abs_mean", "normalized_observation_abs_max", "normalized_observation_over_10")
PER_COMPONENT = ("action_mean_abs", "action_mean_std", "action_mean_episode_drift")


def summary(per_seed):
    out = {}
    for key in SUMMARISED:
        mean, std = mean_std([s[key] for s in per_seed])
        out[key] = {"mean": mean, "std": std, "per_seed": [s[key] for s in per_seed]}
    for key in PER_COMPONENT:
        out[key] = np.mean([s[key] for s in per_seed], axis=0).tolist()
    costs = np.asarray([c for s in per_seed for c in s["episode_cost"]])
    out["episodes_with_zero_cost"] = float(np.mean(costs == 0))
    out["episode_cost_median"] = float(np.median(costs))
    return out


def compared(a, b):
    """a against b: over seeds (the seed means) and over all episodes pooled (each episode one
    sample; episodes of one seed share an actor, so this overstates the evidence somewhat)."""
    return {"mean_episode_cost_over_seeds": agreement([s["mean_episode_cost"] for s in a],
                                                      [s["mean_episode_cost"] for s in b]),
            "episode_cost_over_episodes": agreement([c for s in a for c in s["episode_cost"]],
                                                    [c for s in b for c in s["episode_cost"]]),
            "ratio_of_mean_episode_costs": float(np.mean([s["mean_episode_cost"] for s in a])
                                                 / np.mean([s["mean_episode_cost"] for s in b]))}


def run_released(args, work, seed, zero_actor):
    """One released-side subprocess (skipped when its JSON is in ``work`` already); its result."""
    tag = "released_zero_actor" if zero_actor else "released"
    export, out = os.path.join(work, f"actor_seed{seed}.npz"), os.path.join(work, f"{tag}_seed{seed}.json")
    if not os.path.exists(out):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled")
        subprocess.run(["nice", "-n", "10", args.python, os.path.abspath(__file__), "released",
                        "--released-code", os.path.abspath(args.released_code), "--seed", str(seed),
                        "--export", export, "--out", out] + (["--zero-actor"] if zero_actor else []),
                       check=True, env=env, cwd=work)
    with open(out) as f:
        result = json.load(f)
    print(f"{tag} seed {seed}: mean episode cost {result['mean_episode_cost']:.2f} ({result['seconds']:.0f} s)",
          flush=True)
    return result, export


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--released-code", required=True, help="checkout of montrealrobotics/shapo @ 1bb7704")
    parser.add_argument("--python", required=True, help="python of the venv made by setup.sh")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "initial_policy"),
                        help="for the released side's per-seed JSON and actor weights; those already there are "
                             "reused (each records its own seconds)")
    parser.add_argument("--released-runs", default=os.path.join(HERE, "..", "results", "released_code_PointButton1.json"),
                        help="run.py's JSON: the released side's episode costs are checked against its first epoch")
    parser.add_argument("--more-seeds", type=int, default=16,
                        help="also our own setup with this many seeds (shapo-train --seed 0 --num-seeds N); 0: not")
    parser.add_argument("--torch-seeds", type=int, default=16,
                        help="also the released code's initial actors of seeds 0..N-1 in our setup, with the env "
                             "keys of --more-seeds N (same layouts and noise, other actors); 0: not")
    parser.add_argument("--json", default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    seeds = [0, 1, 2]  # ours: shapo-train --seed 0 --num-seeds 3; the released runs: --seed 0, 1, 2
    os.makedirs(args.work, exist_ok=True)
    sides = {"released": [], "released_zero_actor": []}
    exports = []
    for zero_actor, tag in ((False, "released"), (True, "released_zero_actor")):
        for seed in seeds:
            result, export = run_released(args, args.work, seed, zero_actor)
            sides[tag].append(result)
            if not zero_actor:
                exports.append(export)
    torch_exports = []
    if args.torch_seeds:
        shapes = np.load(exports[0])
        subprocess.run([args.python, os.path.abspath(__file__), "export", "--released-code",
                        os.path.abspath(args.released_code), "--seeds", str(args.torch_seeds),
                        "--obs-dim", str(shapes["mean.0.weight"].shape[1]), "--act-dim", str(shapes["log_std"].shape[0]),
                        "--out-dir", args.work], check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        torch_exports = [os.path.join(args.work, f"actor_torch_seed{s}.npz") for s in range(args.torch_seeds)]
        for s, export in zip(seeds, exports):  # the same seed gives the same actor as in the full run
            assert all(np.array_equal(v, np.load(torch_exports[s])[k]) for k, v in np.load(export).items())
    runs, ours_seconds = ours(exports, args.more_seeds, torch_exports)
    sides.update(runs)
    logged = None
    if args.released_runs and os.path.exists(args.released_runs):
        with open(args.released_runs) as f:
            logged_runs = {r["seed"]: r for r in json.load(f)["runs"] if r["arm"] == "base"}
        logged = [logged_runs[s]["curve"]["episodes"]["cost"][:20] == r["episode_cost"] if s in logged_runs else None
                  for s, r in zip(seeds, sides["released"])]
    result = {
        "what": "SafetyPointButton1, the untrained policy's first update (20 episodes of 1000 steps per seed, seeds "
                "0 1 2): the released code (montrealrobotics/shapo @ " + COMMIT + ", TRPO-PID's first epoch) against "
                "shapo_jax --preset paper-base, and two cross-checks that hold the policy fixed and change the env",
        "sides": {
            "released": "released venv: safepo make_sa_safetygym_env (5 envs, SafetyAsyncVectorEnv, SafeRescaleAction, "
                        "SafeNormalizeObservation), ActorVCritic, policy.step sampling, seeded as trpo_pid.py; "
                        "5 envs x 4000 steps",
            "ours": "shapo_jax train.init + train.collect of --preset paper-base (per-step observation statistics, "
                    "torch init), keys of shapo-train --seed 0 --num-seeds 3; 20 envs x 1000 steps",
            "released_zero_actor": "as released, the actor's weights and biases set to 0 after its seeded init: "
                                   "every action N(0, 1) independent of the observation (SG driven by i.i.d. "
                                   "Gaussian actions, sampled by the released code)",
            "ours_zero_actor": "as ours, the actor's weights and biases set to 0: every action N(0, 1) (our env "
                               "driven by the same i.i.d. Gaussian actions)",
            "ported": "our env and train.collect with --preset paper-base at 5 envs x 4000 steps, the actor replaced "
                      "by the released actor's initial weights of the same seed; env layouts (one per env per update, "
                      "replayed at each of the 4 resets) and action noise are ours",
            "ported_20x1000": "as ported, in our own setup of 20 envs x 1000 steps",
            "ours_5x4000": "as ours (our own initial actors), in the released setup of 5 envs x 4000 steps",
            "ported_torch_N_seeds": "released actors of torch seeds 0..N-1 (ActorVCritic right after "
                                    "torch.manual_seed, as trpo_pid.py) in our 20 x 1000 setup with the env keys of "
                                    "ours_N_seeds: the same layouts and action noise, torch-drawn actors instead of ours",
            "ours_N_seeds": "as ours with N seeds (shapo-train --seed 0 --num-seeds N): the spread of the first "
                            "update's cost over our initial actors"},
        "fields": {
            "mean_episode_cost, mean_episode_return": "mean over the 20 episodes of 1000 steps in the update",
            "cost_per_step": "mean cost over all env steps",
            "action_mean_abs": "per action component, mean over all steps of |policy mean| (mean over seeds)",
            "action_mean_std": "per action component, std over all steps and envs of the policy mean",
            "action_mean_episode_drift": "per action component, mean over episodes of |the policy mean averaged over "
                                         "the episode| (a persistent push in one direction)",
            "sampled_outside_unit_box": "fraction of sampled action components with |a| > 1 (the env clips them)",
            "normalized_observation_abs_mean, _abs_max, _over_10": "over all steps, envs and dims of the normalised "
                                                                   "observation the policy saw: mean |x|, max |x|, "
                                                                   "fraction |x| > 10",
            "*_per_dim": "per observation dim, max and mean |x| (per-seed records)",
            "comparisons": "first side minus second: difference of means, its Welch standard error, and whether "
                           "|difference| <= 2 standard errors (compare.py's rule), over seed means and over all "
                           "episodes pooled"},
        "released_reproduces_logged_first_epoch": {
            "per_seed": logged,
            "meaning": "each seed's 20 episode costs equal, in order, those of run.py's logged base run's first epoch"},
        "summary": {side: summary(values) for side, values in sides.items()},
        "comparisons": {
            "ours - released": compared(sides["ours"], sides["released"]),
            "ported - released (same actors, env differs)": compared(sides["ported"], sides["released"]),
            "ours - ported (same env, actors differ)": compared(sides["ours"], sides["ported"]),
            "ours_zero_actor - released_zero_actor (same i.i.d. N(0,1) actions, env differs)":
                compared(sides["ours_zero_actor"], sides["released_zero_actor"]),
            "ported_20x1000 - released (same actors, our env and setup)": compared(sides["ported_20x1000"],
                                                                                  sides["released"]),
            "ours_5x4000 - ours (same actors, 5 x 4000 instead of 20 x 1000)": compared(sides["ours_5x4000"],
                                                                                       sides["ours"]),
            **({f"ported_torch_{args.torch_seeds}_seeds - ours_{args.more_seeds}_seeds (same env keys, actors "
                f"drawn by torch vs by us)": compared(sides[f"ported_torch_{args.torch_seeds}_seeds"],
                                                      sides[f"ours_{args.more_seeds}_seeds"])}
               if args.torch_seeds and args.torch_seeds == args.more_seeds else {}),
            **({f"ours_{args.more_seeds}_seeds - released": compared(sides[f"ours_{args.more_seeds}_seeds"],
                                                                     sides["released"])} if args.more_seeds else {})},
        "per_seed": sides,
        "command": "python benchmarks/released_code/initial_policy.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "seconds": {"released_per_seed": [r["seconds"] for r in sides["released"]],
                    "released_zero_actor_per_seed": [r["seconds"] for r in sides["released_zero_actor"]],
                    "ours_with_compile": ours_seconds},
        "released_versions": _released_versions(args.python),
        "task": TASK,
        "cpu_model": cpu_model(),
        "note": "Niced on a 2-core CPU shared with other jobs; the seconds are wall time under that load.",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    _write_json(args.json, result)
    for side in sides:
        s = result["summary"][side]
        print(f"{side:20s} episode cost {s['mean_episode_cost']['mean']:6.2f} +- {s['mean_episode_cost']['std']:5.2f} "
              f"| |mean| {np.round(s['action_mean_abs'], 3)} std {np.round(s['action_mean_std'], 3)} "
              f"drift {np.round(s['action_mean_episode_drift'], 3)} | outside {s['sampled_outside_unit_box']['mean']:.3f} "
              f"| |obs| {s['normalized_observation_abs_mean']['mean']:.3f} max {s['normalized_observation_abs_max']['mean']:.1f}")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "released":
        released_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "export":
        export_main(sys.argv[2:])
    else:
        sys.exit(main())

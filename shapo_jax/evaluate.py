"""``shapo-eval``: return and cost of a saved policy, per seed, deterministic and stochastic.

Loads ``config.json`` and the final policy (``policy.npz``, saved by every finished
``shapo-train`` run) or a checkpoint (``--checkpoint-every``), rebuilds the task and the
actor, and runs K episodes per seed (all seeds and episodes vmapped, one
compiled ``lax.scan`` of episode-length steps) with the checkpoint's observation
normaliser: once with the mean action, once sampling. ``--video`` renders one episode of
seed 0 (mean action) with MuJoCo's offscreen renderer; navigation tasks with their goal,
hazards and each step's cost drawn in (``shapo_envs.navigation.render``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Optional, Sequence

EXIT_USAGE = 2
GL_HELP = ("rendering needs OpenGL without a display: install EGL (apt-get install libegl1) and set MUJOCO_GL=egl, "
           "or OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=osmesa")


class EvalError(RuntimeError):
    """A problem with the run directory or the request, reported as one line."""


def load_config(run_dir: str):
    """The run's resolved ``TrainConfig`` (``config.resolve``) from its config.json: the task
    defaults as they were recorded (a file of an older version, with nulls for them, gets the
    task's own); a run of a user task imports its ``--env-module`` again, so that the task is
    registered."""
    from shapo_jax.config import ConfigError, from_record, import_env_module, resolve

    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise EvalError(f"{path} not found: --run must be the --out DIR of a shapo-train run")
    with open(path) as f:
        saved = json.load(f)
    config = dataclasses.replace(from_record(saved), resume=False, progress=False, out=run_dir)
    try:
        import_env_module(config)
    except ConfigError as error:
        raise EvalError(f"{run_dir} trained a task from {error}") from None
    try:
        return resolve(config)
    except ConfigError as error:
        raise EvalError(f"{path}: {error}") from None


def load_state(run_dir: str, trainer, step: Optional[int]):
    """The vmapped ``TrainState`` of the given (or latest) checkpoint, and its step."""
    import jax

    from shapo_jax.checkpoint import Checkpoints
    from shapo_jax.train import seed_keys

    checkpoints = Checkpoints(run_dir)
    steps = checkpoints.steps()
    if not steps:
        raise EvalError(f"no checkpoint in {checkpoints.directory}: train with --checkpoint-every N to save them")
    if step is not None and step not in steps:
        raise EvalError(f"--step {step}: no such checkpoint; saved steps: {', '.join(map(str, steps))}")
    config = trainer.config
    abstract = jax.eval_shape(jax.vmap(trainer.init), seed_keys(config.seed, config.num_seeds))
    restored = checkpoints.restore(step if step is not None else steps[-1], abstract)
    checkpoints.close()
    return restored.state, restored.step


def load_policy(run_dir: str, trainer, step: Optional[int]):
    """The vmapped actor and observation statistics to evaluate, and their step.

    The run's final ``policy.npz`` or a checkpoint (``step``, or the newest of both; the
    small policy file when they hold the same step)."""
    import jax

    from shapo_jax.checkpoint import POLICY_FILE, Checkpoints, checkpoint_dir, load_policy as read_policy, policy_of
    from shapo_jax.train import seed_keys

    config = trainer.config
    abstract = policy_of(jax.eval_shape(jax.vmap(trainer.init), seed_keys(config.seed, config.num_seeds)))
    try:
        final = read_policy(run_dir, abstract)
    except Exception as error:  # noqa: BLE001 - a damaged or foreign file: say which, in one line
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise EvalError(f"{os.path.join(run_dir, POLICY_FILE)} cannot be read: {message}") from None
    steps = Checkpoints(run_dir).steps() if os.path.isdir(checkpoint_dir(run_dir)) else []
    final_steps = [final.step] if final is not None else []
    if not steps and not final_steps:
        raise EvalError(f"{run_dir} holds neither {POLICY_FILE} nor a checkpoint: a run saves its policy when it "
                        f"finishes (and with --checkpoint-every N during the run)")
    if step is None:
        step = max(steps + final_steps)
    if step in final_steps:
        return final.policy, final.step
    if step not in steps:
        saved = sorted(set(steps + final_steps))
        raise EvalError(f"--step {step}: no such checkpoint; saved steps: {', '.join(map(str, saved))}")
    states, step = load_state(run_dir, trainer, step)
    return policy_of(states), step


def make_policy(trainer):
    """``policy(state, observation, key, deterministic) -> action`` of one seed, unclipped as in
    training (each env clips where its original does)."""
    import jax.numpy as jnp

    def policy(state, observation, key, deterministic):
        sample, _, mean = trainer.act(state.actor_params, state.normalizer, observation, key)
        return jnp.where(deterministic, mean, sample)

    return policy


def evaluation_env(trainer):
    """The env evaluation steps: the trainer's, or for a ``--physics-impl warp`` run the same
    task on MJX's JAX implementation (the same model and observations; Warp's contact list is
    sized for the training batch, not for the episodes evaluated)."""
    import shapo_envs

    return trainer.env if trainer.config.physics_impl == "jax" else shapo_envs.make_env(trainer.config.env)


def make_evaluate(trainer, num_episodes: int):
    """``evaluate(states, keys, deterministic) -> (returns, costs)``, each [num_seeds, num_episodes]
    (costs [num_seeds, num_episodes, m] for a task with m constraints).

    Episodes end at termination or after the run's episode length; nothing after the end counts.
    """
    import jax
    import jax.numpy as jnp

    env, policy = evaluation_env(trainer), make_policy(trainer)

    def one_seed(state, key, deterministic):
        reset_key, run_key = jax.random.split(key)
        env_state = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))
        zeros = jnp.zeros((num_episodes,), jnp.float32)
        m = len(trainer.cost_limit) if isinstance(trainer.cost_limit, tuple) else 1
        cost_zeros = zeros if m == 1 else jnp.zeros((num_episodes, m), jnp.float32)

        def step(carry, step_key):
            env_state, episode_return, episode_cost, alive = carry
            keys = jax.random.split(step_key, num_episodes)
            action = jax.vmap(policy, (None, 0, 0, None))(state, env_state.obs, keys, deterministic)
            env_state = jax.vmap(env.step)(env_state, action)
            episode_return += jnp.where(alive, env_state.reward, 0.0)
            cost = env_state.info["cost"]
            episode_cost += jnp.where(alive if cost.ndim == 1 else alive[:, None], cost, 0.0)
            return (env_state, episode_return, episode_cost, alive & (env_state.done == 0)), None

        carry = (env_state, zeros, cost_zeros, jnp.ones((num_episodes,), bool))
        (_, episode_return, episode_cost, _), _ = jax.lax.scan(
            step, carry, jax.random.split(run_key, trainer.episode_length))
        return episode_return, episode_cost

    return jax.jit(jax.vmap(one_seed, (0, 0, None)))


def evaluate_run(run_dir: str, num_episodes: int = 10, step: Optional[int] = None, seed: int = 0) -> dict[str, Any]:
    """Evaluates a saved run; returns the JSON-ready report."""
    import jax
    import numpy as np

    from shapo_jax.train import make_trainer

    trainer = make_trainer(load_config(run_dir))
    states, step = load_policy(run_dir, trainer, step)
    evaluate = make_evaluate(trainer, num_episodes)
    keys = jax.random.split(jax.random.PRNGKey(seed), trainer.config.num_seeds)
    report: dict[str, Any] = {
        "run": os.path.abspath(run_dir), "env": trainer.config.env, "step": step, "episodes_per_seed": num_episodes,
        "episode_length": trainer.episode_length, "seed": seed,
        "cost_limit": list(trainer.cost_limit) if isinstance(trainer.cost_limit, tuple) else trainer.cost_limit,
    }
    for name, deterministic in (("deterministic", True), ("stochastic", False)):
        returns, costs = (np.asarray(x) for x in evaluate(states, keys, deterministic))
        per_constraint = {}
        if costs.ndim == 3:  # m constraints: the sums below, and each constraint's mean
            per_constraint = {"episode_cost_per_constraint": costs.mean(axis=1).tolist(),
                              "mean_cost_per_constraint": costs.mean(axis=(0, 1)).tolist()}
            costs = costs.sum(axis=-1)
        report[name] = {
            "episode_return": returns.mean(axis=1).tolist(),
            "episode_cost": costs.mean(axis=1).tolist(),
            "mean_return": float(returns.mean()),
            "mean_cost": float(costs.mean()),
            **per_constraint,
        }
    return report


def render_episode(run_dir: str, path: str, step: Optional[int] = None, seed: int = 0,
                   height: int = 240, width: int = 320) -> str:
    """Renders one episode of seed 0 (mean action); returns what was written. Navigation tasks
    are drawn with their goal, hazards and cost (``shapo_envs.navigation.render``)."""
    import jax
    import numpy as np

    from shapo_envs.navigation import render as navigation
    from shapo_jax.train import make_trainer

    trainer = make_trainer(load_config(run_dir))
    env = evaluation_env(trainer)
    system = getattr(getattr(env, "unwrapped", env), "sys", None)
    if system is None:
        raise EvalError(f"{trainer.config.env} is a pure-JAX task without a MuJoCo model: it has no renderer")
    is_navigation = navigation.renders(env)
    _renderer_check(env.unwrapped.mj_model if is_navigation else system.mj_model, height, width)
    states, step = load_policy(run_dir, trainer, step)
    state = jax.tree.map(lambda x: x[0], states)
    policy = make_policy(trainer)

    def step_fn(env_state, key):
        env_state = env.step(env_state, policy(state, env_state.obs, key, True))
        return env_state, env_state

    first = env.reset(jax.random.PRNGKey(seed))
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), trainer.episode_length)
    _, trajectory = jax.jit(lambda s, k: jax.lax.scan(step_fn, s, k))(first, keys)
    dones = np.asarray(trajectory.done)
    length = int(np.argmax(dones > 0)) + 1 if dones.any() else len(dones)
    episode = jax.device_get(jax.tree.map(lambda a, b: np.concatenate([np.asarray(a)[None], np.asarray(b)[:length]]),
                                          first, trajectory))  # the reset state, then each step's
    if is_navigation:
        frames = navigation.render(env, navigation.frames_of(episode), height, width)
    else:
        from brax.io import image

        pipeline_states = [jax.tree.map(lambda x: x[i], episode.pipeline_state) for i in range(length + 1)]
        frames = image.render_array(system, pipeline_states, height, width)
    return write_video(path, np.asarray(frames), fps=int(round(1.0 / float(env.dt))))


def _renderer_check(mj_model, height: int, width: int):
    """Fails with one line on what to install when MuJoCo cannot open an offscreen GL context."""
    import mujoco

    try:
        renderer = mujoco.Renderer(mj_model, height=height, width=width)
        renderer.close()
    except Exception as error:  # noqa: BLE001 - any GL failure means the same fix
        raise EvalError(f"{GL_HELP} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")


def write_video(path: str, frames, fps: int) -> str:
    """mp4 through imageio or mediapy if installed, GIF through Pillow; else PNG frames."""
    for module in ("imageio", "mediapy"):
        try:
            writer = __import__(module)
        except ImportError:
            continue
        try:
            if module == "imageio":
                writer.mimwrite(path, list(frames), fps=fps)
            else:
                writer.write_video(path, frames, fps=fps)
        except (ValueError, RuntimeError, OSError):  # installed without an encoder for this format (ffmpeg)
            continue
        return f"wrote {len(frames)} frames to {path}"
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    if path.lower().endswith(".gif"):
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return f"wrote {len(frames)} frames to {path}"
    folder = os.path.splitext(path)[0] + "_frames"
    os.makedirs(folder, exist_ok=True)
    for index, image in enumerate(images):
        image.save(os.path.join(folder, f"{index:05d}.png"))
    return (f"no video encoder installed (pip install 'imageio[ffmpeg]' or mediapy for mp4, or give a .gif path): "
            f"wrote {len(frames)} PNG frames to {folder}/")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shapo-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the --out DIR of a shapo-train run (its final policy.npz, or checkpoints)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per seed (default 10)")
    parser.add_argument("--step", type=int, default=None,
                        help="env steps per seed of a checkpoint or of the final policy (default: the latest)")
    parser.add_argument("--seed", type=int, default=0, help="key for the evaluation episodes")
    parser.add_argument("--json", default=None, help="where to write the report (default RUN/eval_<step>.json)")
    parser.add_argument("--video", default=None, help="render one episode of seed 0 (mean action) to FILE.mp4 or .gif")
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        parser.error(f"--episodes: must be a positive integer, got {args.episodes}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.video and "MUJOCO_GL" not in os.environ and argv is None:
        # MuJoCo picks its GL backend when first imported (by this package, already): start
        # again with headless EGL chosen.
        os.environ["MUJOCO_GL"] = "egl"
        os.execv(sys.executable, [sys.executable, "-m", "shapo_jax.evaluate", *sys.argv[1:]])
    from shapo_jax.cli import _quiet_imports
    from shapo_jax.reporting import write_json

    _quiet_imports()
    try:
        report = evaluate_run(args.run, args.episodes, args.step, args.seed)
        path = args.json or os.path.join(args.run, f"eval_{report['step']}.json")
        write_json(path, report)
        for name in ("deterministic", "stochastic"):
            part = report[name]
            limit = report["cost_limit"]
            limit = ",".join(f"{x:g}" for x in limit) if isinstance(limit, list) else f"{limit:g}"
            cost = (",".join(f"{x:.2f}" for x in part["mean_cost_per_constraint"])
                    if "mean_cost_per_constraint" in part else f"{part['mean_cost']:.2f}")
            print(f"{name:>13}: return {part['mean_return']:.2f}  cost {cost} "
                  f"(limit {limit})  per seed return {[round(x, 2) for x in part['episode_return']]} "
                  f"cost {[round(x, 2) for x in part['episode_cost']]}")
        print(f"shapo-eval: step {report['step']}, {args.episodes} episode(s) per seed; wrote {path}")
        if args.video:
            print(f"shapo-eval: {render_episode(args.run, args.video, report['step'], args.seed)}")
    except EvalError as error:
        print(f"shapo-eval: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())

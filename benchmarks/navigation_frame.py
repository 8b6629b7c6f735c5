"""The README's picture of a navigation task as ``shapo-eval --video`` draws it.

SafetyPointGoal1 (seed 0 layout), not a trained policy: a scripted controller steers the
Point into the nearest hazard, and the frame of its first costly step is saved, so the picture
shows everything the renderer adds to the physics model (goal, hazards, the red robot and halo
of a costly step, the caption with the episode's cost).

  MUJOCO_GL=egl python benchmarks/navigation_frame.py   # -> benchmarks/results/navigation_frame.png
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from shapo_envs.navigation import render  # noqa: E402
from shapo_envs.navigation.env import NavigationEnv  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "navigation_frame.png")


def towards_nearest_hazard(env: NavigationEnv, state) -> jax.Array:
    """Point action (thrust, turn rate) that heads for the nearest hazard."""
    data = state.pipeline_state
    agent, heading = data.xpos[env._agent][:2], data.xmat[env._agent].reshape(3, 3)[:2, 0]
    hazards = state.info["layout"][env._slots["hazards"]]
    target = hazards[jnp.argmin(jnp.linalg.norm(hazards - agent, axis=-1))] - agent
    error = jnp.arctan2(target[1], target[0]) - jnp.arctan2(heading[1], heading[0])
    error = jnp.arctan2(jnp.sin(error), jnp.cos(error))
    return jnp.stack([jnp.where(jnp.abs(error) < 0.5, 1.0, 0.0), jnp.clip(3.0 * error, -1.0, 1.0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()

    env = NavigationEnv("Point", "Goal", 1)
    step = jax.jit(lambda s: env.step(s, towards_nearest_hazard(env, s)))
    states = [jax.jit(env.reset)(jax.random.PRNGKey(args.seed))]
    while len(states) <= args.max_steps and float(states[-1].info["cost"]) == 0:
        states.append(step(states[-1]))
    episode = jax.device_get(jax.tree.map(lambda *x: np.stack([np.asarray(v) for v in x]), *states))
    frame = render.frames_of(episode)[-1]
    image = render.render(env, [frame], 240, 320)[0]
    Image.fromarray(image).save(args.out, optimize=True)
    print(f"step {frame.step}, cost {frame.cost:g}: wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()

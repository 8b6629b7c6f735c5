"""Envs that misbehave on purpose, for the tests of the NaN guard (in process and via the CLI)."""

import jax.numpy as jnp
from brax.envs.base import Wrapper


class NaNRewardAfter(Wrapper):
    """Returns a NaN reward once the env's step counter passes ``after`` steps."""

    def __init__(self, env, after: int):
        super().__init__(env)
        self.after = after

    def reset(self, rng):
        state = self.env.reset(rng)
        state.info["t"] = jnp.zeros(())
        return state

    def step(self, state, action):
        t = state.info["t"] + 1
        next_state = self.env.step(state, action)
        next_state.info["t"] = t
        return next_state.replace(reward=jnp.where(t > self.after, jnp.nan, next_state.reward))

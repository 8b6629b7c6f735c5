"""MuJoCo Playground adapter: any ``MjxEnv`` plus a cost function becomes a safe Brax ``Env``.

MuJoCo Playground (``pip install playground``, or ``shapo-jax[playground]``) has many MJX
tasks, none with a cost. ``from_playground`` wraps one of them and a cost function of
yours into a Brax ``Env`` that puts ``cost`` in ``state.info``, ready for ``register``::

    import jax.numpy as jnp
    from mujoco_playground import registry as playground
    from shapo_envs import register
    from shapo_envs.playground import from_playground

    def cart_out_of_bounds(state, action, next_state):
        return (jnp.abs(next_state.data.qpos[0]) > 0.25).astype(jnp.float32)

    register(
        "CartpoleSafe",
        lambda: from_playground(
            playground.load("CartpoleBalance", config_overrides={"impl": "jax"}), cart_out_of_bounds),
        cost_limit=25.0,
        episode_length=1000,
    )

Playground is imported only by the caller: this module works with any object that has
``MjxEnv``'s interface (``reset(rng)``, ``step(state, action)``, ``action_size``, and a
state with fields ``data, obs, reward, done, metrics, info``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State

CostFn = Callable[[Any, jax.Array, Any], jax.Array]
"""``cost_fn(state, action, next_state) -> cost``: the Playground states before and after the
step (``.data`` is the ``mjx.Data``; ``.obs``, ``.info``, ``.metrics`` as the env made them)
and the action. Called inside ``jit``/``vmap`` on one env, so it must be pure JAX; returns a
scalar (a bool is cast). The step's cost: 0 when safe, > 0 when not, e.g. 1 per unsafe step."""

PLAYGROUND_OBS_KEY = "playground_obs"
"""``state.info`` key holding Playground's own observation when it is not already a flat vector
(a dict, or an image), for envs whose ``step`` reads ``state.obs`` (observation histories)."""


class PlaygroundEnv(Env):
    """A Playground ``MjxEnv`` seen as a Brax ``Env`` with ``cost`` in ``state.info``.

    ``state.obs`` is a flat vector: Playground's array observation, or a dict observation's
    entries (``obs_keys``, default all in sorted order) flattened and concatenated.
    ``state.pipeline_state`` is the ``mjx.Data``; ``metrics`` and ``info`` are Playground's,
    with ``info["cost"]`` added (zero after ``reset``, ``cost_fn``'s value after each step).
    Actions are clipped to Playground's range [-1, 1] (``clip_actions``) before the step and
    ``cost_fn`` see them. Episodes are not ended here: the trainer truncates them after the
    registered ``episode_length`` and ends them early where Playground's ``done`` is set.
    """

    def __init__(self, env: Any, cost_fn: CostFn, *, obs_keys: Optional[Sequence[str]] = None,
                 clip_actions: bool = True, name: Optional[str] = None):
        for attribute in ("reset", "step", "action_size"):
            if not hasattr(env, attribute):
                raise TypeError(f"from_playground needs a MuJoCo Playground MjxEnv (with reset, step and "
                                f"action_size), got {type(env).__name__}")
        if not callable(cost_fn):
            raise TypeError(f"cost_fn must be callable as cost_fn(state, action, next_state), got {cost_fn!r}")
        self.playground_env = env
        self.cost_fn = cost_fn
        self.obs_keys = None if obs_keys is None else tuple(obs_keys)
        self.clip_actions = clip_actions
        self.name = name or type(env).__name__
        self._state_class: Optional[type] = None

    # -- Brax Env interface --------------------------------------------------------------

    def reset(self, rng: jax.Array) -> State:
        inner = self.playground_env.reset(rng)
        self._state_class = type(inner)  # Playground's State, rebuilt for each step
        return self._to_brax(inner, jnp.zeros_like(inner.reward))

    def step(self, state: State, action: jax.Array) -> State:
        before = self._to_playground(state)
        if self.clip_actions:  # the trainer's Gaussian actions are unbounded; Playground's are in [-1, 1]
            action = jnp.clip(action, -1.0, 1.0)
        after = self.playground_env.step(before, action)
        cost = jnp.asarray(self.cost_fn(before, action, after))
        reward = jnp.asarray(after.reward)
        if cost.shape != reward.shape:
            raise ValueError(f"{self.name}: cost_fn returned shape {cost.shape}, but the reward's shape is "
                             f"{reward.shape}; return one number per step")
        return self._to_brax(after, cost.astype(reward.dtype))

    @functools.cached_property
    def observation_size(self) -> int:
        return int(jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs.shape[-1])

    @property
    def action_size(self) -> int:
        return int(self.playground_env.action_size)

    @property
    def backend(self) -> str:
        return "mjx"

    # -- Playground's model, for users' convenience ---------------------------------------

    @property
    def dt(self) -> float:
        """Control time step of the wrapped env."""
        return self.playground_env.dt

    @property
    def mj_model(self):
        return self.playground_env.mj_model

    @property
    def mjx_model(self):
        return self.playground_env.mjx_model

    def __repr__(self) -> str:
        return f"PlaygroundEnv({self.name})"

    # -- conversion ------------------------------------------------------------------------

    def flatten_obs(self, obs: Any) -> jax.Array:
        """Playground's observation as one flat vector (what the policy sees)."""
        if isinstance(obs, Mapping):
            keys = sorted(obs) if self.obs_keys is None else self.obs_keys
            missing = [key for key in keys if key not in obs]
            if missing:
                raise KeyError(f"{self.name}: obs_keys {missing} not in the observation (keys: {sorted(obs)})")
            return jnp.concatenate([jnp.ravel(obs[key]) for key in keys])
        obs = jnp.asarray(obs)
        return obs if obs.ndim == 1 else jnp.ravel(obs)

    def _to_brax(self, inner: Any, cost: jax.Array) -> State:
        info = dict(inner.info)
        if PLAYGROUND_OBS_KEY in info or "cost" in info:
            raise ValueError(f"{self.name}: the Playground env already uses state.info key "
                             f"{'cost' if 'cost' in info else PLAYGROUND_OBS_KEY!r}")
        obs = self.flatten_obs(inner.obs)
        if isinstance(inner.obs, Mapping) or jnp.ndim(inner.obs) != 1:
            info[PLAYGROUND_OBS_KEY] = inner.obs
        info["cost"] = cost
        return State(pipeline_state=inner.data, obs=obs, reward=inner.reward, done=inner.done,
                     metrics=dict(inner.metrics), info=info)

    def _to_playground(self, state: State) -> Any:
        info = dict(state.info)
        del info["cost"]
        obs = info.pop(PLAYGROUND_OBS_KEY, state.obs)
        if self._state_class is None:  # set by reset, which a step of this env always follows
            jax.eval_shape(self.reset, jax.random.PRNGKey(0))
        return self._state_class(
            data=state.pipeline_state, obs=obs, reward=state.reward, done=state.done,
            metrics=dict(state.metrics), info=info,
        )


def from_playground(env: Any, cost_fn: CostFn, *, obs_keys: Optional[Sequence[str]] = None,
                    clip_actions: bool = True, name: Optional[str] = None) -> PlaygroundEnv:
    """Wraps a MuJoCo Playground ``MjxEnv`` and a cost function into a Brax ``Env`` with a cost.

    Args:
      env: the Playground env, e.g. ``mujoco_playground.registry.load("CartpoleBalance",
        config_overrides={"impl": "jax"})`` (``impl="jax"`` runs MJX's JAX pipeline, which
        this trainer vmaps; Playground's default for some tasks is Warp).
      cost_fn: ``cost_fn(state, action, next_state) -> scalar``; see ``CostFn``.
      obs_keys: for a dict observation, the entries the policy sees, in order (default:
        all of them, sorted by key; e.g. ``("state",)`` leaves out ``privileged_state``).
      clip_actions: clip actions to [-1, 1], Playground's action range (the trainer's are not).
      name: shown in error messages (default: the env's class name).

    Returns:
      a ``PlaygroundEnv``; register it with ``shapo_envs.register(NAME, lambda **kw:
      from_playground(...), cost_limit=..., episode_length=...)``. Take the episode length
      from Playground's config: ``mujoco_playground.registry.get_default_config(NAME).episode_length``.
    """
    return PlaygroundEnv(env, cost_fn, obs_keys=obs_keys, clip_actions=clip_actions, name=name)


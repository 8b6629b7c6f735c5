"""The registry: one front door from a task name to a Brax ``Env`` that reports a cost.

Every registered environment follows Brax's ``Env``/``State`` API and carries the per-step
cost in ``state.info["cost"]``, shaped like ``state.reward`` (one constraint), or
``state.reward.shape + (m,)`` for a task registered with m cost limits (m constraints). The
trainer reaches environments only through ``make_env``; users add their own with ``register``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence, Union

import jax
import jax.numpy as jnp
from brax.envs.base import Env


class UnknownEnvError(ValueError):
    """Raised for a task name that is not registered; the message lists the valid ones."""


class EnvCostError(ValueError):
    """Raised by ``make_env`` when a task's ``state.info`` has no ``cost`` shaped like the reward
    (plus a trailing axis of m for a task with m cost limits)."""


CostLimit = Union[float, tuple[float, ...]]  # one limit, or one per constraint (m >= 2)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What the registry knows of a task besides how to build it.

    Attributes:
      name: the registered name.
      factory: ``factory(**kwargs) -> brax.envs.Env`` with ``cost`` in ``state.info``.
      cost_limit: the default constraint threshold on the (undiscounted) episode cost: a
        float for a task with one constraint, a tuple of m floats for one whose cost has a
        trailing axis of m constraints.
      episode_length: steps after which an episode is truncated (not terminated).
      description: one line for ``--help`` and the README table.
      redraw_resets: whether the trainer draws every env's reset state afresh at each update
        (tasks whose episodes should start from new random layouts); otherwise each env
        returns to the state drawn for it once, Brax's auto-reset convention.
    """

    name: str
    factory: Callable[..., Env]
    cost_limit: CostLimit
    episode_length: int = 1000
    description: str = ""
    redraw_resets: bool = False

    @property
    def num_constraints(self) -> int:
        """m: how many constraints the task's cost reports (1 for a scalar cost)."""
        return len(self.cost_limit) if isinstance(self.cost_limit, tuple) else 1


def cost_limits(value: Any, what: str) -> CostLimit:
    """A float for one limit, a tuple of floats for several; ``ValueError`` (one line, naming
    ``what``) unless each is a finite number >= 0. A sequence of one limit is one limit."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values:
        raise ValueError(f"{what} must be a number or a sequence of numbers, got an empty sequence")
    for limit in values:
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0:
            raise ValueError(f"{what} must be finite numbers >= 0, got {value!r}")
    return float(values[0]) if len(values) == 1 else tuple(float(limit) for limit in values)


_REGISTRY: dict[str, EnvSpec] = {}
_CHECKED: set[str] = set()  # tasks whose first make_env found a well-shaped cost


def register(
    name: str,
    factory: Callable[..., Env],
    *,
    cost_limit: float | Sequence[float],
    episode_length: int = 1000,
    description: str = "",
    overwrite: bool = False,
    redraw_resets: bool = False,
) -> EnvSpec:
    """Adds a task to the registry, so that ``make_env(name)`` and ``shapo-train --env NAME`` find it.

    Any Brax ``Env`` (``reset``, ``step``, ``observation_size``, ``action_size``,
    ``backend``) can be registered if its ``reset`` and ``step`` put a ``cost`` array in
    ``state.info``, shaped like ``state.reward`` (a scalar per env: the trainer vmaps), or,
    for a task with m constraints, ``state.reward.shape + (m,)`` with m limits given.
    The first ``make_env(name)`` checks that, with ``jax.eval_shape`` (nothing compiles),
    and raises ``EnvCostError`` naming the task if not. Episodes are ended by the trainer:
    at the env's ``done`` (termination) or after ``episode_length`` steps (truncation), so
    register the bare env, not one wrapped in Brax's episode or auto-reset wrappers. For a
    MuJoCo Playground ``MjxEnv`` see ``shapo_envs.playground.from_playground``.

    To use a registered task from the command line, put the ``register`` calls in a module
    and name it: ``shapo-train --env-module mypkg.envs --env MyTask``.

    Args:
      name: the task name (``--env NAME``).
      factory: ``factory(**kwargs) -> Env``; ``make_env(name, **kwargs)`` calls it.
      cost_limit: the default threshold on the mean (undiscounted) episode cost, or a
        sequence of m thresholds, one per entry of a cost with a trailing axis of m.
      episode_length: steps after which an episode is truncated.
      description: one line for listings.
      overwrite: replace an existing task of that name instead of raising ``ValueError``.
      redraw_resets: the trainer's default for ``--redraw-resets`` on this task: draw each
        env's reset state (``reset`` with a new key) afresh at every update.

    Example:
      >>> register("MyTask", lambda **kw: MyBraxEnvWithCost(**kw), cost_limit=25.0, episode_length=500)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an environment name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"the factory of {name!r} must be callable (factory(**kwargs) -> Env), got {factory!r}")
    if not overwrite and name in _REGISTRY:
        raise ValueError(f"environment {name!r} is already registered (pass overwrite=True to replace it)")
    cost_limit = cost_limits(cost_limit, f"cost_limit of {name!r}")
    if episode_length <= 0:
        raise ValueError(f"episode_length of {name!r} must be > 0, got {episode_length}")
    spec = EnvSpec(name, factory, cost_limit, int(episode_length), description, bool(redraw_resets))
    _REGISTRY[name] = spec
    _CHECKED.discard(name)
    return spec


def list_envs() -> list[str]:
    """Names of every registered task, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> EnvSpec:
    """The ``EnvSpec`` of a registered task; ``UnknownEnvError`` lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownEnvError(
            f"unknown environment {name!r}; valid names: {', '.join(list_envs())}"
        ) from None


def make_env(name: str, **kwargs: Any) -> Env:
    """Builds a registered task. Keyword arguments go to the task's factory.

    The first build of each task checks (abstractly, nothing compiles) that ``reset`` and
    ``step`` put a ``cost`` shaped like the reward (plus ``(m,)`` for m limits) in
    ``state.info``; ``EnvCostError`` if not.
    """
    spec = get_spec(name)
    env = spec.factory(**kwargs)
    if name not in _CHECKED:
        # The built-in tasks (factories defined in this package) are covered by its tests;
        # they skip the check, which traces reset and step (~2 s for an MJX task).
        if not getattr(spec.factory, "__module__", "").startswith(__package__ + "."):
            check_cost(env, name, spec.num_constraints)
        _CHECKED.add(name)
    return env


def check_cost(env: Env, name: str = "", num_constraints: int = 1) -> None:
    """Raises ``EnvCostError`` (one line, naming the task) unless ``env.reset`` and ``env.step``
    put ``state.info["cost"]`` with the reward's shape, or ``reward.shape + (num_constraints,)``
    when there are several. Traces both with ``jax.eval_shape``."""
    label = repr(name) if name else type(env).__name__
    if not isinstance(env, Env):
        hint = "; wrap a MuJoCo Playground env with shapo_envs.playground.from_playground" if hasattr(
            env, "mjx_model") else ""
        raise EnvCostError(f"environment {label}: the factory returned {type(env).__name__}, not a brax.envs.Env{hint}")

    def check(state, method: str) -> None:
        info = getattr(state, "info", None)
        if not isinstance(info, dict) or "cost" not in info:
            keys = sorted(info) if isinstance(info, dict) else info
            raise EnvCostError(f"environment {label}: {method} returns no 'cost' in state.info (its keys: {keys}); "
                               f"every registered env must report a per-step cost shaped like the reward")
        cost_shape, reward_shape = getattr(info["cost"], "shape", None), getattr(state.reward, "shape", None)
        if num_constraints == 1 and cost_shape != reward_shape:
            raise EnvCostError(f"environment {label}: {method} returns state.info['cost'] of shape {cost_shape}, "
                               f"but the reward's shape is {reward_shape}; they must match")
        expected = None if reward_shape is None else tuple(reward_shape) + (num_constraints,)
        if num_constraints > 1 and cost_shape != expected:
            raise EnvCostError(f"environment {label}: {method} returns state.info['cost'] of shape {cost_shape}, "
                               f"but with {num_constraints} cost limits it must be {expected} (the reward's shape "
                               f"plus ({num_constraints},))")

    state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    check(state, "reset")
    action = jax.ShapeDtypeStruct((env.action_size,), jnp.float32)
    check(jax.eval_shape(env.step, state, action), "step")

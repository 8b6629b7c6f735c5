"""The registry: one front door from a task name to a Brax ``Env`` that reports a cost.

Every registered environment follows Brax's ``Env``/``State`` API and carries the per-step
cost in ``state.info["cost"]``, shaped like ``state.reward``. The trainer reaches
environments only through ``make_env``; users add their own with ``register``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from brax.envs.base import Env


class UnknownEnvError(ValueError):
    """Raised for a task name that is not registered; the message lists the valid ones."""


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What the registry knows of a task besides how to build it.

    Attributes:
      name: the registered name.
      factory: ``factory(**kwargs) -> brax.envs.Env`` with ``cost`` in ``state.info``.
      cost_limit: the default constraint threshold on the (undiscounted) episode cost.
      episode_length: steps after which an episode is truncated (not terminated).
      description: one line for ``--help`` and the README table.
    """

    name: str
    factory: Callable[..., Env]
    cost_limit: float
    episode_length: int = 1000
    description: str = ""


_REGISTRY: dict[str, EnvSpec] = {}


def register(
    name: str,
    factory: Callable[..., Env],
    *,
    cost_limit: float,
    episode_length: int = 1000,
    description: str = "",
    overwrite: bool = False,
) -> EnvSpec:
    """Adds a task to the registry.

    Any Brax ``Env`` whose ``reset``/``step`` put a ``cost`` array (shaped like the reward)
    in ``state.info`` can be registered, and is then available to ``make_env`` and to
    ``shapo-train --env NAME``.

    Example:
      >>> register("MyTask", lambda **kw: MyBraxEnvWithCost(**kw), cost_limit=25.0)
    """
    if not overwrite and name in _REGISTRY:
        raise ValueError(f"environment {name!r} is already registered (pass overwrite=True to replace it)")
    if cost_limit < 0:
        raise ValueError(f"cost_limit of {name!r} must be >= 0, got {cost_limit}")
    if episode_length <= 0:
        raise ValueError(f"episode_length of {name!r} must be > 0, got {episode_length}")
    spec = EnvSpec(name, factory, float(cost_limit), int(episode_length), description)
    _REGISTRY[name] = spec
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
    """Builds a registered task. Keyword arguments go to the task's factory."""
    return get_spec(name).factory(**kwargs)

"""SHAPO in JAX: the sharpness-aware optax transform, a jitted safe-RL trainer, safe MJX tasks.

``import shapo_jax`` and ``from shapo_jax import sharpness_aware`` load only JAX, optax and chex:
the transform is usable in any JAX code without MuJoCo, MJX or Brax. The trainer and the tasks
load on first use of their names (PEP 562 module ``__getattr__``).
"""

import importlib as _importlib

# XLA CPU flags (the scheduler that deadlocks jax 0.10, YNNPACK fusions that slow MJX 3-4x),
# set before JAX starts a backend; a user's own setting of a flag wins.
from shapo_jax import xla_flags as _xla_flags  # noqa: F401

from shapo_jax.config import ConfigError, TrainConfig, resolve, validate
from shapo_jax.sharpness import SharpnessAwareState, sharpness_aware

# name -> module that defines it, imported on first access
_LAZY = {
    **dict.fromkeys(("TrainOutput", "TrainState", "Trainer", "make_train", "make_trainer", "seed_keys"),
                    "shapo_jax.train"),
    **dict.fromkeys(("list_envs", "make_env", "register"), "shapo_envs"),
}

__all__ = ["ConfigError", "TrainConfig", "resolve", "validate", "SharpnessAwareState", "sharpness_aware", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shapo_jax' has no attribute {name!r}")
    # shapo_envs first: it silences MJX's optional-backend notice before Brax imports MJX
    _importlib.import_module("shapo_envs")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])

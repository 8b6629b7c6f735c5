"""SHAPO in JAX: the sharpness-aware optax transform, a jitted safe-RL trainer, safe MJX tasks."""

import shapo_envs  # first: it silences MJX's optional-backend notice before brax imports MJX

from shapo_jax.config import ConfigError, TrainConfig, validate
from shapo_jax.sharpness import SharpnessAwareState, sharpness_aware
from shapo_jax.train import TrainOutput, TrainState, Trainer, make_train, make_trainer, seed_keys
from shapo_envs import list_envs, make_env, register

__all__ = [
    "ConfigError", "TrainConfig", "validate", "SharpnessAwareState", "sharpness_aware",
    "TrainOutput", "TrainState", "Trainer", "make_train", "make_trainer", "seed_keys",
    "list_envs", "make_env", "register",
]

"""Safe environments for shapo_jax: Brax ``Env``s whose ``state.info`` carries a ``cost``.

Importing this package registers the built-in tasks.
"""

import contextlib as _contextlib
import io as _io
import warnings as _warnings

# XLA's CPU flags must be set before the first computation, also when this package is imported
# without shapo_jax (shapo_jax/xla_flags.py says which and why).
from shapo_jax import xla_flags as _xla_flags  # noqa: F401

# MJX prints "Failed to import warp" on import when the optional GPU backend (warp) is
# absent, which it always is on CPU; keep that out of every CLI run and test log.
with _contextlib.redirect_stdout(_io.StringIO()), _contextlib.redirect_stderr(_io.StringIO()):
    import mujoco.mjx  # noqa: F401

# Brax warns on every MJCF load that its own pipelines are unmaintained; we use only its
# Env API and MJX models, which MuJoCo maintains.
_warnings.filterwarnings("ignore", message="Brax System, piplines and environments", category=UserWarning)

from shapo_envs.registry import EnvSpec, UnknownEnvError, get_spec, list_envs, make_env, register

from shapo_envs import point_hazard as _point_hazard  # noqa: F401  (registers PointHazard)
from shapo_envs import locomotion as _locomotion  # noqa: F401  (registers the MJX tasks)
from shapo_envs import navigation as _navigation  # noqa: F401  (registers Safety{Point,Car}{Goal,Button,Push}{0,1,2})

__all__ = ["EnvSpec", "UnknownEnvError", "get_spec", "list_envs", "make_env", "register"]

"""Typed training configuration, validated before anything is compiled.

Every field is a command-line flag of ``shapo-train`` (``num_envs`` is ``--num-envs``); the
field docstrings are the ``--help`` text. ``validate`` raises ``ConfigError`` naming the
flag as the user typed it, so a bad value fails in milliseconds, not after compilation.

``resolve`` settles a config once, as MuJoCo Playground's ``default_config()`` + overrides:
preset, validation and the task's defaults (``TASK_DEFAULTS``) in one function, whose result
has no field left at "default". Every entry point runs it (``make_trainer``, ``shapo-train``,
whose config.json records the result, ``shapo-eval`` and the benchmarks).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Optional, Union

ALGORITHMS = ("ppo", "ppo_lag", "ppo_pid", "trpo_lag", "trpo_pid", "cpo", "crpo")
TRUST_REGION_ALGORITHMS = ("trpo_lag", "trpo_pid", "cpo", "crpo")
PRESETS = ("none", "paper", "paper-base")
GEOMETRIES = ("euclidean", "fisher")
OBSERVATION_NORMALIZATIONS = ("update", "step")
INITIALIZATIONS = ("orthogonal", "torch")
PHYSICS_IMPLS = ("jax", "warp")
CostLimit = Union[float, tuple[float, ...]]  # one limit, or one per constraint; the CLI reads "5,15"


class ConfigError(ValueError):
    """An invalid setting; ``flag`` is the command-line spelling of the field."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.flag = flag_name(field)
        super().__init__(f"{self.flag}: {message}")


def flag_name(field: str) -> str:
    """``num_envs`` -> ``--num-envs``, the spelling tyro gives the flag."""
    return "--" + field.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (all seeds share them)."""

    env: str = "SafetyHopperVelocity"
    """Registered task name (see ``shapo_envs.list_envs()``)."""
    env_module: Optional[str] = None
    """Python module to import first, whose ``shapo_envs.register`` calls add your own tasks for --env (e.g. mypkg.envs; the working directory is searched too)."""
    physics_impl: Literal["jax", "warp"] = "jax"
    """MJX implementation stepping tasks that offer one (the navigation tasks): jax, or warp (MuJoCo Warp, pip install 'shapo-jax[warp]'; for NVIDIA GPUs, slow on a CPU; one device). Warp keeps one contact list for --num-seeds x --num-envs worlds; vmap train over at most --num-seeds runs."""
    algo: str = "ppo_lag"
    """Algorithm: ppo (unconstrained; cost only logged), ppo_lag, ppo_pid, trpo_lag, trpo_pid (the paper's PIDLag), cpo, crpo."""
    preset: Literal["none", "paper", "paper-base"] = "none"
    """paper: the released SHAPO code's settings for the trust-region algorithms (Fisher SHAPO, target KL 1e-5; its constraint signal --cost-window 50, per-step observation statistics, PyTorch init); paper-base: the same without SHAPO. Flags left at their defaults take the preset's values."""

    rho: float = 0.0
    """SHAPO perturbation radius (0 = no sharpness step). Euclidean norm, or Fisher norm with --geometry fisher."""
    perturbation_target_kl: Optional[float] = None
    """The paper's spelling of the Fisher radius: target KL delta, rho = sqrt(2 delta) (paper: 1e-5). Fisher only."""
    geometry: Literal["euclidean", "fisher"] = "euclidean"
    """Geometry of the perturbation: euclidean (SAM) or fisher (the paper's KL geometry)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for the Fisher perturbation (paper: 10)."""
    cg_damping: float = 0.1
    """Damping added to the Fisher matrix in the perturbation solve (paper: 0.1)."""

    num_seeds: int = 1
    """Independent seeds trained at once in one compiled program (vmapped)."""
    num_envs: int = 64
    """Parallel environments per seed."""
    unroll_length: int = 256
    """Environment steps per env per update; one update consumes num_envs * unroll_length steps."""
    num_minibatches: int = 32
    """Minibatches each update's batch is split into."""
    update_epochs: int = 10
    """Passes over each update's batch."""
    total_steps: int = 983_040
    """Environment steps per seed for the whole run (a multiple of the steps per update; default 60 updates)."""
    seed: int = 0
    """Base random seed; seed i of --num-seeds uses a key split from it."""

    cost_limit: Optional[CostLimit] = None
    """Constraint threshold on the mean episode cost (default: the task's own). For a task with m constraints (its cost has m entries), m comma-separated thresholds (e.g. 5,15), or one that applies to every constraint."""
    episode_length: Optional[int] = None
    """Episode length before truncation (default: the task's own)."""
    redraw_resets: Optional[bool] = None
    """Draw every env's reset state afresh (reset with a new key) at each update, so episodes starting during it begin from a new random layout; off, each env returns to the state drawn for it once (Brax's convention). Default: the task's own (navigation tasks: on, as Safety-Gymnasium draws a layout per episode)."""

    gamma: float = 0.99
    """Discount for reward and cost."""
    gae_lambda: float = 0.95
    """GAE lambda for reward and cost (paper: 0.95)."""
    clip_epsilon: float = 0.2
    """PPO ratio clipping."""
    entropy_coefficient: float = 0.0
    """Entropy bonus weight (SafePO's PPO-Lag uses 0)."""
    actor_learning_rate: float = 3e-4
    """Adam learning rate of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam learning rate of the reward and cost critics."""
    max_grad_norm: float = 40.0
    """Global gradient-norm clip of actor and critics (SafePO: 40)."""
    multiplier_learning_rate: float = 0.035
    """Adam learning rate of the Lagrange multiplier (SafePO's PPO-Lag: 0.035)."""
    multiplier_init: float = 0.001
    """Initial Lagrange multiplier (SafePO and the paper: 0.001)."""
    critic_l2: float = 0.0
    """L2 penalty on the critics' weights added to their loss (the paper's code: 0.001)."""
    trust_region_kl: float = 0.01
    """Trust-region size (mean KL) of TRPO/CPO/CRPO steps (paper: 0.01)."""
    trust_region_cg_iters: int = 15
    """Conjugate-gradient iterations of the trust-region step (paper: 15)."""
    line_search_steps: int = 15
    """Backtracking line-search tries of the trust-region step (paper: 15, factor 0.8)."""
    pid_kp: float = 0.1
    """PID Lagrangian proportional gain (paper: 0.1)."""
    pid_ki: float = 0.01
    """PID Lagrangian integral gain (paper: 0.01)."""
    pid_kd: float = 0.01
    """PID Lagrangian derivative gain (paper: 0.01)."""
    pid_d_delay: int = 10
    """Updates between the cost EMAs the PID derivative compares (SafePO: 10)."""
    crpo_distance: float = 0.0
    """CRPO switches to reducing cost when the episode cost exceeds cost_limit + this (paper: 0)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of actor and critics (paper: 64-64 tanh)."""
    normalize_observations: bool = True
    """Running mean/std observation normalisation."""
    observation_normalization: Literal["update", "step"] = "update"
    """How the observation statistics advance (with --normalize-observations): update: once per update, after it, so the first update sees raw observations (Brax's convention); step: Gymnasium's NormalizeObservation on the vector env, updated with every step's batch of observations (from the reset ones on) before that batch is normalised, the normalised observations stored (the released code; paper presets)."""
    initialization: Literal["orthogonal", "torch"] = "orthogonal"
    """Initial weights of actor and critics: orthogonal (gain sqrt 2, actor output 0.01, zero biases; initial action means near 0) or torch (PyTorch's nn.Linear default, weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the released code; paper presets)."""
    cost_window: int = 0
    """Finished episodes the constraint signal (the multiplier's input, CPO's constraint value, CRPO's switch) averages over. 0: the mean cost of the episodes that finished in this update (the previous value if none did). K > 0: the released code's EpCost: at each episode end the mean cost of the seed's last K finished episodes, averaged over this update's episode ends; 0 until an update begins with an episode finished, and an update in which none ends leaves the multiplier as it was (paper presets: 50). With several constraints, one window per constraint."""

    checkpoint_every: int = 0
    """Save the whole training state (all seeds) every N env steps per seed, and at the end, under OUT/checkpoints/ (0 = no checkpoints; a multiple of the steps per update)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    resume: bool = False
    """Continue the run in --out from its latest checkpoint (start fresh, and say so, if there is none)."""

    out: Optional[str] = None
    """Directory for config.json, metrics.csv, TensorBoard events and summary.json."""
    compilation_cache: bool = True
    """Use JAX's persistent compilation cache (in the user cache dir) so a second run starts fast."""
    progress: bool = True
    """Show a progress bar with return, cost and steps/s."""
    wandb_project: Optional[str] = None
    """Log the resolved config and every update's metrics to this Weights & Biases project: one wandb run for all seeds, keys METRIC/seed_I and METRIC/mean at step = env steps per seed (needs pip install 'shapo-jax[wandb]'; WANDB_MODE=offline logs without network)."""
    wandb_entity: Optional[str] = None
    """Weights & Biases entity (user or team) of --wandb-project (default: yours)."""
    wandb_group: Optional[str] = None
    """Weights & Biases group, e.g. one per experiment to compare its runs side by side."""
    wandb_name: Optional[str] = None
    """Weights & Biases run name (default: wandb's)."""

    num_devices: int = 1
    """Devices to train on (0 = all, across every host): seeds are split over them, and each seed's envs too when there are fewer seeds than devices."""
    coordinator_address: Optional[str] = None
    """Multi-host: host:port of process 0 for jax.distributed (default: JAX_COORDINATOR_ADDRESS or the cluster's, e.g. SLURM)."""
    num_processes: Optional[int] = None
    """Multi-host: how many processes take part (default: from the cluster)."""
    process_id: Optional[int] = None
    """Multi-host: this process's index, 0 to num_processes - 1 (default: from the cluster). Only process 0 writes files."""
    distributed: bool = False
    """Multi-host: join a jax.distributed run even without the three flags above (cluster auto-detection)."""

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.unroll_length

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.steps_per_update

    @property
    def minibatch_size(self) -> int:
        return self.steps_per_update // self.num_minibatches

    @property
    def perturbation_radius(self) -> float:
        """rho, whichever way it was given (sqrt(2 delta) for a target KL)."""
        if self.perturbation_target_kl is not None:
            return math.sqrt(2.0 * self.perturbation_target_kl)
        return self.rho

    @property
    def uses_sharpness(self) -> bool:
        return self.perturbation_target_kl is not None or self.rho > 0

    @property
    def multi_host(self) -> bool:
        """Whether this run joins a jax.distributed group."""
        return self.distributed or any(
            value is not None for value in (self.coordinator_address, self.num_processes, self.process_id))


PAPER_PRESET = dict(
    # The released SHAPO code's defaults (montrealrobotics/shapo@1bb7704 safepo/utils/config.py
    # ``single_agent_args`` and its README's commands): 20k steps per update,
    # 10M steps, 64-64 tanh networks, trust region 0.01, GAE 0.95, PID 0.1/0.01/0.01 from
    # lambda 0.001, cost limit 10, critics fitted 10 epochs in minibatches of ~128 (125 here,
    # so that they divide 20k) with Adam 1e-3, L2 0.001 and gradient clip 40.
    num_envs=20,
    unroll_length=1000,
    total_steps=10_000_000,
    update_epochs=10,
    num_minibatches=160,
    critic_learning_rate=1e-3,
    critic_l2=0.001,
    max_grad_norm=40.0,
    gamma=0.99,
    gae_lambda=0.95,
    trust_region_kl=0.01,
    trust_region_cg_iters=15,
    line_search_steps=15,
    pid_kp=0.1,
    pid_ki=0.01,
    pid_kd=0.01,
    multiplier_init=0.001,
    cost_limit=10.0,
    hidden_sizes=(64, 64),
    cg_iters=10,
    cg_damping=0.1,
    # The released code's constraint signal and early training: its logger's EpCost (a mean
    # over the last 50 episodes), Gymnasium's per-step NormalizeObservation, PyTorch init.
    cost_window=50,
    observation_normalization="step",
    initialization="torch",
)
SHAPO_PAPER_RADIUS = dict(geometry="fisher", perturbation_target_kl=1e-5)


def apply_preset(config: TrainConfig) -> TrainConfig:
    """Fills the fields still at their defaults with the preset's values.

    A flag given explicitly with a non-default value wins over the preset.
    """
    if config.preset == "none":
        return config
    values = dict(PAPER_PRESET)
    if config.preset == "paper" and config.rho == 0:
        values.update(SHAPO_PAPER_RADIUS)
    defaults = TrainConfig()
    changes = {name: value for name, value in values.items() if getattr(config, name) == getattr(defaults, name)}
    return dataclasses.replace(config, **changes)


# Fields whose None means "the task's own" (its ``shapo_envs.EnvSpec``); ``resolve`` fills them.
TASK_DEFAULTS = ("cost_limit", "episode_length", "redraw_resets")


def resolve(config: TrainConfig) -> TrainConfig:
    """The fully resolved config every entry point runs: ``--env-module`` imported, the preset
    applied, every field validated, and the task defaults filled from the registry.

    The one place where "default" turns into a value: afterwards ``cost_limit`` is a float
    (or a tuple of m floats for a task whose cost has m constraints; one limit given applies
    to all), ``episode_length`` an int and ``redraw_resets`` a bool, and ``hidden_sizes`` a
    tuple (a config read back from JSON has lists). Idempotent: ``resolve(resolve(c)) ==
    resolve(c)``, so a recorded config.json resolves to itself. ``ConfigError`` naming the
    first bad flag, before anything compiles. Needs the task registry (``shapo_envs``, which
    loads MuJoCo and Brax), imported here on first use so that this module stays light.
    """
    import shapo_envs

    import_env_module(config)
    config = validate(apply_preset(config), shapo_envs.list_envs())
    spec = shapo_envs.get_spec(config.env)
    check_physics_impl(config, spec)
    return dataclasses.replace(
        config,
        cost_limit=resolve_cost_limit(config, spec),
        episode_length=spec.episode_length if config.episode_length is None else int(config.episode_length),
        redraw_resets=spec.redraw_resets if config.redraw_resets is None else bool(config.redraw_resets),
        hidden_sizes=tuple(config.hidden_sizes),
    )


def physics_options(config: TrainConfig) -> dict:
    """``make_env`` options for ``--physics-impl``: none for jax (every task's default), so
    tasks without the option build as always; Warp also takes the most worlds stepped at once."""
    if config.physics_impl == "jax":
        return {}
    return {"physics_impl": config.physics_impl, "max_worlds": config.num_seeds * config.num_envs}


def check_physics_impl(config: TrainConfig, spec) -> None:
    """``ConfigError`` naming ``--physics-impl`` when the task has no such option or Warp cannot
    run here (not installed, a backend it has no kernels for), before anything compiles."""
    if config.physics_impl == "jax":
        return
    import inspect

    if "physics_impl" not in inspect.signature(spec.factory).parameters:
        raise ConfigError("physics_impl", f"{config.env} has one physics implementation; {config.physics_impl!r} "
                                          f"steps the navigation tasks (Safety...Goal/Button/Push)")
    from shapo_envs.navigation import physics

    try:
        physics.check_impl(config.physics_impl, max_worlds=physics_options(config)["max_worlds"])
    except ValueError as error:
        raise ConfigError("physics_impl", str(error).removeprefix("physics_impl: ")) from None


def resolve_cost_limit(config: TrainConfig, spec) -> CostLimit:
    """``--cost-limit`` for the task ``spec`` (a ``shapo_envs.EnvSpec``), else the task's own.

    A float for a task with one constraint, a tuple of m floats for one whose cost has m
    entries (``spec.num_constraints``); one limit given for such a task applies to every
    constraint. ``ConfigError`` naming ``--cost-limit`` for another count, and naming ``--algo``
    for CPO with m > 1 (its dual solve handles one constraint).
    """
    m = spec.num_constraints
    if m > 1 and config.algo == "cpo":
        raise ConfigError("algo", f"cpo solves for one constraint and {config.env} has {m}; use ppo_lag, ppo_pid, "
                                  f"trpo_lag, trpo_pid or crpo")
    if config.cost_limit is None:
        return spec.cost_limit
    given = tuple(config.cost_limit) if isinstance(config.cost_limit, (tuple, list)) else (config.cost_limit,)
    if len(given) not in (1, m):
        cost = "a scalar cost" if m == 1 else f"a cost of {m} constraints"
        expected = "one limit" if m == 1 else f"one limit (for all) or {m}"
        raise ConfigError("cost_limit", f"{config.env} has {cost}: give {expected}, got {len(given)} "
                                        f"({','.join(f'{x:g}' for x in given)})")
    if m == 1:
        return float(given[0])
    return tuple(float(x) for x in (given * m if len(given) == 1 else given))


def from_record(recorded: dict) -> TrainConfig:
    """The ``TrainConfig`` of a config.json's contents: its known fields (an older file may
    lack some, which take their defaults, or hold nulls for task defaults, which ``resolve``
    fills); the derived entries (``num_updates``, ``device``, ...) are left out."""
    values = {f.name: recorded[f.name] for f in dataclasses.fields(TrainConfig) if f.name in recorded}
    if "hidden_sizes" in values:
        values["hidden_sizes"] = tuple(values["hidden_sizes"])
    if isinstance(values.get("cost_limit"), list):
        values["cost_limit"] = tuple(values["cost_limit"])
    return TrainConfig(**values)


def import_env_module(config: TrainConfig) -> None:
    """Imports ``config.env_module`` (if set), so that its ``register`` calls add tasks to the
    registry before ``--env`` is looked up; ``ConfigError`` naming ``--env-module`` if it fails."""
    if config.env_module is None:
        return
    import importlib
    import os
    import sys

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as ``python -m``: a module beside the run imports
    try:
        importlib.import_module(config.env_module)
    except Exception as error:  # the user's code: report any failure in one line
        raise ConfigError("env_module", f"cannot import {config.env_module!r}: {type(error).__name__}: {error}") from error


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(field, message)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def validate(config: TrainConfig, known_envs: Optional[list[str]] = None) -> TrainConfig:
    """Checks every field; raises ``ConfigError`` naming the first bad flag.

    Runs before any compilation. ``known_envs`` (the registry's names) enables the env check.
    """
    c = config
    if known_envs is not None:
        _require(c.env in known_envs, "env", f"unknown environment {c.env!r}; valid: {', '.join(known_envs)}")
    _require(c.algo in ALGORITHMS, "algo", f"unknown algorithm {c.algo!r}; valid: {', '.join(ALGORITHMS)}")
    _require(c.geometry in GEOMETRIES, "geometry", f"must be one of {', '.join(GEOMETRIES)}, got {c.geometry!r}")
    _require(_finite(c.rho) and c.rho >= 0, "rho", f"must be a finite number >= 0, got {c.rho}")
    if c.perturbation_target_kl is not None:
        _require(
            _finite(c.perturbation_target_kl) and c.perturbation_target_kl > 0,
            "perturbation_target_kl",
            f"must be a finite number > 0, got {c.perturbation_target_kl}",
        )
        _require(c.rho == 0, "perturbation_target_kl", "give the radius as --rho or as --perturbation-target-kl, not both")
        _require(c.geometry == "fisher", "perturbation_target_kl", "is a Fisher (KL) radius; use it with --geometry fisher, or give --rho")
    _require(c.observation_normalization in OBSERVATION_NORMALIZATIONS, "observation_normalization",
             f"must be one of {', '.join(OBSERVATION_NORMALIZATIONS)}, got {c.observation_normalization!r}")
    _require(c.initialization in INITIALIZATIONS, "initialization",
             f"must be one of {', '.join(INITIALIZATIONS)}, got {c.initialization!r}")
    _require(isinstance(c.cost_window, int) and c.cost_window >= 0, "cost_window",
             f"must be an integer >= 0 (0 = this update's episodes), got {c.cost_window}")
    _require(c.physics_impl in PHYSICS_IMPLS, "physics_impl",
             f"must be one of {', '.join(PHYSICS_IMPLS)}, got {c.physics_impl!r}")
    _require(c.physics_impl == "jax" or c.num_devices == 1, "physics_impl",
             f"'warp' keeps one contact list for all the worlds it steps, so it runs on one device; "
             f"pass --num-devices 1, got {c.num_devices}")
    _require(c.preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}, got {c.preset!r}")
    for name in ("num_seeds", "num_envs", "unroll_length", "num_minibatches", "update_epochs", "total_steps", "cg_iters",
                 "trust_region_cg_iters", "line_search_steps", "pid_d_delay"):
        value = getattr(c, name)
        _require(isinstance(value, int) and value > 0, name, f"must be a positive integer, got {value}")
    _require(isinstance(c.seed, int) and -2**63 <= c.seed < 2**63, "seed",
             f"must be an integer in [-2**63, 2**63) (jax.random.PRNGKey takes an int64), got {c.seed}")
    _require(
        c.steps_per_update % c.num_minibatches == 0,
        "num_minibatches",
        f"must divide --num-envs * --unroll-length = {c.steps_per_update}, got {c.num_minibatches}",
    )
    _require(
        c.total_steps % c.steps_per_update == 0,
        "total_steps",
        f"must be a multiple of --num-envs * --unroll-length = {c.steps_per_update}, got {c.total_steps}",
    )
    for name in ("gamma", "gae_lambda"):
        value = getattr(c, name)
        _require(_finite(value) and 0 <= value <= 1, name, f"must be in [0, 1], got {value}")
    for name in ("clip_epsilon", "actor_learning_rate", "critic_learning_rate", "max_grad_norm", "multiplier_learning_rate",
                 "trust_region_kl"):
        value = getattr(c, name)
        _require(_finite(value) and value > 0, name, f"must be a finite number > 0, got {value}")
    for name in ("entropy_coefficient", "multiplier_init", "cg_damping", "critic_l2", "pid_kp", "pid_ki", "pid_kd",
                 "crpo_distance"):
        value = getattr(c, name)
        _require(_finite(value) and value >= 0, name, f"must be a finite number >= 0, got {value}")
    if isinstance(c.cost_limit, (tuple, list)):
        _require(len(c.cost_limit) > 0 and all(_finite(x) and x >= 0 for x in c.cost_limit), "cost_limit",
                 f"must be finite numbers >= 0, got {','.join(map(str, c.cost_limit)) or 'none'}")
    elif c.cost_limit is not None:
        _require(_finite(c.cost_limit) and c.cost_limit >= 0, "cost_limit", f"must be a finite number >= 0, got {c.cost_limit}")
    if c.episode_length is not None:
        _require(c.episode_length > 0, "episode_length", f"must be a positive integer, got {c.episode_length}")
    _require(len(c.hidden_sizes) > 0 and all(h > 0 for h in c.hidden_sizes), "hidden_sizes", f"must be positive widths, got {c.hidden_sizes}")
    _require(isinstance(c.checkpoint_every, int) and c.checkpoint_every >= 0, "checkpoint_every", f"must be an integer >= 0, got {c.checkpoint_every}")
    _require(
        c.checkpoint_every % c.steps_per_update == 0,
        "checkpoint_every",
        f"must be a multiple of --num-envs * --unroll-length = {c.steps_per_update}, got {c.checkpoint_every}",
    )
    _require(c.checkpoint_every == 0 or c.out is not None, "checkpoint_every", "needs --out DIR to write the checkpoints into")
    _require(isinstance(c.keep_checkpoints, int) and c.keep_checkpoints > 0, "keep_checkpoints", f"must be a positive integer, got {c.keep_checkpoints}")
    _require(not c.resume or c.out is not None, "resume", "needs --out DIR, the run to continue")
    if c.wandb_project is not None:
        _require(c.wandb_project.strip() != "", "wandb_project", "must be a project name, got an empty one")
    for name in ("wandb_entity", "wandb_group", "wandb_name"):
        _require(getattr(c, name) is None or c.wandb_project is not None, name, "needs --wandb-project NAME")
    _require(isinstance(c.num_devices, int) and c.num_devices >= 0, "num_devices", f"must be an integer >= 0 (0 = all), got {c.num_devices}")
    if c.num_processes is not None:
        _require(c.num_processes > 0, "num_processes", f"must be a positive integer, got {c.num_processes}")
    if c.process_id is not None:
        limit = c.num_processes if c.num_processes is not None else float("inf")
        _require(0 <= c.process_id < limit, "process_id", f"must be in [0, --num-processes), got {c.process_id}")
    return c

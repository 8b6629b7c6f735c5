"""Safety-Gymnasium 1.0.0's navigation suite on MJX: ``Safety{Point,Car}{Goal,Button,Push}{0,1,2}``.

Robots (``robots.py``), MJCF assembly (``world.py``), layouts (``layout.py``), pseudo-lidar
(``lidar.py``), per-task constants from SG (``tasks.py``) and the Brax env (``env.py``).

Tasks with two or more costing kinds of object (Goal2, Button1/2, Push2) also come as
``...Split`` (e.g. ``SafetyPointGoal2Split``): the same task with one constraint per kind,
``state.info["cost"]`` of shape ``(m,)``, each SG's indicator for its kind, in
``tasks.COST_KINDS`` order (hazards, vases, gremlins, buttons, pillars), each with the
suite's cost limit.
"""

from __future__ import annotations

from shapo_envs.navigation.tasks import task_spec
from shapo_envs.registry import register

ROBOT_NAMES = ("Point", "Car")
KINDS = ("Goal", "Button", "Push")
LEVELS = (0, 1, 2)
COST_LIMIT = 25.0  # SafePO / OmniSafe default for the navigation suite
EPISODE_LENGTH = 1000  # SG bases/base_task.py BaseTask.num_steps
SPLIT_SUFFIX = "Split"

NAMES = tuple(f"Safety{r}{k}{lv}" for r in ROBOT_NAMES for k in KINDS for lv in LEVELS)
# (robot, kind, level) of every task with >= 2 costing kinds: these have a Split variant
_SPLIT_TASKS = tuple((r, k, lv) for r in ROBOT_NAMES for k in KINDS for lv in LEVELS
                     if len(task_spec(k, lv, r).cost_kinds) >= 2)
SPLIT_NAMES = tuple(f"Safety{r}{k}{lv}{SPLIT_SUFFIX}" for r, k, lv in _SPLIT_TASKS)


def _factory(robot: str, kind: str, level: int, split_cost: bool = False):
    def factory(backend: str = "mjx", physics_impl: str = "jax", max_worlds: int | None = None, **kwargs):
        if backend != "mjx" or kwargs:
            raise ValueError(f"navigation tasks take no options besides backend='mjx', physics_impl and "
                             f"max_worlds, got {backend!r}, {kwargs}")
        from shapo_envs.navigation.env import NavigationEnv  # MJCF is built on first use only

        return NavigationEnv(robot, kind, level, split_cost=split_cost, physics_impl=physics_impl,
                             max_worlds=max_worlds)

    return factory


def _description(robot: str, kind: str, level: int) -> str:
    spec = task_spec(kind, level, robot)
    costly = [f"{o.num} {o.name}" for o in spec.objects if o.constrained]
    free = [f"{o.num} {o.name}" for o in spec.objects if not o.constrained and o.name not in ("goal", "push_box")]
    what = {"Goal": "reach goals", "Button": "press the goal button", "Push": "push the box to goals"}[kind]
    text = f"SG {robot} {what}, arena +-{spec.extents[2]:g}; cost: " + (", ".join(costly) or "none")
    return text + (f"; no cost: {', '.join(free)}" if free else "")


for _robot in ROBOT_NAMES:
    for _kind in KINDS:
        for _level in LEVELS:
            register(
                f"Safety{_robot}{_kind}{_level}",
                _factory(_robot, _kind, _level),
                cost_limit=COST_LIMIT,
                episode_length=EPISODE_LENGTH,
                description=_description(_robot, _kind, _level),
                redraw_resets=True,  # SG draws a new layout every episode
            )

for _robot, _kind, _level in _SPLIT_TASKS:
    _kinds = task_spec(_kind, _level, _robot).cost_kinds
    register(
        f"Safety{_robot}{_kind}{_level}{SPLIT_SUFFIX}",
        _factory(_robot, _kind, _level, split_cost=True),
        cost_limit=(COST_LIMIT,) * len(_kinds),  # one per constraint: cost of shape (m,)
        episode_length=EPISODE_LENGTH,
        description=_description(_robot, _kind, _level) + f"; one constraint per kind: {', '.join(_kinds)}",
        redraw_resets=True,
    )

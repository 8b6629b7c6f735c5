"""Safety-Gymnasium 1.0.0's navigation suite on MJX: ``Safety{Point,Car}{Goal,Button,Push}{0,1,2}``.

Robots (``robots.py``), MJCF assembly (``world.py``), layouts (``layout.py``), pseudo-lidar
(``lidar.py``), per-task constants from SG (``tasks.py``) and the Brax env (``env.py``).
"""

from __future__ import annotations

from shapo_envs.registry import register

ROBOT_NAMES = ("Point", "Car")
KINDS = ("Goal", "Button", "Push")
LEVELS = (0, 1, 2)
COST_LIMIT = 25.0  # SafePO / OmniSafe default for the navigation suite
EPISODE_LENGTH = 1000  # SG bases/base_task.py BaseTask.num_steps

NAMES = tuple(f"Safety{r}{k}{lv}" for r in ROBOT_NAMES for k in KINDS for lv in LEVELS)


def _factory(robot: str, kind: str, level: int):
    def factory(**kwargs):
        backend = kwargs.pop("backend", "mjx")
        if backend != "mjx" or kwargs:
            raise ValueError(f"navigation tasks take no options besides backend='mjx', got {backend!r}, {kwargs}")
        from shapo_envs.navigation.env import NavigationEnv  # MJCF is built on first use only

        return NavigationEnv(robot, kind, level)

    return factory


def _description(robot: str, kind: str, level: int) -> str:
    from shapo_envs.navigation.tasks import task_spec

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

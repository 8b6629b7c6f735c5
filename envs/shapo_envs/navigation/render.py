"""Frames of a navigation episode: the physics model plus what the physics does not hold.

Goals and hazards are not in the MJX model (world.py: they are geometric, computed by the
env), so MuJoCo's renderer alone would show neither. Each frame here is drawn by MuJoCo's
offscreen ``Renderer`` from the model and the step's ``qpos``/``mocap_pos`` (robot, vases,
push box, pillars, buttons, gremlins where they are), then *scene decorations* are added:
visual-only geoms appended to ``scene.geoms`` (``mjv_initGeom``) from the env state of that
step, so nothing in the model changes and a goal that moves is drawn where it is.

What is drawn, with Safety-Gymnasium's geometry and colours (SG ``assets/color.py``,
``assets/geoms/{hazards,goal}.py``):

* hazards: blue discs of the hazard radius at the reset layout's positions;
* the goal: a green cylinder of the goal radius (in Button tasks, around the goal button);
* buttons while the button timer runs (SG hides them from the lidar then): drawn grey;
* the step's cost: the robot turns red and a red halo surrounds it on every step whose
  cost is > 0, and a caption gives the step and the episode's cost so far.

The floor of the robot files has MuJoCo's default geom colour, the robot's own; it is
drawn light grey (SG's world.py gives it a texture instead). ``decorations`` and
``colour_overrides`` are pure functions of the state (tested without OpenGL); ``render``
needs an OpenGL context (``MUJOCO_GL=egl`` or ``osmesa`` headless).
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import mujoco
import numpy as np

from shapo_envs.navigation.env import NavigationEnv

# SG assets/color.py (alpha raised from SG's 0.25 / 0.1 so they show at small sizes)
HAZARD_RGBA = (0.0, 0.0, 1.0, 0.6)
GOAL_RGBA = (0.0, 1.0, 0.0, 0.5)
HAZARD_HALF_HEIGHT, HAZARD_Z = 1e-2, 2e-2  # SG hazards.py: size [r, 1e-2] at z 2e-2
# ours: how a costly step and a timed-out button look, and the floor
COST_RGBA = (1.0, 0.0, 0.0, 1.0)
HALO_RGBA = (1.0, 0.0, 0.0, 0.35)
HALO_RADIUS = 0.3
HIDDEN_BUTTON_RGBA = (0.5, 0.5, 0.5, 0.4)
FLOOR_RGBA = (0.75, 0.75, 0.75, 1.0)
HEADLIGHT_AMBIENT, HEADLIGHT_DIFFUSE = (0.4,) * 3, (0.7,) * 3  # MuJoCo's: 0.1, 0.4


class Decoration(NamedTuple):
    """One visual-only geom: MuJoCo geom type, size (3), position (3), colour (4); axis-aligned."""

    kind: int
    size: tuple[float, float, float]
    pos: tuple[float, float, float]
    rgba: tuple[float, float, float, float]


class Frame(NamedTuple):
    """What one frame shows, read from one env state (numpy)."""

    qpos: np.ndarray
    mocap_pos: np.ndarray
    mocap_quat: np.ndarray
    layout: np.ndarray  # [slots, 2]: the agent, then every object instance (env.py)
    goal: np.ndarray  # [2]
    timer: int  # button timer (0 outside Button tasks)
    cost: float  # this step's cost
    episode_cost: float  # the episode's cost up to and including this step
    step: int


def renders(env: Any) -> bool:
    """Whether ``env`` (or what it wraps) is a navigation task drawn by this module."""
    return isinstance(getattr(env, "unwrapped", env), NavigationEnv)


def frames_of(states: Any) -> list[Frame]:
    """One ``Frame`` per env state of ``states`` (a ``State`` stacked along time, numpy or JAX),
    with the episode's cost summed from the first. A Split task's per-kind costs [T, m] count as
    one cost per step, 1 where any kind costs (the summed task's indicator)."""
    data, info = states.pipeline_state, states.info
    costs = np.asarray(info["cost"], np.float64)
    if costs.ndim > 1:
        costs = costs.max(axis=-1)
    episode_costs = np.cumsum(costs)
    timers = np.asarray(info["timer"]) if "timer" in info else np.zeros(len(costs), np.int32)
    qpos, mocap_pos, mocap_quat = (np.asarray(x) for x in (data.qpos, data.mocap_pos, data.mocap_quat))
    layout, goal = np.asarray(info["layout"]), np.asarray(info["goal"])
    return [Frame(qpos[t], mocap_pos[t], mocap_quat[t], layout[t], goal[t], int(timers[t]), float(costs[t]),
                  float(episode_costs[t]), t) for t in range(len(costs))]


def decorations(env: NavigationEnv, frame: Frame, agent_xy: np.ndarray) -> list[Decoration]:
    """The visual-only geoms of one frame: hazards, the goal, and the cost halo if the step cost."""
    cylinder, sphere = int(mujoco.mjtGeom.mjGEOM_CYLINDER), int(mujoco.mjtGeom.mjGEOM_SPHERE)
    out = []
    hazards = env.spec.object("hazards")
    if hazards is not None:
        for x, y in frame.layout[env._slots["hazards"]]:
            out.append(Decoration(cylinder, (hazards.size, HAZARD_HALF_HEIGHT, 0.0),
                                  (float(x), float(y), HAZARD_Z), HAZARD_RGBA))
    goal = env.spec.object("goal").size  # SG goal.py: size [r, r / 2] at z r / 2 + 1e-2
    out.append(Decoration(cylinder, (goal, goal / 2, 0.0),
                          (float(frame.goal[0]), float(frame.goal[1]), goal / 2 + 1e-2), GOAL_RGBA))
    if frame.cost > 0:
        out.append(Decoration(sphere, (HALO_RADIUS,) * 3, (float(agent_xy[0]), float(agent_xy[1]), 0.1), HALO_RGBA))
    return out


def colour_overrides(env: NavigationEnv, frame: Frame) -> dict[int, tuple[float, float, float, float]]:
    """Model geom id -> colour to draw it in this frame: the floor; the robot on a costly step;
    the buttons while the timer hides them."""
    m = env.mj_model
    out = {mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "floor"): FLOOR_RGBA}
    if frame.cost > 0:
        out.update({int(g): COST_RGBA for g in _agent_geoms(env)})
    if frame.timer > 0 and "buttons" in env._mocap:
        for name in env.spec.object("buttons").instance_names:
            out[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)] = HIDDEN_BUTTON_RGBA
    return out


def _agent_geoms(env: NavigationEnv) -> np.ndarray:
    m = env.mj_model
    return np.flatnonzero(m.body_rootid[m.geom_bodyid] == env._agent)


def camera(env: NavigationEnv) -> mujoco.MjvCamera:
    """A fixed free camera that sees the whole placement area from above and to the south."""
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.lookat[:] = (0.0, 0.0, 0.0)
    cam.distance = 2.5 * env.spec.extents[2] + 1.0
    cam.azimuth, cam.elevation = 90.0, -65.0
    return cam


def add_decorations(scene: mujoco.MjvScene, items: list[Decoration]) -> None:
    """Appends visual-only geoms to a scene already filled by ``Renderer.update_scene``."""
    if scene.ngeom + len(items) > scene.maxgeom:
        raise RuntimeError(f"scene holds {scene.maxgeom} geoms; {scene.ngeom + len(items)} needed")
    identity = np.eye(3).ravel()
    for item in items:
        mujoco.mjv_initGeom(scene.geoms[scene.ngeom], item.kind, np.asarray(item.size, np.float64),
                            np.asarray(item.pos, np.float64), identity, np.asarray(item.rgba, np.float32))
        scene.ngeom += 1


def recolour(scene: mujoco.MjvScene, overrides: dict[int, tuple[float, float, float, float]]) -> None:
    """Sets the colour of the scene's geoms drawn from the given model geoms."""
    for i in range(scene.ngeom):
        geom = scene.geoms[i]
        if geom.objtype == mujoco.mjtObj.mjOBJ_GEOM and geom.objid in overrides:
            geom.rgba[:] = overrides[geom.objid]


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``text`` written in its top-left corner (black on a white band)."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = draw.textbbox((4, 2), text)
    draw.rectangle((0, 0, right + 4, bottom + 2), fill=(255, 255, 255))
    draw.text((4, 2), text, fill=(0, 0, 0))
    return np.asarray(picture)


def render(env: Any, frames: list[Frame], height: int = 240, width: int = 320) -> np.ndarray:
    """Draws ``frames`` of a navigation task: ``[len(frames), height, width, 3]`` uint8."""
    env = getattr(env, "unwrapped", env)
    m = copy.deepcopy(env.mj_model)  # the robot files have no light: a brighter headlight, here only
    m.vis.headlight.ambient[:], m.vis.headlight.diffuse[:] = HEADLIGHT_AMBIENT, HEADLIGHT_DIFFUSE
    d = mujoco.MjData(m)
    cam = camera(env)
    out = np.zeros((len(frames), height, width, 3), np.uint8)
    renderer = mujoco.Renderer(m, height=height, width=width)
    try:
        for i, frame in enumerate(frames):
            d.qpos[:], d.mocap_pos[:], d.mocap_quat[:] = frame.qpos, frame.mocap_pos, frame.mocap_quat
            mujoco.mj_kinematics(m, d)
            renderer.update_scene(d, camera=cam)
            recolour(renderer.scene, colour_overrides(env, frame))
            add_decorations(renderer.scene, decorations(env, frame, d.xpos[env._agent][:2]))
            text = f"step {frame.step}  cost {frame.episode_cost:g}" + ("  (costly step)" if frame.cost > 0 else "")
            out[i] = caption(renderer.render(), text)
    finally:
        renderer.close()
    return out


"""Safety-Gymnasium's navigation tasks (Goal, Button, Push; levels 0-2) as a Brax ``Env`` on MJX.

One step follows SG builder.py ``Builder.step``: the action (clipped to the actuator range)
is held for ``robot.frameskip`` physics steps (SG bases/underlying.py: binomial(10, 1.0) = 10),
gremlins are moved before each of them (SG ``mocap.move()``), then one ``forward`` makes
positions, contacts and sensors current (SG calls ``mj_forward``). Then, in SG's order:
reward, cost, the button timer, and on reaching the goal a new goal (``continue_goal``).

``state.info``: ``cost`` (SG's indicator ``float(cost_sum > 0)``), ``cost_<kind>`` for each
constrained object kind (SG's ``cost_hazards``, ``cost_vases``, ``cost_gremlins``,
``cost_buttons``, ``cost_pillars``: the kind's cost before the indicator; SG reports vases as
``cost_vases_contact`` + ``cost_vases_velocity``, summed here), ``goal_met`` (1.0 on the
step the goal is reached), ``rng`` (for new goals), ``layout`` (the reset layout: agent,
then every object instance), ``goal`` (goal XY), ``last_dist_goal`` and, per task,
``last_dist_box`` / ``last_box_goal`` (Push) or ``goal_button`` / ``timer`` (Button).
With ``split_cost=True`` (the ``...Split`` tasks) ``cost`` is instead a vector, one indicator
``float(cost_<kind> > 0)`` per constrained kind in ``tasks.COST_KINDS`` order; both forms are
made from the same per-kind values (``_cost_values``), so ``any(split > 0)`` is the indicator.
The episode ends (``done``) only when no new goal can be placed, as SG's
``terminate_resample_failure``; the 1000-step limit is the trainer's truncation.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.base import Env, State
from mujoco import mjx

from shapo_envs.navigation import layout, lidar, physics, tasks, world
from shapo_envs.navigation.robots import ROBOTS

# geom kinds whose contacts with the agent matter (index into the per-geom kind table)
_VASE, _PILLAR, _GREMLIN, _BUTTON = 1, 2, 3, 4
_KIND_OF = {"vases": _VASE, "pillars": _PILLAR, "gremlins": _GREMLIN, "buttons": _BUTTON}


def _id(m, obj, name):
    i = mujoco.mj_name2id(m, obj, name)
    if i < 0:
        raise ValueError(f"{name!r} not found in the navigation world")
    return i


def _yaw_quat(yaw):
    """SG utils/common_utils.py ``rot2quat``: (w, x, y, z) of a rotation about z."""
    return jnp.stack([jnp.cos(yaw / 2), jnp.zeros_like(yaw), jnp.zeros_like(yaw), jnp.sin(yaw / 2)], -1)


class NavigationEnv(Env):
    """``Safety{robot}{kind}{level}`` (see the module docstring)."""

    def __init__(self, robot: str, kind: str, level: int, reference_physics: bool = False,
                 split_cost: bool = False, physics_impl: str = "jax", max_worlds: int | None = None):
        """``reference_physics=True`` steps Safety-Gymnasium's physics without the fast world's
        edits (world.py ``reference``): slower, for measuring what those edits change.
        ``split_cost=True`` reports one cost per constrained object kind (``cost_kinds``) as
        ``info["cost"]`` of shape ``(len(cost_kinds),)``; tasks with fewer than two such kinds
        raise ``ValueError``. ``physics_impl="warp"`` steps the same model with MJX's Warp
        implementation (``physics.py``); it allocates contacts for all worlds stepped
        together, so it needs ``max_worlds``, the most envs stepped in one batch."""
        physics.check_impl(physics_impl, max_worlds)
        self.physics_impl = physics_impl
        self.robot = ROBOTS[robot]
        self.spec = tasks.task_spec(kind, level, robot)
        self.kind = kind
        self.cost_kinds = self.spec.cost_kinds
        if split_cost and len(self.cost_kinds) < 2:
            raise ValueError(
                f"split_cost: Safety{robot}{kind}{level} has {len(self.cost_kinds)} costing kind(s) of object "
                f"({', '.join(self.cost_kinds) or 'none'}); a split cost needs two or more")
        self.split_cost = bool(split_cost)
        warp = physics_impl == "warp"
        self.mj_model, self.excluded_pairs = world.build_model(self.robot, self.spec, reference_physics,
                                                               touch_sensors=warp)
        if warp:
            self.sys, self._sys_without_sensors, self._data0 = physics.warp_models(self.mj_model, max_worlds)
        else:
            self.sys = mjx.put_model(self.mj_model)
            self._sys_without_sensors = self.sys.replace(
                opt=self.sys.opt.replace(disableflags=self.sys.opt.disableflags | mjx.DisableBit.SENSOR))
        m = self.mj_model
        self._set_pose = self.robot.pose_setter(m)
        self._read_sensors = self.robot.sensor_reader(m)
        self._agent = _id(m, mujoco.mjtObj.mjOBJ_BODY, "agent")
        self._ctrl_range = jnp.asarray(m.actuator_ctrlrange, jnp.float32)

        # layout slots: the agent, then every object instance in SG's order
        keepouts, self._slots = [self.robot.placement_keepout], {}
        for obj in self.spec.objects:
            self._slots[obj.name] = np.arange(len(keepouts), len(keepouts) + obj.num)
            keepouts += [obj.keepout] * obj.num
        self._keepouts = np.asarray(keepouts, np.float32)
        self._goal_slot = int(self._slots["goal"][0])
        self._others = np.array([i for i in range(len(keepouts)) if i != self._goal_slot])

        # object handles in the model
        names = {o.name: o.instance_names for o in self.spec.objects}
        self._free = {}  # name -> (body ids, qpos addresses, dof addresses) of the movable objects
        for name in ("vases", "push_box"):
            if name in names:
                bodies = np.array([_id(m, mujoco.mjtObj.mjOBJ_BODY, n) for n in names[name]])
                joints = m.body_jntadr[bodies]
                self._free[name] = (bodies, m.jnt_qposadr[joints], m.jnt_dofadr[joints])
        self._mocap = {name: m.body_mocapid[[_id(m, mujoco.mjtObj.mjOBJ_BODY, n) for n in names[name]]]
                       for name in ("buttons", "pillars", "gremlins") if name in names}
        self._mocap0 = np.zeros((m.nmocap, 3), np.float32)  # mocap bodies' XML positions
        is_mocap = m.body_mocapid >= 0
        self._mocap0[m.body_mocapid[is_mocap]] = m.body_pos[is_mocap]

        # per-geom tables for reading contacts (one extra entry for MJX's padding id -1)
        agent_geom = np.zeros(m.ngeom + 1, bool)
        agent_geom[:-1] = m.body_rootid[m.geom_bodyid] == self._agent
        kind = np.zeros(m.ngeom + 1, np.int32)
        button = np.full(m.ngeom + 1, -1, np.int32)
        for name, code in _KIND_OF.items():
            for i, n in enumerate(names.get(name, [])):
                body = _id(m, mujoco.mjtObj.mjOBJ_BODY, n)
                kind[:-1][m.geom_bodyid == body] = code
                if code == _BUTTON:
                    button[:-1][m.geom_bodyid == body] = i
        self._agent_geom, self._geom_kind, self._geom_button = map(jnp.asarray, (agent_geom, kind, button))
        # the Warp path reads contacts from the touch sensors: their sensordata address per kind
        self._touch_adr = {name: np.array([m.sensor(f"touch_{n}").adr[0] for n in names[name]])
                           for name in world.TOUCHED_KINDS if warp and name in names}

    # ------------------------------------------------------------------ Brax Env interface
    @property
    def observation_size(self) -> int:
        return sum(size for _, size in self.robot.observation_sensors) + lidar.NUM_BINS * len(self.spec.objects)

    @property
    def action_size(self) -> int:
        return int(self.mj_model.nu)

    @property
    def backend(self) -> str:
        return "mjx"

    @property
    def dt(self) -> float:
        return float(self.mj_model.opt.timestep) * self.robot.frameskip

    def reset(self, rng: jax.Array) -> State:
        rng, k_layout, k_rot, k_goal = jax.random.split(rng, 4)
        xy, _ = layout.sample_layout(k_layout, self._keepouts, self.spec.extents)
        yaw = jax.random.uniform(k_rot, (len(self._keepouts),), maxval=2 * math.pi)  # SG random_rot

        qpos = self._set_pose(jnp.asarray(self.mj_model.qpos0), xy[0], yaw[0])
        for name in self._free:
            qpos = self.place_object(qpos, name, xy[self._slots[name]], yaw[self._slots[name]])
        mocap_pos = jnp.asarray(self._mocap0)
        mocap_quat = jnp.tile(jnp.array([1.0, 0, 0, 0]), (self.mj_model.nmocap, 1))
        for name, ids in self._mocap.items():
            mocap_pos = mocap_pos.at[ids, :2].set(xy[self._slots[name]])
            mocap_quat = mocap_quat.at[ids].set(_yaw_quat(yaw[self._slots[name]]))
        data0 = self._data0 if self.physics_impl == "warp" else mjx.make_data(self.sys)
        data = mjx.forward(self.sys, data0.replace(qpos=qpos, mocap_pos=mocap_pos, mocap_quat=mocap_quat))

        cost = jnp.zeros((len(self.cost_kinds),) if self.split_cost else ())
        info = {"rng": rng, "layout": xy, "cost": cost, "goal_met": jnp.zeros(())}
        info.update({f"cost_{name}": jnp.zeros(()) for name in self.cost_kinds})
        if self.kind == "Button":  # SG ButtonLevel0.update_world, then specific_reset sets timer 0
            info["goal_button"] = jax.random.randint(k_goal, (), 0, len(self._slots["buttons"]))
            info["goal"] = xy[self._slots["buttons"]][info["goal_button"]]
            info["timer"] = jnp.zeros((), jnp.int32)
        else:  # SG build_goal_position at reset: the goal is drawn again against the layout
            goal, ok = layout.sample_goal(k_goal, self._keepouts[self._goal_slot], xy[self._others],
                                          self._keepouts[self._others], self.spec.extents)
            info["goal"] = jnp.where(ok, goal, xy[self._goal_slot])
        info.update(self._distances(data, info["goal"]))
        zero = jnp.zeros(())
        return State(data, self._obs(data, info), zero, zero, {}, info)

    def step(self, state: State, action: jax.Array) -> State:
        info = dict(state.info)
        data = state.pipeline_state.replace(ctrl=jnp.clip(action, self._ctrl_range[:, 0], self._ctrl_range[:, 1]))

        data = self._physics_step(data, info["layout"])
        dists = self._distances(data, info["goal"])
        touch = self._touching(data)
        if self.kind == "Button":  # SG ButtonLevel0.goal_achieved: touching the goal button
            achieved = touch["buttons"][info["goal_button"]]
        elif self.kind == "Push":  # SG PushLevel0.goal_achieved
            achieved = dists["last_box_goal"] <= self.spec.object("goal").size
        else:  # SG GoalLevel0.goal_achieved
            achieved = dists["last_dist_goal"] <= self.spec.object("goal").size
        reward = self._reward(info, dists, achieved)
        cost_values = self._cost_values(data, info, touch)
        cost = self._cost(cost_values)
        if self.kind == "Button":  # SG Buttons.timer_tick, after the cost
            info["timer"] = jnp.maximum(0, info["timer"] - 1)

        info, done = self._new_goal(data, info, achieved)
        info.update(self._distances(data, info["goal"]))  # SG update_world refreshes last_* too
        info.update(cost_values, cost=cost, goal_met=achieved.astype(jnp.float32))
        obs = self._obs(data, info)
        if self.physics_impl == "warp":  # dropped contacts or rows: poison the step (physics.py)
            obs, reward = physics.poison_on_overflow(data, obs, reward)
        return state.replace(pipeline_state=data, obs=obs, reward=reward, done=done.astype(jnp.float32), info=info)

    def place_object(self, qpos: jax.Array, name: str, xy: jax.Array, yaw: jax.Array) -> jax.Array:
        """``qpos`` with every instance of a movable object kind at ``xy`` (n, 2), heading ``yaw`` (n,)."""
        qadr = self._free[name][1]  # free joints: position, then quaternion
        qpos = qpos.at[qadr[:, None] + jnp.arange(2)].set(xy)
        return qpos.at[qadr[:, None] + 3 + jnp.arange(4)].set(_yaw_quat(yaw))

    def object_speed(self, d, name: str) -> jax.Array:
        """Linear speed of each instance's body origin (SG ``get_body_xvelp``), (n,)."""
        dofs = self._free[name][2]
        return jnp.linalg.norm(d.qvel[dofs[:, None] + jnp.arange(3)], axis=-1)  # free joint: linear first

    # ------------------------------------------------------------------ task logic
    def _physics_step(self, data, layout_xy):
        """SG's ``frameskip`` physics steps (gremlins moved before each), then one forward
        with sensors."""
        gremlins = "gremlins" in self._mocap

        def move_gremlins(d):
            return d.replace(mocap_pos=self._gremlin_pos(d, layout_xy))

        if self.physics_impl == "warp":  # Warp runs whole steps only
            def step(d, _):
                return mjx.step(self._sys_without_sensors, move_gremlins(d) if gremlins else d), None

            data, _ = jax.lax.scan(step, data, None, length=self.robot.frameskip)
            return mjx.forward(self.sys, data)

        def substep(d, i):  # frameskip x mjx.step (= forward, integrate), then one forward
            move = i < self.robot.frameskip
            if gremlins:
                d = jax.lax.cond(move, move_gremlins, lambda d: d, d)
            d = mjx.forward(self._sys_without_sensors, d)
            return jax.lax.cond(move, self._integrate, lambda d: d, d), None

        # one copy of forward in the program (halves the compile) instead of scan(step) + forward;
        # sensors only after the last one, where SG reads them (the same values: they are
        # functions of the final state alone)
        data, _ = jax.lax.scan(substep, data, jnp.arange(self.robot.frameskip + 1))
        return mjx.sensor_acc(self.sys, mjx.sensor_vel(self.sys, mjx.sensor_pos(self.sys, data)))

    def _integrate(self, d):
        """The integrator half of ``mjx.step`` (its forward half is done by the caller)."""
        integrator = self.mj_model.opt.integrator
        if integrator == mujoco.mjtIntegrator.mjINT_EULER:
            return mjx.euler(self.sys, d)
        if integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST:
            return mjx.implicit(self.sys, d)
        if integrator == mujoco.mjtIntegrator.mjINT_RK4:
            return mjx.rungekutta4(self.sys, d)
        raise NotImplementedError(f"integrator {integrator} is not supported by MJX")

    def _gremlin_pos(self, d, xy):
        """SG Gremlins.move(): mocap at travel * (sin t, cos t) plus the weld offset (the reset
        position, z = size), so the gremlin circles its reset position at z = 2 * size."""
        obj = self.spec.object("gremlins")
        ids = self._mocap["gremlins"]
        circle = obj.get("travel") * jnp.stack([jnp.sin(d.time), jnp.cos(d.time)])
        pos = jnp.concatenate([xy[self._slots["gremlins"]] + circle, jnp.full((len(ids), 1), 2 * obj.size)], -1)
        return d.mocap_pos.at[ids].set(pos)

    def _distances(self, d, goal):
        agent = d.xpos[self._agent]
        if self.kind != "Push":  # SG BaseTask.dist_goal: XY distance agent-goal
            return {"last_dist_goal": jnp.linalg.norm(goal - agent[:2])}
        box = d.xpos[self._free["push_box"][0][0]]
        goal3 = jnp.concatenate([goal, jnp.array([tasks.GOAL_SIZE / 2 + 1e-2])])  # SG goal.py: z
        return {  # SG PushLevel0.dist_box / dist_box_goal: 3-D distances of body positions
            "last_dist_goal": jnp.linalg.norm(goal - agent[:2]),
            "last_dist_box": jnp.linalg.norm(box - agent),
            "last_box_goal": jnp.linalg.norm(box - goal3),
        }

    def _reward(self, info, dists, achieved):
        """SG calculate_reward of the task, clipped as SG Builder._reward."""
        if self.kind == "Push":  # SG PushLevel0.calculate_reward
            gate = info["last_dist_box"] > tasks.PUSH_BOX_NULL_DIST * self.spec.object("push_box").size
            reward = (info["last_dist_box"] - dists["last_dist_box"]) * tasks.PUSH_BOX_REWARD_DIST * gate
            reward += (info["last_box_goal"] - dists["last_box_goal"]) * tasks.PUSH_BOX_REWARD_GOAL
            reward += tasks.GOAL_REWARD * achieved
        elif self.kind == "Button":  # SG ButtonLevel0.calculate_reward
            reward = (info["last_dist_goal"] - dists["last_dist_goal"]) * tasks.BUTTON_REWARD_DISTANCE
            reward += tasks.BUTTON_REWARD * achieved
        else:  # SG GoalLevel0.calculate_reward
            reward = (info["last_dist_goal"] - dists["last_dist_goal"]) * tasks.GOAL_REWARD_DISTANCE
            reward += tasks.GOAL_REWARD * achieved
        return jnp.clip(reward, -tasks.REWARD_CLIP, tasks.REWARD_CLIP).astype(jnp.float32)

    def _touching(self, d):
        """Per object kind, the number of contacts with the agent (per instance for buttons)."""
        if self.physics_impl == "warp":
            found = {name: d.sensordata[adr] for name, adr in self._touch_adr.items()}
            out = {name: jnp.sum(found.get(name, jnp.zeros(0))).astype(jnp.int32) for name in _KIND_OF}
            if "buttons" in found:
                out["buttons"] = found["buttons"] > 0
            return out
        contact = d._impl.contact  # MJX's JAX contacts, active when dist < margin
        active = contact.dist < contact.includemargin
        g1, g2 = contact.geom[:, 0], contact.geom[:, 1]
        a1, a2 = self._agent_geom[g1], self._agent_geom[g2]
        other = jnp.where(a1, g2, g1)
        with_agent = active & (a1 ^ a2)
        kind = self._geom_kind[other]
        out = {name: jnp.sum(with_agent & (kind == code)) for name, code in _KIND_OF.items()}
        if "buttons" in self._mocap:
            n = len(self._mocap["buttons"])
            button = self._geom_button[other]
            out["buttons"] = jnp.any(with_agent[:, None] & (button[:, None] == jnp.arange(n)), axis=0)
        return out

    def _cost_values(self, d, info, touch):
        """SG BaseTask.calculate_cost before the sum: ``{"cost_<kind>": value}`` per constrained
        kind (``cost_kinds`` order), each its SG ``cal_cost`` (>= 0)."""
        agent = d.xpos[self._agent][:2]
        values = {}
        for name in self.cost_kinds:
            obj = self.spec.object(name)
            if name == "hazards":  # SG Hazards.cal_cost
                dist = jnp.linalg.norm(info["layout"][self._slots["hazards"]] - agent, axis=-1)
                value = jnp.sum(jnp.where(dist <= obj.size, tasks.HAZARD_COST * (obj.size - dist), 0.0))
            elif name == "vases":  # SG Vases.cal_cost: contacts + speed (displace_cost = 0)
                speed = self.object_speed(d, "vases")
                value = tasks.VASE_CONTACT_COST * touch["vases"] + tasks.VASE_VELOCITY_COST * jnp.sum(
                    jnp.where(speed >= tasks.VASE_VELOCITY_THRESHOLD, speed, 0.0))
            elif name == "pillars":  # SG Pillars.cal_cost
                value = tasks.PILLAR_COST * touch["pillars"]
            elif name == "gremlins":  # SG Gremlins.cal_cost
                value = tasks.GREMLIN_CONTACT_COST * touch["gremlins"]
            else:  # buttons, SG Buttons.cal_cost: wrong buttons, only while timer == 0
                wrong = touch["buttons"] & (jnp.arange(obj.num) != info["goal_button"])
                value = tasks.BUTTON_COST * jnp.sum(wrong) * (info["timer"] == 0)
            values[f"cost_{name}"] = jnp.asarray(value, jnp.float32)
        return values

    def _cost(self, values):
        """SG CostConf.constrain_indicator: ``float(cost_sum > 0)``, or with ``split_cost`` one
        indicator per kind. Every value is >= 0, so the sum is > 0 exactly when one value is."""
        if self.split_cost:
            return jnp.stack([values[f"cost_{name}"] > 0 for name in self.cost_kinds]).astype(jnp.float32)
        total = sum(values.values(), jnp.zeros(()))  # SG cost_sum
        return (total > 0).astype(jnp.float32)

    def _new_goal(self, d, info, achieved):
        """SG update_world after the goal is reached: returns (info, done)."""
        rng, key = jax.random.split(info["rng"])
        info["rng"] = rng
        if self.kind == "Button":  # SG build_goal_button: any button, uniformly; reset_timer
            button = jax.random.randint(key, (), 0, len(self._slots["buttons"]))
            info["goal_button"] = jnp.where(achieved, button, info["goal_button"])
            info["goal"] = info["layout"][self._slots["buttons"]][info["goal_button"]]
            info["timer"] = jnp.where(achieved, tasks.BUTTON_RESAMPLING_DELAY, info["timer"])
            return info, jnp.zeros((), bool)
        # SG update_layout: movable objects at their current positions (gremlins stay put)
        xy = info["layout"].at[0].set(d.xpos[self._agent][:2])
        for name, (bodies, _, _) in self._free.items():
            xy = xy.at[self._slots[name]].set(d.xpos[bodies][:, :2])
        goal, ok = layout.sample_goal(key, self._keepouts[self._goal_slot], xy[self._others],
                                      self._keepouts[self._others], self.spec.extents)
        info["goal"] = jnp.where(achieved & ok, goal, info["goal"])
        return info, achieved & ~ok

    def _obs(self, d, info):
        """SG BaseTask.obs: robot sensors, then one lidar per object kind in SG's order."""
        agent_pos, agent_mat = d.xpos[self._agent], d.xmat[self._agent]
        parts = [self._read_sensors(self.sys, d)]
        for obj in self.spec.objects:
            if obj.name == "goal":
                pos = info["goal"][None]
            elif obj.name in self._free:
                pos = d.xpos[self._free[obj.name][0]]
            elif obj.name == "gremlins":
                pos = d.mocap_pos[self._mocap["gremlins"]]
            else:  # hazards, pillars, buttons: fixed at their layout positions
                pos = info["layout"][self._slots[obj.name]]
            reading = lidar.pseudo_lidar(pos, agent_pos, agent_mat)
            if obj.name == "buttons":  # SG ButtonLevel0.obs: buttons hidden while the timer runs
                reading = jnp.where(info["timer"] == 0, reading, 0.0)
            parts.append(reading)
        return jnp.concatenate(parts).astype(jnp.float32)


@functools.lru_cache(maxsize=None)
def make(robot: str, kind: str, level: int, split_cost: bool = False) -> NavigationEnv:
    return NavigationEnv(robot, kind, level, split_cost=split_cost)

"""MJCF of a navigation task: the robot's own file (floor, agent, sensors) plus the objects.

As SG world.py does, objects are inserted into the robot's ``<mujoco>`` file, so they take
its ``<default>`` geom settings (condim, friction). What goes into the physics:

* vases and the push box: free bodies, as SG (world.py; the box with SG's four corner geoms
  ``col1..col4``), placed per episode through their free joints;
* buttons, pillars, gremlins: mocap bodies, moved per episode (and per substep for
  gremlins) through ``mocap_pos``, one compiled model for every layout;
* hazards and goals: not in the model. They are non-colliding in SG (contype 0), so the env
  computes them geometrically.

Differences from SG, for MJX:

* pillars are capsules (radius 0.2, segment from z 0 to 1), not cylinders: MJX has no
  box-cylinder collision, and at every height a robot reaches (z in [0, 1]) the capsule's
  cross-section is exactly the cylinder's;
* vases do not collide with each other (contype 2 / conaffinity 1): 45 box-box pairs in
  Goal2 would dominate the step; vases only touch each other when one is knocked into another;
* mocap bodies (buttons, pillars, gremlins) collide with neither the floor nor each other
  (``<exclude>``; SG's buttons and pillars are static geoms, which MuJoCo never collides with
  the floor or each other either, and its gremlins float above the floor);
* MJX's broad phase is on (``max_geom_pairs``): in each group of same-shaped geom pairs only
  the ``max(4, agent geoms + push-box geoms)`` pairs with the nearest bounding spheres are
  collided, so the solver carries a few vase contacts instead of all of them (planes, i.e.
  everything's contact with the floor, are never culled). Pairs further apart cannot touch.
* geom pairs MJX cannot collide at all (box-cylinder, e.g. the car's wheels against vases,
  the box or gremlins) are excluded body-against-body (``EXCLUDED`` lists them per model).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import mujoco
from mujoco.mjx._src import collision_driver

from shapo_envs.navigation import tasks
from shapo_envs.navigation.tasks import TaskSpec


def _fmt(*values) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def _add_body(parent, name, pos, mocap=False):
    attrs = {"name": name, "pos": _fmt(*pos)}
    if mocap:
        attrs["mocap"] = "true"
    return ET.SubElement(parent, "body", attrs)


def _add_geom(body, name, gtype, size, **attrs):
    return ET.SubElement(body, "geom", {"name": name, "type": gtype, "size": _fmt(*size),
                                        **{k: str(v) for k, v in attrs.items()}})


def _add_objects(worldbody, spec: TaskSpec) -> None:
    for obj in spec.objects:
        for name in obj.instance_names:
            if obj.name == "vases":  # SG assets/free_geoms/vases.py get_config
                body = _add_body(worldbody, name, (0, 0, obj.size - tasks.VASE_SINK))
                ET.SubElement(body, "freejoint", {"name": name})
                _add_geom(body, name, "box", (obj.size,) * 3, density=tasks.VASE_DENSITY,
                          contype=2, conaffinity=1, rgba="0 1 1 1")
            elif obj.name == "push_box":  # SG world.py build(): the push_box template
                dim, density = obj.size, obj.get("density")
                body = _add_body(worldbody, name, (0, 0, dim))
                ET.SubElement(body, "freejoint", {"name": name})
                # contype 3: the floor of car.xml collides only with contype bit 2 (point.xml's
                # floor with bit 1); conaffinity stays 1, so robots and pillars still meet it.
                _add_geom(body, name, "box", (dim,) * 3, density=density, rgba="1 1 0 1", contype=3)
                for k, (sx, sy) in enumerate(((1, 1), (-1, 1), (1, -1), (-1, -1)), start=1):
                    _add_geom(body, f"col{k}", "box", (dim / 2, dim / 2, dim), density=density,
                              pos=_fmt(sx * dim, sy * dim, 0), rgba="1 1 0 1", contype=3)
            elif obj.name == "buttons":  # SG assets/geoms/buttons.py: sphere at z = size
                body = _add_body(worldbody, name, (0, 0, obj.size), mocap=True)
                _add_geom(body, name, "sphere", (obj.size,), rgba="1 0.5 0 1")
            elif obj.name == "pillars":  # SG assets/geoms/pillars.py: cylinder, centre z = height
                body = _add_body(worldbody, name, (0, 0, tasks.PILLAR_HEIGHT), mocap=True)
                _add_geom(body, name, "capsule", (obj.size, tasks.PILLAR_HEIGHT), rgba="0.5 0.5 1 1")
            elif obj.name == "gremlins":  # SG assets/mocaps/gremlins.py: box of half-size `size`
                body = _add_body(worldbody, name, (0, 0, obj.size), mocap=True)
                _add_geom(body, name, "box", (obj.size,) * 3, rgba="0.5 0 1 1")
            # goal and hazards: geometric only (see the module docstring)


def _unsupported_body_pairs(m: mujoco.MjModel) -> list[tuple[str, str]]:
    pairs = set()
    for g1, g2, _ in collision_driver.geom_pairs(m):
        if not collision_driver.has_collision_fn(m.geom_type[g1], m.geom_type[g2]):
            b1, b2 = (mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, m.geom_bodyid[g]) for g in (g1, g2))
            pairs.add(tuple(sorted((b1, b2))))
    return sorted(pairs)


def _max_geom_pairs(root) -> int:
    agent = root.find("worldbody").find("body[@name='agent']")
    colliding = [g for g in agent.iter("geom") if g.get("contype", "1") != "0" or g.get("conaffinity", "1") != "0"]
    box = root.find("worldbody").find("body[@name='push_box']")
    return max(4, len(colliding) + (len(box.findall("geom")) if box is not None else 0))


def build_xml(robot_xml: str, spec: TaskSpec, exclude: list[tuple[str, str]] = ()) -> str:
    root = ET.fromstring(robot_xml)
    _add_objects(root.find("worldbody"), spec)
    custom = root.find("custom")
    if custom is None:
        custom = ET.SubElement(root, "custom")
    ET.SubElement(custom, "numeric", {"name": "max_geom_pairs", "data": str(_max_geom_pairs(root))})
    mocaps = [b.get("name") for b in root.find("worldbody").findall("body") if b.get("mocap") == "true"]
    exclude = [("world", b) for b in mocaps] + [
        (a, b) for i, a in enumerate(mocaps) for b in mocaps[i + 1:]] + list(exclude)
    if exclude:
        contact = root.find("contact")
        if contact is None:
            contact = ET.SubElement(root, "contact")
        for b1, b2 in exclude:
            ET.SubElement(contact, "exclude", {"body1": b1, "body2": b2})
    return ET.tostring(root, encoding="unicode")


def build_model(robot, spec: TaskSpec) -> tuple[mujoco.MjModel, list[tuple[str, str]]]:
    """The compiled world and the body pairs excluded because MJX cannot collide them."""
    robot_xml = robot.xml_path.read_text()
    assets_dir = str(robot.xml_path.parent)
    xml = build_xml(robot_xml, spec)
    model = _compile(xml, assets_dir)
    excluded = _unsupported_body_pairs(model)
    if excluded:
        model = _compile(build_xml(robot_xml, spec, excluded), assets_dir)
        assert not _unsupported_body_pairs(model)
    return model, excluded


def _compile(xml: str, assets_dir: str) -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_string(xml)
    spec.meshdir = spec.meshdir or assets_dir
    return spec.compile()


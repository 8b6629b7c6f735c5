"""MJCF of a navigation task: the robot's own file (floor, agent, sensors) plus the objects.

As SG world.py does, objects are inserted into the robot's ``<mujoco>`` file, so they take
its ``<default>`` geom settings (condim, friction). What goes into the physics:

* vases and the push box: free bodies, as SG (world.py; the box with SG's four corner geoms
  ``col1..col4``), placed per episode through their free joints; in the fast world they
  stand on feet (below);
* buttons, pillars, gremlins: mocap bodies, moved per episode (and per substep for
  gremlins) through ``mocap_pos``, one compiled model for every layout;
* hazards and goals: not in the model. They are non-colliding in SG (contype 0), so the env
  computes them geometrically.

Differences from SG, for MJX. Speed comes from constraint rows: MJX assembles and solves
every possible contact every substep, active or not, 10 rows each at SG's condim 6, and that
dominates a step (benchmarks/README.md has the profile). ``build_model(..., reference=True)``
builds SG's physics without the edits marked "fast world", as the native reference the tests
hold the fast world to:

* fast world: the Point does not meet the floor. Its slide joints fix its height, so native
  MuJoCo makes no constraint row of that contact (stepping with and without it is bit for bit
  the same, tested), while MJX would carry 10 inactive rows for the sphere and 40 for the arrow
  box every substep;
* fast world: contacts between the robot and objects and among objects have condim 3
  (sliding friction) instead of SG's 6 (also torsional and rolling friction, coefficients
  0.005-0.01 m and 1e-4-0.01 m, at the point of contact); what rolls on the floor (the Car's
  wheels and rear ball) keeps condim 6;
* fast world: vases and the push box rest on the floor through small spheres ("feet", massless,
  colliding with nothing else) at their boxes' bottom corners, with condim 3, through explicit
  ``<pair>`` contacts. SG's box-on-plane contacts sit at those same corners, but MJX collides a
  box with a plane as a convex mesh and gives each contact 10 rows. A vase's floor rows go from
  40 to 16, the push box's from 200 to 80, and the bodies keep all six degrees of freedom (a
  pushed vase of 8 mg hops and tilts in SG, and that is what turns it: planar joints with
  friction loss turned it far less). Pushed by the Point, the mean displacement over 48 start
  offsets is 1.06x the reference's for a vase, 0.99x for the box (tests/test_nav_physics.py).
  Vases start at their rest height on the feet (``VASE_SINK_ON_FEET``);
* fast world: the Car's chassis box meets the floor through four such feet at its bottom
  corners (it touches the floor only when the car tips over); its wheels and rear ball roll on
  the floor as SG's, condim 6;
* the sensors are computed once per env step, after the last substep, where SG reads them
  (the same values: they depend on the final state alone; env.py);
* pillars are capsules (radius 0.2, segment from z 0 to 1), not cylinders: MJX has no
  box-cylinder collision, and at every height a robot reaches (z in [0, 1]) the capsule's
  cross-section is exactly the cylinder's;
* vases do not collide with each other (contype 2 / conaffinity 1): 45 box-box pairs in
  Goal2 would dominate the step; vases only touch each other when one is knocked into another;
* mocap bodies (buttons, pillars, gremlins) collide with neither the floor nor each other
  (``<exclude>``; SG's buttons and pillars are static geoms, which MuJoCo never collides with
  the floor or each other either, and its gremlins float above the floor);
* MJX's broad phase is on (``max_geom_pairs``): in each group of same-shaped geom pairs only
  the ``max(2, agent geoms + push-box geoms)`` pairs with the nearest bounding spheres are
  collided, so the solver carries a few vase contacts instead of all of them (planes, i.e.
  everything's contact with the floor, are never culled). Pairs further apart cannot touch;
  the Point (2 geoms) would need to touch three vases, buttons or gremlins at once for a
  contact to be missed (Button1: 96 rows to 48, 1.5x faster).
* geom pairs MJX cannot collide at all (box-cylinder, e.g. the car's wheels against vases,
  the box or gremlins) are excluded body-against-body (``EXCLUDED`` lists them per model).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import mujoco
import numpy as np
from mujoco.mjx._src import collision_driver

from shapo_envs.navigation import tasks
from shapo_envs.navigation.tasks import TaskSpec

FOOT_RADIUS = 0.01  # ours: only a foot's lowest point matters, and it is the box corner's
FOOT_CONDIM = "3"  # ours: sliding friction only at the feet (SG's box corners: condim 6)
# ours: a vase's rest penetration on its feet (SG's VASE_SINK, 4e-5, is its rest on its box
# corners): it starts at rest, or its settling speed would pass SG's vase velocity threshold
# (1e-4 m/s) and cost in every episode's first steps. Measured natively, tests/test_nav_physics.py.
VASE_SINK_ON_FEET = 1.0776e-4
OBSTACLE_CONDIM = "3"  # ours: robot-object and object-object contacts, sliding friction only (SG: 6)


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


def _add_free_object(worldbody, name, z, geoms, reference):
    """A vase or the push box: SG's free body of boxes resting on the floor. In the fast world
    (``reference=False``) its boxes do not meet the floor; it stands on small spheres at the
    corners of its footprint that meet only the floor (``_add_floor_pairs``)."""
    body = _add_body(worldbody, name, (0, 0, z))
    ET.SubElement(body, "freejoint", {"name": name})
    if not reference:
        _add_feet(body, name, geoms)
    for geom_name, size, attrs in geoms:
        _add_geom(body, geom_name, "box", size, **attrs)
    return body


def _add_feet(body, name, geoms) -> None:
    """Massless spheres at the boxes' bottom corners, meeting nothing but the floor (pairs)."""
    bottom = min(float(attrs.get("pos", "0 0 0").split()[2]) - hz for _, (_, _, hz), attrs in geoms)
    for k, (x, y) in enumerate(_footprint_corners(geoms)):
        _add_geom(body, f"{name}_foot{k}", "sphere", (FOOT_RADIUS,), pos=_fmt(x, y, bottom + FOOT_RADIUS),
                  density=0, contype=0, conaffinity=0, group=3, rgba="0 0 0 0")


def _add_chassis_feet(agent) -> None:
    """A free-jointed robot (the Car): its chassis box meets the floor only through feet at its
    bottom corners (it does so only when the car tips over; its wheels and ball roll as SG's)."""
    chassis = agent.find("geom[@name='agent'][@type='box']")
    if agent.find("joint[@type='free']") is None or chassis is None:
        return
    size = tuple(float(v) for v in chassis.get("size").split())
    _add_feet(agent, "agent", [("agent", size, {"pos": chassis.get("pos", "0 0 0")})])


def _footprint_corners(geoms) -> list[tuple[float, float]]:
    """The distinct bottom corners of the boxes: where SG's box-plane contacts sit."""
    corners = set()
    for _, (hx, hy, _), attrs in geoms:
        px, py = (float(v) for v in attrs.get("pos", "0 0 0").split()[:2])
        corners |= {(round(px + sx * hx, 6), round(py + sy * hy, 6)) for sx in (1, -1) for sy in (1, -1)}
    return sorted(corners)


def _add_objects(worldbody, spec: TaskSpec, reference: bool) -> None:
    for obj in spec.objects:
        for name in obj.instance_names:
            if obj.name == "vases":  # SG assets/free_geoms/vases.py get_config
                sink = tasks.VASE_SINK if reference else VASE_SINK_ON_FEET
                _add_free_object(worldbody, name, obj.size - sink, [(name, (obj.size,) * 3, dict(
                    density=tasks.VASE_DENSITY, contype=2, conaffinity=1, rgba="0 1 1 1"))], reference)
            elif obj.name == "push_box":  # SG world.py build(): the push_box template
                dim, density = obj.size, obj.get("density")
                # contype 3: the floor of car.xml collides only with contype bit 2 (point.xml's
                # floor with bit 1); conaffinity stays 1, so robots and pillars still meet it.
                attrs = dict(density=density, rgba="1 1 0 1", contype=3)
                geoms = [(name, (dim,) * 3, attrs)] + [
                    (f"col{k}", (dim / 2, dim / 2, dim), dict(attrs, pos=_fmt(sx * dim, sy * dim, 0)))
                    for k, (sx, sy) in enumerate(((1, 1), (-1, 1), (1, -1), (-1, -1)), start=1)]
                _add_free_object(worldbody, name, dim, geoms, reference)
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


MIN_GEOM_PAIRS = 2  # ours: the Point meets at most two objects of one shape at once


def _colliding(body) -> list:
    return [g for g in body.iter("geom") if g.get("contype", "1") != "0" or g.get("conaffinity", "1") != "0"]


def _max_geom_pairs(root) -> int:
    agent = root.find("worldbody").find("body[@name='agent']")
    box = root.find("worldbody").find("body[@name='push_box']")
    return max(MIN_GEOM_PAIRS, len(_colliding(agent)) + (len(_colliding(box)) if box is not None else 0))


def _floor_excluded(root, reference: bool) -> list[tuple[str, str]]:
    """Bodies whose geoms do not meet the floor in the fast world: objects standing on feet,
    and a robot on planar root joints (the Point: its slides fix its height, so native MuJoCo
    makes no constraint row of that contact, and with or without it the Point steps bit for
    bit alike; MJX would carry its rows, inactive, every substep)."""
    if reference:
        return []
    bodies = [b for b in root.find("worldbody").findall("body")
              if (b.find("freejoint") is None and b.find("joint[@type='slide']") is not None)
              or any(_is_foot(g) for g in b.findall("geom"))]
    return [("world", b.get("name")) for b in bodies]


def _set_obstacle_condim(worldbody) -> None:
    """Contacts between the robot and objects, and among objects, at ``OBSTACLE_CONDIM``:
    every geom but the floor and the Car's wheels and rear ball (what rolls on the floor, which
    keep SG's condim 6 against it) gets it. MuJoCo gives a contact the larger condim of its two
    geoms, so only the contacts among the rest change; their sliding friction stays SG's 1."""
    for geom in worldbody.iter("geom"):
        rolls = geom.get("type") == "cylinder" or geom.get("name") == "rear"
        if geom.get("name") != "floor" and not rolls and not _is_foot(geom):
            geom.set("condim", OBSTACLE_CONDIM)


def build_xml(robot_xml: str, spec: TaskSpec, exclude: list[tuple[str, str]] = (), reference: bool = False,
              touch_sensors: bool = False) -> str:
    """The world's MJCF. ``reference=True`` builds Safety-Gymnasium's physics (free vases and
    push box on the floor, every floor contact), which the tests step natively as the
    reference for the fast world. ``touch_sensors=True`` adds one ``touch_<body>`` contact
    sensor per costing object (``_add_touch_sensors``)."""
    root = ET.fromstring(robot_xml)
    _add_objects(root.find("worldbody"), spec, reference)
    if touch_sensors:
        _add_touch_sensors(root, spec)
    if not reference:
        _set_obstacle_condim(root.find("worldbody"))
        _add_chassis_feet(root.find("worldbody").find("body[@name='agent']"))
    floor_excluded = _floor_excluded(root, reference)
    custom = root.find("custom")
    if custom is None:
        custom = ET.SubElement(root, "custom")
    ET.SubElement(custom, "numeric", {"name": "max_geom_pairs", "data": str(_max_geom_pairs(root))})
    mocaps = [b.get("name") for b in root.find("worldbody").findall("body") if b.get("mocap") == "true"]
    exclude = [("world", b) for b in mocaps] + [
        (a, b) for i, a in enumerate(mocaps) for b in mocaps[i + 1:]] + floor_excluded + list(exclude)
    _add_floor_pairs(root)
    if exclude:
        contact = _contact_section(root)
        for b1, b2 in exclude:
            ET.SubElement(contact, "exclude", {"body1": b1, "body2": b2})
    return ET.tostring(root, encoding="unicode")


TOUCHED_KINDS = ("vases", "pillars", "gremlins", "buttons")  # SG's contact-costed objects


def _add_touch_sensors(root, spec: TaskSpec) -> None:
    """One MuJoCo contact sensor per instance of a contact-costed kind: ``data="found"``
    counts the contacts between the agent's subtree and that body, the count SG's
    ``cal_cost`` loops over ``data.contact`` for. For MJX's Warp implementation, whose
    contacts of all worlds share one list that a vmapped env cannot pick its own from."""
    sensor = root.find("sensor")
    if sensor is None:
        sensor = ET.SubElement(root, "sensor")
    for obj in spec.objects:
        if obj.name in TOUCHED_KINDS:
            for body in obj.instance_names:
                ET.SubElement(sensor, "contact", {"name": f"touch_{body}", "subtree1": "agent", "body2": body,
                                                  "data": "found"})


def _contact_section(root):
    contact = root.find("contact")
    return contact if contact is not None else ET.SubElement(root, "contact")


def _is_foot(geom) -> bool:
    return "_foot" in (geom.get("name") or "")


def _add_floor_pairs(root) -> None:
    """The feet's ``<pair>`` contacts with the floor: SG's friction (MuJoCo's default geom
    friction 1 / 0.005 / 0.0001 on both sides, mixed by maximum), ``FOOT_CONDIM``."""
    feet = [g.get("name") for g in root.find("worldbody").iter("geom") if _is_foot(g)]
    if not feet:
        return
    contact = _contact_section(root)
    for foot in feet:
        ET.SubElement(contact, "pair", {"geom1": "floor", "geom2": foot, "condim": FOOT_CONDIM,
                                        "friction": "1 1 0.005 0.0001 0.0001"})


def build_model(robot, spec: TaskSpec, reference: bool = False,
                touch_sensors: bool = False) -> tuple[mujoco.MjModel, list[tuple[str, str]]]:
    """The compiled world and the body pairs excluded because MJX cannot collide them."""
    robot_xml = robot.xml_path.read_text()
    assets_dir = str(robot.xml_path.parent)
    model = _compile(build_xml(robot_xml, spec, reference=reference, touch_sensors=touch_sensors), assets_dir)
    excluded = _unsupported_body_pairs(model)
    if excluded:
        model = _compile(build_xml(robot_xml, spec, excluded, reference, touch_sensors), assets_dir)
        assert not _unsupported_body_pairs(model)
    return model, excluded


def _compile(xml: str, assets_dir: str) -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_string(xml)
    spec.meshdir = spec.meshdir or assets_dir
    return spec.compile()


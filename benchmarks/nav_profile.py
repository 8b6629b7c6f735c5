"""Where a navigation step's time goes: MJX's stages of one substep, each jitted and vmapped alone.

The data are a batch of the env's own states after ``--warmup-steps`` zero-action steps from
fresh layouts (vases settled on their feet), forwarded once under each variant's model. Each stage is
``jax.jit(jax.vmap(stage, in_axes=(None, 0)))`` on the env's MJX model, compiled apart and timed
as the fastest of ``--repeats`` calls, each ending in ``block_until_ready``. The stages follow
``mjx.forward`` (mujoco/mjx/_src/forward.py, MJX 3.17): position (kinematics, com, inertia,
factor M), collision, make_constraint, velocity + actuation + smooth acceleration, the
constraint solver, sensors, then the whole ``mjx.forward`` and one ``mjx.step`` (a substep,
sensors included; the env steps ``frameskip`` substeps with sensors off, then one sensor pass). These are MJX's internal functions,
so this script is tied to the MJX version it records.

``--variants`` times the same stages with the model's solver options changed (the env itself is
unchanged): ``jacobian_dense`` (MuJoCo's automatic choice is sparse from nv 60 on; in MJX it
only changes the mass matrix's layout), ``solver_cg`` (CG in place of Newton), ``iterations_N``
(solver iteration cap N). A variant changes the physics' convergence, not the model: whether a
faster one keeps Safety-Gymnasium's behaviour is for the fidelity tests to say.

  python benchmarks/nav_profile.py --env SafetyPointGoal1 --num-envs 1024
  python benchmarks/nav_profile.py --env SafetyPointGoal2 --num-envs 64 --variants as_built jacobian_dense solver_cg
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

STAGES = ("position", "collision", "make_constraint", "velocity_actuation_acceleration", "solver", "sensors",
          "forward", "substep")


def variant_options(variant: str) -> dict:
    """MuJoCo ``opt`` fields a variant sets (``as_built``: none)."""
    import mujoco

    if variant == "as_built":
        return {}
    if variant == "jacobian_dense":
        return {"jacobian": mujoco.mjtJacobian.mjJAC_DENSE}
    if variant == "solver_cg":
        return {"solver": mujoco.mjtSolver.mjSOL_CG}
    match = re.fullmatch(r"iterations_([1-9][0-9]*)", variant)
    if match:
        return {"iterations": int(match.group(1))}
    raise ValueError(f"unknown variant {variant!r} (as_built, jacobian_dense, solver_cg, iterations_N)")


def _variant(text: str) -> str:
    try:
        variant_options(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="SafetyPointGoal1", help="a navigation task (default SafetyPointGoal1)")
    p.add_argument("--num-envs", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per stage; the fastest counts")
    p.add_argument("--warmup-steps", type=int, default=5, help="zero-action env steps before the data are taken")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--variants", nargs="+", type=_variant, default=["as_built"],
                   help="as_built, jacobian_dense, solver_cg, iterations_N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", help="free text stored in the JSON, e.g. that the CPU was shared with other jobs")
    p.add_argument("--out", help="JSON file to write")
    return p


def stage_functions(mjx):
    """Stage name -> ``f(model, data)``, the pieces of ``mjx.forward`` in its order."""
    from mujoco.mjx._src import collision_driver, constraint, forward, sensor, smooth, solver

    def position(m, d):
        for f in (smooth.kinematics, smooth.com_pos, smooth.camlight, smooth.tendon, smooth.crb,
                  smooth.tendon_armature, smooth.factor_m):
            d = f(m, d)
        return d

    def velocity_actuation_acceleration(m, d):
        return forward.fwd_acceleration(m, forward.fwd_actuation(m, forward.fwd_velocity(m, d)))

    def sensors(m, d):
        return sensor.sensor_acc(m, sensor.sensor_vel(m, sensor.sensor_pos(m, d)))

    return {"position": position, "collision": collision_driver.collision,
            "make_constraint": constraint.make_constraint,
            "velocity_actuation_acceleration": velocity_actuation_acceleration, "solver": solver.solve,
            "sensors": sensors, "forward": mjx.forward, "substep": mjx.step}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("num_envs", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    import jax
    import jax.numpy as jnp
    from mujoco import mjx

    import shapo_envs
    from _common import QUICK_COMPILER_OPTIONS, batched_reset, compile_timed, header, timed, write_json
    from shapo_envs.navigation import NAMES as NAVIGATION

    if args.env not in NAVIGATION:
        parser.error(f"--env: {args.env!r} is not a navigation task")
    env = shapo_envs.make_env(args.env)
    # the reset and each variant's first forward run once, untimed: XLA's quick compile
    setup = QUICK_COMPILER_OPTIONS
    state, _ = batched_reset(env, jax.random.split(jax.random.PRNGKey(args.seed), args.num_envs), compiler_options=setup)
    step = jax.jit(jax.vmap(env.step))
    zeros = jnp.zeros((args.num_envs, env.action_size))
    for _ in range(args.warmup_steps):
        state = step(state, zeros)
    data = jax.block_until_ready(state.pipeline_state)
    m = env.mj_model
    report = {**header(), "benchmark": "nav_profile", "env": args.env, "num_envs": args.num_envs,
              "note": args.note, "repeats": args.repeats, "warmup_steps": args.warmup_steps, "frameskip": env.robot.frameskip,
              "nv": int(m.nv), "ngeom": int(m.ngeom), "constraint_rows": int(data._impl.efc_J.shape[1]),
              "contacts": int(data._impl.contact.dist.shape[1]), "variants": {}}
    functions = stage_functions(mjx)
    print(f"{args.env}: {args.num_envs} envs, nv {m.nv}, {report['constraint_rows']} constraint rows, "
          f"{report['contacts']} contacts, device {report['device']['device_kind']}", flush=True)
    for variant in args.variants:
        options = variant_options(variant)
        model = mjx.put_model(_copy_with(m, options) if options else m)
        # the warmed-up state, forwarded under this model (``jacobian`` changes the mass matrix's layout)
        variant_data = jax.block_until_ready(
            jax.jit(jax.vmap(functools.partial(forwarded, mjx, model)), compiler_options=setup)(data))
        row = {"options": {k: int(v) for k, v in options.items()}, "compile_s": {}, "ms": {}}
        for name in args.stages:
            run, compile_s = compile_timed(jax.vmap(functions[name], in_axes=(None, 0)), model, variant_data)
            best = min(timed(run, model, variant_data)[1] for _ in range(args.repeats))
            row["compile_s"][name] = round(compile_s, 2)
            row["ms"][name] = round(best * 1e3, 3)
            print(f"  {variant:16s} {name:34s} {best * 1e3:9.2f} ms  (compile {compile_s:.1f} s)", flush=True)
        report["variants"][variant] = row
        if args.out:
            write_json(args.out, report)
    return 0


def forwarded(mjx, model, d):
    """``d``'s state (positions, velocities, mocap poses, controls, time) in fresh data of ``model``, forwarded."""
    fresh = mjx.make_data(model).replace(qpos=d.qpos, qvel=d.qvel, act=d.act, ctrl=d.ctrl, mocap_pos=d.mocap_pos,
                                         mocap_quat=d.mocap_quat, time=d.time)
    return mjx.forward(model, fresh)


def _copy_with(m, options: dict):
    """A copy of MjModel ``m`` with ``opt`` fields set (the env's own model stays as built)."""
    import copy

    mj = copy.copy(m)
    for field, value in options.items():
        setattr(mj.opt, field, value)
    return mj


if __name__ == "__main__":
    sys.exit(main())

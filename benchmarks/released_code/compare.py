"""Ours against the paper's released code: SafetyPointButton1, TRPO-PID base and SHAPO, per seed.

Reads the released side's JSON (``run.py``) and our two shapo-train run directories, and writes
the comparison JSON and a plot (return, cost and cumulative training cost against env steps,
mean over seeds with a +-1 std band; solid lines ours, dashed the released code's)::

  python benchmarks/released_code/compare.py --run-ours --seeds 3 --total-steps 200000 \\
      --ours-dir /tmp/ours_PointButton1

``--run-ours`` first trains our side (``nice -n 19``), one shapo-train command per arm with its
seeds vmapped::

  shapo-train --env SafetyPointButton1 --algo trpo_pid --preset paper-base|paper \\
      --num-seeds 3 --total-steps 200000 --out OURS_DIR/base|shapo --no-progress

Without it, the run directories already in ``--ours-dir`` are read (``base/`` and ``shapo/``).

Both sides define the curves alike: per update (20k steps: 20 episodes of 1000 steps on each
side), the mean return and cost of the training episodes that ended in it, and the cost of all
training episodes so far. "Final" return and cost are the mean over the last ``--final-updates``
updates (default 2, i.e. the last 40 episodes), per seed; "total cost" the cumulative cost at the
end. Across seeds: mean, sample std (ddof 1), and whether the two sides agree within the seed
spread, taken as |difference of means| <= 2 standard errors of that difference (Welch).
All of it is taken at the most env steps that every run of both sides has reached
(``compared_at_env_steps``; the full run length once all have finished), so a comparison made
while runs are still going compares like with like.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.normpath(os.path.join(HERE, "..", "results"))
DEFAULT_RELEASED = os.path.join(RESULTS, "released_code_PointButton1.json")
DEFAULT_JSON = os.path.join(RESULTS, "released_vs_ours_PointButton1.json")
DEFAULT_PNG = os.path.join(RESULTS, "released_vs_ours_PointButton1.png")
ARMS = ("base", "shapo")
PRESETS = {"base": "paper-base", "shapo": "paper"}
METRICS = ("episode_return", "episode_cost", "cumulative_cost")
COST_LIMIT = 10.0


def ours_command(shapo_train, arm, seeds, total_steps, out_dir):
    """Our side's shapo-train command line for one arm (all seeds in one vmapped program)."""
    return [shapo_train, "--env", "SafetyPointButton1", "--algo", "trpo_pid", "--preset", PRESETS[arm],
            "--num-seeds", str(seeds), "--total-steps", str(total_steps), "--out", out_dir, "--no-progress"]


def read_ours(run_dir):
    """Per-seed curves from a shapo-train ``--out`` directory's metrics.csv: {seed: curve}."""
    path = os.path.join(run_dir, "metrics.csv")
    curves = {}
    if not os.path.exists(path):
        return curves
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if any(row.get(key) in (None, "") for key in ("seed", "env_steps", "episode_return", "episode_cost",
                                                        "total_cost")):
                continue  # a line cut short by a run still writing
            curve = curves.setdefault(int(float(row["seed"])), {"env_steps": [], **{m: [] for m in METRICS}})
            curve["env_steps"].append(int(float(row["env_steps"])))
            curve["episode_return"].append(float(row["episode_return"]))
            curve["episode_cost"].append(float(row["episode_cost"]))
            curve["cumulative_cost"].append(float(row["total_cost"]))
    return curves


def read_released(path):
    """Per-arm, per-seed curves from run.py's JSON: {arm: {seed: curve}}, each run's complete epochs
    (a run still going counts with the epochs it has finished)."""
    with open(path) as f:
        data = json.load(f)
    curves = {arm: {} for arm in ARMS}
    for run in data["runs"]:
        curve = run.get("curve") or {}
        complete = [i for i, value in enumerate(curve.get("episode_return", [])) if value is not None]
        if not complete:
            continue
        curves[run["arm"]][int(run["seed"])] = {key: [curve[key][i] for i in complete]
                                                for key in ("env_steps",) + METRICS}
    return curves, data


def truncate(sides, horizon):
    """Every curve cut to env steps <= horizon."""
    return {side: {arm: {seed: {key: [v for v, step in zip(values, curve["env_steps"]) if step <= horizon]
                                for key, values in curve.items()}
                         for seed, curve in by_seed.items()}
                   for arm, by_seed in by_arm.items()}
            for side, by_arm in sides.items()}


def common_horizon(sides):
    """The most env steps every curve of both sides has reached (None if a side has none)."""
    ends = [curve["env_steps"][-1] for by_arm in sides.values() for by_seed in by_arm.values()
            for curve in by_seed.values()]
    return min(ends) if ends else None


def seed_finals(curve, final_updates):
    """One seed's final return and cost (mean over its last updates) and its total training cost."""
    def tail_mean(values):
        tail = values[-final_updates:]
        return sum(tail) / len(tail)
    return {"final_return": tail_mean(curve["episode_return"]), "final_cost": tail_mean(curve["episode_cost"]),
            "total_cost": curve["cumulative_cost"][-1], "env_steps": curve["env_steps"][-1]}


def mean_std(values):
    """Mean and sample standard deviation (ddof 1; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def agreement(ours, released):
    """Difference of means (ours - released), its Welch standard error, and whether it is within 2."""
    (m1, s1), (m2, s2) = mean_std(ours), mean_std(released)
    standard_error = math.sqrt(s1 ** 2 / len(ours) + s2 ** 2 / len(released))
    difference = m1 - m2
    result = {"difference": difference, "standard_error": standard_error,
              "within_seed_spread": abs(difference) <= 2 * standard_error}
    if min(len(ours), len(released)) < 2:
        result["note"] = "a side has 1 seed: its spread is unknown and counted as 0, so this verdict is provisional"
    return result


def summarise(sides, final_updates):
    """{"arms": {arm: {side: {stat: {mean, std, per_seed}}}, "agreement": ...}} from per-seed curves."""
    result = {}
    for arm in ARMS:
        per_side = {}
        for side, by_arm in sides.items():
            finals = [seed_finals(curve, final_updates) for _, curve in sorted(by_arm[arm].items())]
            if not finals:
                continue
            per_side[side] = {"seeds": len(finals), "env_steps": finals[0]["env_steps"]}
            for stat in ("final_return", "final_cost", "total_cost"):
                values = [f[stat] for f in finals]
                mean, std = mean_std(values)
                per_side[side][stat] = {"mean": mean, "std": std, "per_seed": values}
        if "ours" in per_side and "released" in per_side:
            per_side["agreement"] = {
                stat: agreement(per_side["ours"][stat]["per_seed"], per_side["released"][stat]["per_seed"])
                for stat in ("final_return", "final_cost", "total_cost")}
        result[arm] = per_side
    return result


def band(curves):
    """Mean and std over seeds at each env step all seeds logged: (steps, mean, std) per metric."""
    common = sorted(set.intersection(*(set(c["env_steps"]) for c in curves)))
    out = {"env_steps": common}
    for metric in METRICS:
        means, stds = [], []
        for step in common:
            values = [c[metric][c["env_steps"].index(step)] for c in curves]
            mean, std = mean_std(values)
            means.append(mean)
            stds.append(std)
        out[metric] = (means, stds)
    return out


def plot(sides, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    titles = {"episode_return": "episode return", "episode_cost": "episode cost",
              "cumulative_cost": "cost paid in training (cumulative)"}
    colours = {"base": "tab:gray", "shapo": "tab:blue"}
    styles = {"ours": "-", "released": "--"}
    names = {"ours": "shapo_jax", "released": "released code"}
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for side, by_arm in sides.items():
        for arm in ARMS:
            curves = list(by_arm[arm].values())
            if not curves:
                continue
            data = band(curves)
            x = data["env_steps"]
            for axis, metric in zip(axes, METRICS):
                mean, std = data[metric]
                label = f"{names[side]} {'SHAPO' if arm == 'shapo' else 'base'} ({len(curves)} seeds)"
                axis.plot(x, mean, styles[side], color=colours[arm], label=label)
                axis.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                  color=colours[arm], alpha=0.12 if side == "ours" else 0.07)
    for axis, metric in zip(axes, METRICS):
        axis.set_title(titles[metric])
        axis.set_xlabel("env steps per seed")
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value / 1000:g}k"))
        axis.grid(alpha=0.3)
    axes[1].axhline(COST_LIMIT, color="tab:red", linewidth=0.8, linestyle=":", label="cost limit")
    axes[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _summary(run_dir):
    path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    return {key: summary.get(key) for key in ("env_steps_per_second", "compile_seconds", "train_seconds", "device")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--released", default=DEFAULT_RELEASED, help="run.py's JSON")
    parser.add_argument("--ours-dir", required=True, help="holds our base/ and shapo/ shapo-train run directories")
    parser.add_argument("--run-ours", action="store_true", help="train our side into --ours-dir first")
    parser.add_argument("--seeds", type=int, default=3, help="with --run-ours: seeds per arm")
    parser.add_argument("--total-steps", type=int, default=200_000, help="with --run-ours: env steps per seed")
    parser.add_argument("--shapo-train", default=os.path.join(os.path.dirname(sys.executable), "shapo-train"))
    parser.add_argument("--final-updates", type=int, default=2, help="updates averaged for the final return/cost")
    parser.add_argument("--json", default=DEFAULT_JSON)
    parser.add_argument("--png", default=DEFAULT_PNG)
    args = parser.parse_args(argv)
    if not os.path.exists(args.released):
        parser.error(f"--released: {args.released} does not exist (make it with run.py)")
    if args.final_updates < 1:
        parser.error("--final-updates: must be at least 1")
    commands = {arm: ours_command(args.shapo_train, arm, args.seeds, args.total_steps,
                                  os.path.join(args.ours_dir, arm)) for arm in ARMS}
    if args.run_ours:
        for arm in ARMS:
            print("+ nice -n 19 " + " ".join(commands[arm]), flush=True)
            subprocess.run(["nice", "-n", "19"] + commands[arm], check=True)
    ours = {arm: read_ours(os.path.join(args.ours_dir, arm)) for arm in ARMS}
    if not any(ours.values()):
        raise SystemExit(f"compare.py: --ours-dir: no metrics.csv with a complete row in {args.ours_dir}/base or "
                         f"{args.ours_dir}/shapo (train them with --run-ours)")
    for arm in ARMS:
        if not ours[arm]:
            print(f"compare.py: no {arm} run of ours yet in {os.path.join(args.ours_dir, arm)}; left out", flush=True)
    released, released_data = read_released(args.released)
    sides = {"ours": ours, "released": released}
    horizon = common_horizon(sides)
    if horizon is None:
        raise SystemExit("compare.py: no complete update on either side yet")
    sides = truncate(sides, horizon)
    result = {
        "what": "SafetyPointButton1, TRPO-PID base and SHAPO (Fisher, target KL 1e-5), cost limit 10: shapo_jax "
                "against the paper's released code (montrealrobotics/shapo @ " + released_data.get("commit", "?") + ")",
        "definitions": {
            "final_return, final_cost": f"per seed, mean over the last {args.final_updates} updates of the mean "
                                        "return/cost of the training episodes that ended in each (20 per update)",
            "total_cost": "per seed, the cost of all training episodes (cumulative, at the end)",
            "mean, std": "over seeds; std is the sample std (ddof 1)",
            "within_seed_spread": "|ours - released| <= 2 Welch standard errors of the difference of means"},
        "compared_at_env_steps": horizon,
        "released_runs_finished": sum(bool(run.get("finished")) for run in released_data["runs"]),
        "arms": summarise(sides, args.final_updates),
        "ours_commands": {arm: " ".join(["shapo-train"] + commands[arm][1:]) for arm in ARMS},
        "ours_throughput": {arm: _summary(os.path.join(args.ours_dir, arm)) for arm in ARMS},
        "released_commands": sorted({run["command"] for run in released_data["runs"]}),
        "released_throughput": {f"{run['arm']}_seed{run['seed']}": {
            "steps_per_second_epochs": run.get("steps_per_second_epochs"),
            "steps_per_second_wall": run.get("steps_per_second_wall")} for run in released_data["runs"]},
        "released_versions": released_data.get("released_versions"),
        "cpu_model": released_data.get("cpu_model"),
        "note": "Both sides ran niced on a 2-core CPU shared with other work: their steps/s are contaminated by "
                "that load and are not a throughput comparison.",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(args.json + ".tmp", args.json)
    plot(sides, args.png, "SafetyPointButton1 TRPO-PID, base and SHAPO: shapo_jax (solid) vs the released code "
                          f"(dashed), mean +- std over seeds, to {horizon:,} env steps")
    for arm in ARMS:
        for side in ("ours", "released"):
            s = result["arms"][arm].get(side)
            if s:
                print(f"{arm:5s} {side:8s} ({s['seeds']} seeds): return {s['final_return']['mean']:.2f} +- "
                      f"{s['final_return']['std']:.2f}  cost {s['final_cost']['mean']:.2f} +- "
                      f"{s['final_cost']['std']:.2f}  total cost {s['total_cost']['mean']:.0f} +- "
                      f"{s['total_cost']['std']:.0f}")
    print(f"wrote {args.json} and {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

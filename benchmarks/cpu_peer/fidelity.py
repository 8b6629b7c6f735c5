"""Safety-Gymnasium's own per-episode statistics under a random policy: the fidelity fixture.

The MJX navigation tasks are ports of Safety-Gymnasium 1.0.0; ``tests/test_navigation_fidelity.py``
compares them against what this script measures in Safety-Gymnasium itself, so physics edits
made for speed (contact pairs, planar joints, solver settings) are judged against the original.
Runs in the separate Python 3.10 virtualenv made by ``setup.sh`` (no project imports):

  bash benchmarks/cpu_peer/setup.sh
  nice -n 10 benchmarks/cpu_peer/.venv/bin/python benchmarks/cpu_peer/fidelity.py \\
      --out tests/fixtures/safety_gymnasium_navigation.json

Policy: i.i.d. uniform actions in [-1, 1]^action_size (every navigation robot's action space is
exactly that box; checked), drawn from ``numpy.random.default_rng([seed, episode])``; episode
``e`` starts from ``env.reset(seed=seed + e)``, so any episode can be replayed alone (the same
seeds in every task: tasks measured with few episodes share action sequences, so their
deviations from the mean are correlated across tasks). An episode
runs until Safety-Gymnasium ends it: truncation at 1000 steps (``num_steps`` in
safety_gymnasium/builder.py) or termination (goal resample failure, MuJoCo exception).
Recorded per episode: steps, sum of reward, sum of |reward| (the dense reward is the change in
distance to the goal or box, SG tasks/*/goal_level0.py etc., so under a random policy its
signed mean is near 0 but its absolute mean is the agent's radial speed: a low-noise probe of the
robot's dynamics), sum of cost (``constrain_indicator`` makes each step's cost 0 or 1,
builder.py ``_cost``), and whether any step had cost > 0. Per task: wall time, steps/s and the
command that measured it. Summary per task: mean reward and |reward| per step, mean cost per
step and rate of episodes with any cost, each with its standard error over episodes (per-step
means are taken per episode first, so an episode is one sample). The JSON is rewritten after
every task, so an interrupted run keeps the tasks it finished; ``--tasks`` with an existing
``--out`` adds to it, and ``--merge A.json B.json`` adds the tasks of runs made in parallel.

Default episodes: 100 for the paper tasks (SafetyPointGoal1, SafetyPointButton1; run first),
20 for the other 16. Each SG reset rebuilds the MuJoCo model (~0.9 s) and 1000 steps take
0.4 s (level 0/1) to 1.2 s (level 2) on a free core, so the default run is ~20-25 min there.
The committed fixture was measured niced on a 2-core AMD EPYC shared with four other jobs (load
~9-12), where SG ran at only 30-90 steps/s: 47 min wall clock in all, as parallel processes:
SafetyPointGoal1 (100 episodes, 20 min) and SafetyPointButton1 (100, 27 min) in one process
each, SafetyPointGoal0 (20, 4 min), the other 15 with ``--episodes 10`` in three processes of
five tasks (14-24 min each), then merged with ``--merge`` (per-task ``command``, ``date`` and
``wall_s`` in the JSON). Afterwards, with the machine quieter (140-310 steps/s), the six other
Point tasks were measured again with ``--episodes 30`` (2-4 min each) and merged over the
10-episode rows: 10 episodes had put PointPush0's |reward| per step 20% high. Car tasks: 10.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import _version, cpu_model  # noqa: E402  (the same SG venv's peer script)

PAPER_TASKS = ["SafetyPointGoal1", "SafetyPointButton1"]
ALL_TASKS = PAPER_TASKS + [
    f"Safety{robot}{task}{level}"
    for robot in ("Point", "Car")
    for task in ("Goal", "Button", "Push")
    for level in (0, 1, 2)
    if f"Safety{robot}{task}{level}" not in PAPER_TASKS
]


def mean_se(x):
    """Mean and standard error of the mean (ddof=1) of per-episode samples."""
    x = np.asarray(x, dtype=np.float64)
    se = float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(np.mean(x)), se


def summarize(steps, reward_sum, abs_reward_sum, cost_sum, any_cost):
    """The four compared statistics; the rate's SE is the binomial one, sqrt(p(1-p)/n)."""
    steps = np.asarray(steps, dtype=np.float64)
    r_mean, r_se = mean_se(np.asarray(reward_sum) / steps)
    a_mean, a_se = mean_se(np.asarray(abs_reward_sum) / steps)
    c_mean, c_se = mean_se(np.asarray(cost_sum) / steps)
    p = float(np.mean(any_cost))
    n = len(steps)
    return {
        "episodes": n,
        "mean_steps": float(np.mean(steps)),
        "reward_per_step": r_mean, "reward_per_step_se": r_se,
        "abs_reward_per_step": a_mean, "abs_reward_per_step_se": a_se,
        "cost_per_step": c_mean, "cost_per_step_se": c_se,
        "cost_episode_rate": p, "cost_episode_rate_se": math.sqrt(p * (1 - p) / n),
    }


def run_task(task, episodes, seed):
    import safety_gymnasium

    env = safety_gymnasium.make(f"{task}-v0")
    low, high = env.action_space.low, env.action_space.high
    assert np.all(low == -1.0) and np.all(high == 1.0), (task, low, high)
    shape = env.action_space.shape
    rows = {"steps": [], "reward_sum": [], "abs_reward_sum": [], "cost_sum": [], "any_cost": [], "terminated": []}
    start = time.perf_counter()
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        rng = np.random.default_rng([seed, ep])
        n, rsum, asum, csum, anyc = 0, 0.0, 0.0, 0.0, False
        while True:
            _, reward, cost, terminated, truncated, _ = env.step(rng.uniform(-1.0, 1.0, shape))
            n += 1
            rsum += float(reward)
            asum += abs(float(reward))
            csum += float(cost)
            anyc = anyc or float(cost) > 0.0
            if terminated or truncated:
                break
        rows["steps"].append(n)
        rows["reward_sum"].append(rsum)
        rows["abs_reward_sum"].append(asum)
        rows["cost_sum"].append(csum)
        rows["any_cost"].append(bool(anyc))
        rows["terminated"].append(bool(terminated))
    wall = time.perf_counter() - start
    env.close()
    total = int(sum(rows["steps"]))
    return {"task": task, "env_id": f"{task}-v0", "seed": seed, "wall_s": round(wall, 2),
            "steps_total": total, "sg_steps_per_s": round(total / wall, 1),
            "summary": summarize(rows["steps"], rows["reward_sum"], rows["abs_reward_sum"], rows["cost_sum"],
                                 rows["any_cost"]),
            "episodes": rows}


def _write(report, path):
    """Atomically, so a run killed mid-write leaves the previous complete file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="*", default=ALL_TASKS, help="task names without -v0 (default: all 18)")
    p.add_argument("--episodes", type=int, default=None,
                   help="episodes per task (default: 100 for the paper tasks, 20 otherwise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--merge", nargs="*", default=None, metavar="JSON",
                   help="instead of running: add the tasks of these fidelity JSONs to --out")
    args = p.parse_args(argv)

    report = None
    if os.path.exists(args.out):
        with open(args.out) as f:
            report = json.load(f)
    if report is None:
        report = {"tasks": {}}
    report.update({
        "benchmark": "safety_gymnasium_navigation_fidelity",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "device": {"platform": "cpu", "cpu_model": cpu_model(), "host_cpus": os.cpu_count(), "machine": platform.machine()},
        "versions": {p: _version(p) for p in ("safety-gymnasium", "gymnasium", "mujoco", "numpy")}
        | {"python": platform.python_version()},
        "policy": "iid uniform actions in [-1,1]^action_size, rng numpy.random.default_rng([seed, episode]); "
                  "reset(seed=seed + episode)",
        "statistics": "per episode: steps, reward_sum, abs_reward_sum, cost_sum, any_cost; summary over episodes of "
                      "reward_sum/steps, abs_reward_sum/steps, cost_sum/steps (mean, SE ddof=1) and any_cost "
                      "(rate, binomial SE)",
    })
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if args.merge is not None:
        for path in args.merge:
            with open(path) as f:
                other = json.load(f)
            for task, row in other["tasks"].items():
                row.setdefault("command", other["command"])
                row.setdefault("date", other["date"])
                report["tasks"][task] = row
        report["tasks"] = {t: report["tasks"][t] for t in ALL_TASKS if t in report["tasks"]}
        _write(report, args.out)
        print(f"merged {len(args.merge)} files into {args.out}: {len(report['tasks'])} tasks")
        return 0
    for task in args.tasks:
        episodes = args.episodes or (100 if task in PAPER_TASKS else 20)
        row = run_task(task, episodes, args.seed)
        row["command"], row["date"] = report["command"], report["date"]
        report["tasks"][task] = row
        s = row["summary"]
        print(f"{task}: {episodes} eps in {row['wall_s']:.0f} s ({row['sg_steps_per_s']:,.0f} steps/s)  "
              f"reward/step {s['reward_per_step']:.5f}±{s['reward_per_step_se']:.5f}  "
              f"|reward|/step {s['abs_reward_per_step']:.5f}±{s['abs_reward_per_step_se']:.5f}  "
              f"cost/step {s['cost_per_step']:.4f}±{s['cost_per_step_se']:.4f}  "
              f"cost-episode rate {s['cost_episode_rate']:.3f}±{s['cost_episode_rate_se']:.3f}", flush=True)
        _write(report, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

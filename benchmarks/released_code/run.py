"""The paper's released code (SafePO fork, PyTorch) on SafetyPointButton1, base and SHAPO TRPO-PID.

Runs github.com/montrealrobotics/shapo @ 1bb7704 (branch ``safepo``) from a checkout outside this
repo, in its own Python 3.10 venv (``setup.sh``), and collects per-epoch curves into one JSON:

  bash benchmarks/released_code/setup.sh /tmp/shapo_released /tmp/released_venv
  python benchmarks/released_code/run.py --released-code /tmp/shapo_released \\
      --python /tmp/released_venv/bin/python --seeds 0 1 2 --total-steps 200000 \\
      --out /tmp/released_runs --json benchmarks/results/released_code_PointButton1.json

Each run is the released entry point, as its README runs it::

  trpo_pid.py --task SafetyPointButton1-v0 --use-shapo-actor True|False
      --perturbation-target-kl 0.00001 --cost-limit 10.0 --seed S --total-steps N

started as ``nice -n 19`` with ``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WANDB_MODE=disabled``, at most
``--jobs`` at a time. It is started through a short launcher (``LAUNCHER`` below) that changes no
number the code computes; it only
  * pins torch to one intra-op thread (the script calls ``torch.set_num_threads(4)``, which
    OMP_NUM_THREADS does not override; on a shared 2-core CPU 4 threads per run only contend),
  * creates the directory ``wandb.run.dir`` names (with wandb disabled it does not exist, and the
    script's per-epoch ``torch.save`` there fails),
  * appends one line per finished training episode to ``episodes.csv`` (the running total cost the
    script stores, the epoch, the time): the released logger's ``Metrics/TotalCost`` column is the
    epoch *mean* of that running total, not its value at the epoch's end, so the exact cumulative
    training cost at each epoch end is read from here.
The released code keeps its 5 Safety-Gymnasium envs in 5 subprocesses (``SafetyAsyncVectorEnv``),
so one run is 6 processes.

Running the same command again starts only what is missing: runs not started, and runs that failed
or died before their last epoch (afresh), still ``--jobs`` at a time counting the runs an earlier
invocation left running (found by their command line in /proc).

``--parse-only`` rebuilds the JSON from an ``--out`` directory whose runs have finished (or are
still running: finished epochs are read). Curves per arm and seed: epoch, env steps, EpRet and
EpCost (the released logger's: epoch mean of the mean over the last 50 training episodes),
cumulative training cost at the epoch's end, the logged TotalCost, the Lagrange multiplier, and
the seconds per epoch from the script's own ``Time/Total``; per run also wall time and steps/s.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

TASK = "SafetyPointButton1-v0"
COMMIT = "1bb7704"
ARMS = {"base": "False", "shapo": "True"}
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JSON = os.path.normpath(os.path.join(HERE, "..", "results", "released_code_PointButton1.json"))

# Run by the released venv's python as ``python -c LAUNCHER EPISODES_CSV SCRIPT ARGS...``.
LAUNCHER = r"""
import csv, os, runpy, sys, time
import torch
torch.set_num_threads(1)
torch.set_num_threads = lambda n: None
import wandb
_init = wandb.init
def _init_with_dir(*args, **kwargs):
    run = _init(*args, **kwargs)
    os.makedirs(run.dir, exist_ok=True)
    return run
wandb.init = _init_with_dir
from safepo.common import logger as _logger
_episodes = open(sys.argv[1], "w", newline="")
_writer = csv.writer(_episodes)
_writer.writerow(["total_cost", "ep_ret_last50", "ep_cost_last50", "time"])
_store = _logger.EpochLogger.store
def _store_and_record(self, *args, **kwargs):
    if "Metrics/TotalCost" in kwargs:
        _writer.writerow([float(kwargs["Metrics/TotalCost"]), float(kwargs["Metrics/EpRet"]),
                          float(kwargs["Metrics/EpCost"]), time.time()])
        _episodes.flush()
    return _store(self, *args, **kwargs)
_logger.EpochLogger.store = _store_and_record
script = sys.argv[2]
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""


def cpu_model():
    """The CPU's model name, as ``cpu_peer/run.py`` (stdlib only) reads it for the SG figures."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "cpu_peer", "run.py")
    spec = importlib.util.spec_from_file_location("cpu_peer_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cpu_model()


def run_name(arm, seed):
    return f"{arm}_seed{seed}"


def released_args(arm, seed, total_steps, perturbation_target_kl, cost_limit, log_dir):
    """The released script's own command-line arguments for one run."""
    return ["--task", TASK, "--use-shapo-actor", ARMS[arm],
            "--perturbation-target-kl", repr(perturbation_target_kl), "--cost-limit", repr(cost_limit),
            "--seed", str(seed), "--total-steps", str(total_steps),
            "--log-dir", log_dir, "--experiment", arm]


def import_paths(checkout):
    """What the released code imports from: its checkout and safepo/single_agent (for trpo_pid.py's
    ``from shapo import *``); it is not pip-installed."""
    return [checkout, os.path.join(checkout, "safepo", "single_agent")]


def launch(args, arm, seed):
    """Starts one released run in the background; returns (Popen, record)."""
    name = run_name(arm, seed)
    run_dir = os.path.join(args.out, name)
    os.makedirs(run_dir, exist_ok=True)
    script = os.path.join(args.released_code, "safepo", "single_agent", "trpo_pid.py")
    script_args = released_args(arm, seed, args.total_steps, args.perturbation_target_kl, args.cost_limit,
                                os.path.join(run_dir, "logs"))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled",
               WANDB_DIR=run_dir, PYTHONPATH=os.pathsep.join(import_paths(args.released_code)))
    command = ["nice", "-n", "19", args.python, "-c", LAUNCHER, os.path.join(run_dir, "episodes.csv"),
               script] + script_args
    record = {"arm": arm, "seed": seed, "command": "python " + shlex.join([script] + script_args),
              "launcher": "nice -n 19, OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WANDB_MODE=disabled, torch 1 thread",
              "start": time.time()}
    log = open(os.path.join(run_dir, "stdout.log"), "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
    _write_json(os.path.join(run_dir, "run.json"), record)
    return process, record, log


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _running_elsewhere(run_dir):
    """Whether a process (started by another invocation of this script) is running this run."""
    marker = os.path.join(run_dir, "episodes.csv").encode()
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker in f.read():
                        return True
            except OSError:
                continue
    return False


def _state(args, arm, seed):
    """new, running (by another invocation), done, or failed (ended or died before the last epoch)."""
    run_dir = os.path.join(args.out, run_name(arm, seed))
    record_path = os.path.join(run_dir, "run.json")
    if not os.path.exists(record_path):
        return "new"
    if _running_elsewhere(run_dir):
        return "running"
    with open(record_path) as f:
        record = json.load(f)
    curve = parse_run(run_dir)
    finished = curve is not None and curve["env_steps"] and curve["env_steps"][-1] >= args.total_steps
    return "done" if finished and record.get("returncode", 0) == 0 else "failed"


def run_all(args):
    """Starts every run not done or running yet (a failed one afresh), ``--jobs`` at a time,
    counting runs that another invocation left running."""
    states = {(arm, seed): _state(args, arm, seed) for seed in args.seeds for arm in args.arms}
    queue = [key for key, state in states.items() if state in ("new", "failed")]
    elsewhere = [key for key, state in states.items() if state == "running"]
    for arm, seed in queue:
        if states[(arm, seed)] == "failed":
            shutil.rmtree(os.path.join(args.out, run_name(arm, seed)))
            print(f"{run_name(arm, seed)}: failed or died before its last epoch; starting it again", flush=True)
    running = []
    while queue or running or elsewhere:
        elsewhere = [key for key in elsewhere if _running_elsewhere(os.path.join(args.out, run_name(*key)))]
        while queue and len(running) + len(elsewhere) < args.jobs:
            running.append(launch(args, *queue.pop(0)))
        time.sleep(5)
        for item in list(running):
            process, record, log = item
            if process.poll() is not None:
                record["end"] = time.time()
                record["returncode"] = process.returncode
                log.close()
                _write_json(os.path.join(args.out, run_name(record["arm"], record["seed"]), "run.json"), record)
                running.remove(item)
                print(f"{run_name(record['arm'], record['seed'])}: rc {process.returncode}, "
                      f"{record['end'] - record['start']:.0f} s", flush=True)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def episodes_from_running_means(running_means, window=50):
    """Each episode's own value from the running mean over the last ``window`` episodes.

    The released script stores, at each episode end, ``np.mean`` of a ``deque(maxlen=window)``
    just appended to. While the deque fills, ``m_k = (x_1 + ... + x_k) / k``; once full,
    ``m_k - m_{k-1} = (x_k - x_{k-window}) / window``. Both are inverted exactly (in float64).
    """
    values = []
    for k, mean in enumerate(running_means, start=1):
        if k <= window:
            values.append(k * mean - (k - 1) * running_means[k - 2] if k > 1 else mean)
        else:
            values.append(values[k - 1 - window] + window * (mean - running_means[k - 2]))
    return values


def parse_run(run_dir, episodes_per_epoch=20):
    """Per-epoch curves of one released run from its progress.csv and the launcher's episodes.csv.

    SafetyPointButton1 episodes are 1000 steps and never terminate early, and the 5 envs step
    4000 times per epoch, so exactly ``episodes_per_epoch`` = 20 episodes end in each epoch
    (checked: the logged TotalCost, an epoch mean of the running total, is recomputed from them).
    ``episode_return``/``episode_cost`` are the means over the episodes that ended in the epoch,
    as shapo-train's metrics.csv defines them; ``ep_ret``/``ep_cost`` the released logger's.
    """
    found = glob.glob(os.path.join(run_dir, "logs", "**", "progress.csv"), recursive=True)
    if not found:
        return None
    rows = [r for r in _read_csv(found[0]) if r.get("Train/Epoch")]
    episodes_path = os.path.join(run_dir, "episodes.csv")
    episodes = _read_csv(episodes_path) if os.path.exists(episodes_path) else []
    totals = [float(e["total_cost"]) for e in episodes]
    returns = episodes_from_running_means([float(e["ep_ret_last50"]) for e in episodes])
    costs = episodes_from_running_means([float(e["ep_cost_last50"]) for e in episodes])
    costs_from_totals = [b - a for a, b in zip([0.0] + totals[:-1], totals)]
    curve = {"epoch": [], "env_steps": [], "episode_return": [], "episode_cost": [], "cumulative_cost": [],
             "ep_ret": [], "ep_cost": [], "logged_total_cost": [], "lagrange_multiplier": [], "epoch_seconds": []}
    checks = {"max_abs_error_recovered_cost": max((abs(a - b) for a, b in zip(costs, costs_from_totals)), default=None),
              "max_abs_error_logged_total_cost": 0.0}
    for r in rows:
        epoch = int(float(r["Train/Epoch"]))
        first, last = (epoch - 1) * episodes_per_epoch, epoch * episodes_per_epoch
        complete = len(totals) >= last
        curve["epoch"].append(epoch)
        curve["env_steps"].append(int(float(r["Train/TotalSteps"])))
        curve["episode_return"].append(sum(returns[first:last]) / episodes_per_epoch if complete else None)
        curve["episode_cost"].append(sum(costs_from_totals[first:last]) / episodes_per_epoch if complete else None)
        curve["cumulative_cost"].append(totals[last - 1] if complete else None)
        curve["ep_ret"].append(float(r["Metrics/EpRet"]))
        curve["ep_cost"].append(float(r["Metrics/EpCost"]))
        curve["logged_total_cost"].append(float(r["Metrics/TotalCost"]))
        curve["lagrange_multiplier"].append(float(r["Train/LagragianMultiplier"]))
        curve["epoch_seconds"].append(float(r["Time/Total"]))
        if complete:
            error = abs(sum(totals[first:last]) / episodes_per_epoch - curve["logged_total_cost"][-1])
            checks["max_abs_error_logged_total_cost"] = max(checks["max_abs_error_logged_total_cost"], error)
    curve["episodes"] = {"return": returns, "cost": costs_from_totals}
    curve["progress_csv"] = found[0]
    curve["checks"] = checks
    return curve


def summarise(args):
    runs = []
    for arm in args.arms:
        for seed in args.seeds:
            run_dir = os.path.join(args.out, run_name(arm, seed))
            record_path = os.path.join(run_dir, "run.json")
            if not os.path.exists(record_path):
                continue
            with open(record_path) as f:
                record = json.load(f)
            curve = parse_run(run_dir)
            if curve is None or not curve["epoch"]:
                continue
            steps = curve["env_steps"][-1]
            record = dict(record)
            if "end" not in record and steps >= args.total_steps:
                # Started by an invocation that was stopped before its run ended (the run went on):
                # its end is when it wrote its last epoch.
                record["end"] = os.path.getmtime(curve.pop("progress_csv"))
                record["end_from"] = "progress.csv modification time"
            curve.pop("progress_csv", None)
            if "end" in record:
                record["wall_seconds"] = record["end"] - record["start"]
                record["steps_per_second_wall"] = steps / record["wall_seconds"]
            record["steps_per_second_epochs"] = steps / sum(curve["epoch_seconds"])
            record["finished"] = record.get("returncode", 0) == 0 and steps >= args.total_steps
            record["final"] = {key: curve[key][-1] for key in
                               ("env_steps", "episode_return", "episode_cost", "cumulative_cost", "ep_ret", "ep_cost")}
            record["checks"] = curve.pop("checks")
            record["curve"] = curve
            runs.append(record)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "what": "The paper's released code (github.com/montrealrobotics/shapo, branch safepo), TRPO-PID base "
                "and SHAPO on SafetyPointButton1-v0, cost limit 10, perturbation target KL 1e-5, per seed.",
        "commit": COMMIT,
        "task": TASK,
        "total_steps": args.total_steps,
        "steps_per_epoch": 20000,
        "metrics": {"episode_return, episode_cost": "mean over the training episodes that ended in the epoch "
                                                    "(stochastic policy; as shapo-train's metrics.csv)",
                    "ep_ret, ep_cost": "released logger: epoch mean of the running mean over the last 50 "
                                        "training episodes (stochastic policy)",
                    "episodes": "each training episode's return and cost, in order (return recovered exactly "
                                "from the logged running means, cost from the running total)",
                    "cumulative_cost": "sum of the costs of all training episodes finished by the epoch's end "
                                       "(from the running total the script stores at each episode end)",
                    "logged_total_cost": "released logger's Metrics/TotalCost: the epoch mean of that running total",
                    "steps_per_second_epochs": "env steps / sum of the script's Time/Total (rollout + update; no "
                                               "start-up)",
                    "steps_per_second_wall": "env steps / process wall time (start-up included)"},
        "runs": runs,
        "released_python": args.python,
        "released_versions": _released_versions(args.python),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_parse": load,
        "note": f"Runs launched {args.jobs} at a time with nice -n 19 on a CPU shared with other work; "
                "the steps/s figures are contaminated by that load.",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _released_versions(python):
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "['torch', 'safety-gymnasium', 'mujoco', 'gymnasium', 'numpy']}))")
    try:
        return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError):
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--released-code", required=True, help="checkout of montrealrobotics/shapo @ 1bb7704")
    parser.add_argument("--python", required=True, help="python of the venv made by setup.sh")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["base", "shapo"], choices=sorted(ARMS))
    parser.add_argument("--total-steps", type=int, default=200_000)
    parser.add_argument("--perturbation-target-kl", type=float, default=1e-5)
    parser.add_argument("--cost-limit", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs at a time, counting those another invocation left running (each run is 6 "
                             "processes of ~0.8 GB resident; 6 at once ran a 24 GB machine out of memory)")
    parser.add_argument("--out", required=True, help="directory for the runs' logs (outside the repo)")
    parser.add_argument("--json", default=DEFAULT_JSON)
    parser.add_argument("--parse-only", action="store_true", help="only rebuild --json from --out")
    args = parser.parse_args(argv)
    script = os.path.join(args.released_code, "safepo", "single_agent", "trpo_pid.py")
    if not os.path.isfile(script):
        parser.error(f"--released-code: no safepo/single_agent/trpo_pid.py under {args.released_code}")
    if not os.access(args.python, os.X_OK):
        parser.error(f"--python: {args.python} is not an executable")
    if args.total_steps % 20000:
        parser.error("--total-steps: must be a multiple of the released code's 20000 steps per epoch")
    args.released_code = os.path.abspath(args.released_code)
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    if not args.parse_only:
        run_all(args)
    result = summarise(args)
    _write_json(args.json, result)
    print(f"wrote {args.json}: {len(result['runs'])} runs")


if __name__ == "__main__":
    sys.exit(main())

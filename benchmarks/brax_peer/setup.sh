#!/usr/bin/env bash
# Creates benchmarks/brax_peer/.venv: Python 3.11 with Brax 0.14.2 and the JAX it runs on, for
# throughput.py's "ours vs brax.training.agents.ppo" ratio. Brax 0.14.2's PPO trainer calls
# jax.device_put_replicated, which jax 0.10 removed, so it cannot run in the project's venv;
# here it keeps the pins it works with, and this repository is installed --no-deps so the peer
# trains on the very same shapo_envs task (the source tree, editable).
#   bash benchmarks/brax_peer/setup.sh                 # CPU
#   BRAX_PEER_CUDA=1 bash benchmarks/brax_peer/setup.sh   # NVIDIA GPU: jax[cuda12] of the same version
#   python benchmarks/throughput.py --quick --out FILE.json   (finds .venv/bin/python here; --brax-python overrides)
# PYTHON311 overrides the interpreter (default: pyenv's 3.11, else python3.11 on PATH).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON311:-}"
if [ -z "$py" ]; then
  py="$(command -v python3.11 || true)"
  [ -n "$py" ] || { echo "brax_peer/setup.sh: no python3.11 on PATH; set PYTHON311=/path/to/python3.11" >&2; exit 1; }
fi
jax_req="jax==0.9.2"
[ "${BRAX_PEER_CUDA:-0}" = 1 ] && jax_req="jax[cuda12]==0.9.2"
"$py" -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q --upgrade pip
# the last set on which Brax 0.14.2's PPO ran (the project's pins before it moved to jax 0.10)
"$here/.venv/bin/pip" install -q "$jax_req" "jaxlib==0.9.2" "flax==0.12.6" "optax==0.2.8" "chex==0.1.92" \
  "brax==0.14.2" "mujoco==3.17.0" "mujoco-mjx==3.17.0" "orbax-checkpoint==0.12.8" "numpy>=1.26"
"$here/.venv/bin/pip" install -q --no-deps -e "$root"
"$here/.venv/bin/python" -c "import jax, brax, mujoco, shapo_envs; from brax.training.agents.ppo import train; print('jax', jax.__version__, 'brax', brax.__version__, 'mujoco', mujoco.__version__, jax.devices())"

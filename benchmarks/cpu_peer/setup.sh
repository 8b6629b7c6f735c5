#!/usr/bin/env bash
# Creates a Python 3.10 venv with Safety-Gymnasium 1.0.0 from PyPI (the CPU safe-RL stack SHAPO's
# paper code runs on), kept apart from the project's JAX venv.
#   bash benchmarks/cpu_peer/setup.sh [VENV_DIR [EXTRA_PACKAGE ...]]
#   benchmarks/cpu_peer/.venv/bin/python benchmarks/cpu_peer/run.py --out FILE.json   (see run.py)
# VENV_DIR defaults to benchmarks/cpu_peer/.venv; EXTRA_PACKAGEs are pip requirements installed
# beside it (released_code/setup.sh adds torch and the released code's requirements this way).
# PYTHON310 overrides the interpreter (default: pyenv's 3.10.13, else python3.10 on PATH).
# OmniSafe 0.5.0 (PPO-Lag) is not installed: from PyPI it pins safety-gymnasium 0.4.1 and
# mujoco 2.3.0 (downgrading the env under test) and pulls torch with CUDA wheels (several GB).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.venv}"
extra=("${@:2}")
py="${PYTHON310:-}"
if [ -z "$py" ]; then
  if [ -x "${PYENV_ROOT:-$HOME/.pyenv}/versions/3.10.13/bin/python" ]; then
    py="${PYENV_ROOT:-$HOME/.pyenv}/versions/3.10.13/bin/python"
  else
    py="$(command -v python3.10)"
  fi
fi
"$py" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "safety-gymnasium==1.0.0" ${extra[@]+"${extra[@]}"}
"$venv/bin/python" -c "import safety_gymnasium, mujoco; print('safety-gymnasium', safety_gymnasium.__version__, 'mujoco', mujoco.__version__)"

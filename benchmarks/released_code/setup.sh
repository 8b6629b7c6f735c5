#!/usr/bin/env bash
# Gets the paper's released code and a Python 3.10 venv to run it in, both OUTSIDE this repo
# (none of the released code is copied into shapo_jax).
#   bash benchmarks/released_code/setup.sh CHECKOUT_DIR VENV_DIR [GIT_DIR_OR_URL]
#   e.g. bash benchmarks/released_code/setup.sh /tmp/shapo_released /tmp/released_venv
# CHECKOUT_DIR receives github.com/montrealrobotics/shapo at commit 1bb7704 (branch safepo) via
# `git archive` from GIT_DIR_OR_URL (a local bare clone or the GitHub URL; default the URL);
# skipped if CHECKOUT_DIR already holds safepo/single_agent/trpo_pid.py.
# VENV_DIR receives Safety-Gymnasium 1.0.0 (it pins mujoco 2.3.3, gymnasium 0.28.1), torch from
# PyPI (the default wheel: it brings several GB of CUDA libraries and runs on the CPU) and the
# released code's own requirements from its setup.py (wandb is imported unconditionally; run it
# with WANDB_MODE=disabled). The released code is not pip-installed: run.py puts the checkout and
# its safepo/single_agent (for its `from shapo import *`) on PYTHONPATH.
# PYTHON310 overrides the interpreter (default: pyenv's 3.10.13, else python3.10 on PATH).
set -euo pipefail
checkout="${1:?usage: setup.sh CHECKOUT_DIR VENV_DIR [GIT_DIR_OR_URL]}"
venv="${2:?usage: setup.sh CHECKOUT_DIR VENV_DIR [GIT_DIR_OR_URL]}"
source="${3:-https://github.com/montrealrobotics/shapo.git}"
commit=1bb7704
if [ ! -f "$checkout/safepo/single_agent/trpo_pid.py" ]; then
  mkdir -p "$checkout"
  if [ -d "$source" ]; then
    git --git-dir="$source" archive "$commit" | tar -x -C "$checkout"
  else
    tmp="$(mktemp -d)"
    git clone --quiet --branch safepo "$source" "$tmp/shapo"
    git -C "$tmp/shapo" archive "$commit" | tar -x -C "$checkout"
    rm -rf "$tmp"
  fi
  echo "$commit" > "$checkout/RELEASED_COMMIT"
fi
# the venv: cpu_peer's Safety-Gymnasium venv plus torch and the released code's requirements
bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../cpu_peer/setup.sh" "$venv" torch joblib scipy \
  "pyyaml>=6.0" "tensorboard>=2.8.0" "wandb>=0.13.0" "matplotlib>=3.7.1" "seaborn>=0.12.2" "pandas>=1.5.3" "rich>=13.3.0"
"$venv/bin/python" -c "import torch; print('torch', torch.__version__)"

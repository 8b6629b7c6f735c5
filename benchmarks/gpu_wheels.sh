#!/usr/bin/env bash
# Wheels for a GPU machine whose Python already has JAX with CUDA (and flax, optax, chex, orbax,
# numpy, scipy, matplotlib, tqdm) but no MuJoCo, MJX, Brax or tyro, and no package registry: the
# device tool's nvidia-h200 image (Python 3.12, jax 0.11.2 with CUDA 13, flax 0.12.10 as read on
# 2026-11-30). Downloads them into .whl/ (ignored; about 38 MB) for the machine's Python version:
#   bash benchmarks/gpu_wheels.sh                  # here, with a registry
# then, on the GPU machine, from the repository root (this is the command that ran gpu.sh there):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD:$PWD/envs     # the package from its source tree, --no-deps
#   PYTHON=$(command -v python3) BRAX_PYTHON=$(command -v python3) bash benchmarks/gpu.sh
# The versions are the project's pins (pyproject.toml) where it pins them; their own requirements
# that such an image lacks are listed beside them. GPU_PYTHON_VERSION overrides 3.12.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
grep -qx '/.whl/' "$(git rev-parse --git-dir)/info/exclude" 2> /dev/null \
  || { mkdir -p "$(git rev-parse --git-dir)/info"; echo /.whl/ >> "$(git rev-parse --git-dir)/info/exclude"; }
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" \
  --implementation cp "${platforms[@]}" -d .whl \
  mujoco==3.17.0 mujoco-mjx==3.17.0 brax==0.14.2 tyro==1.0.16 tensorboardx==2.6.5 \
  trimesh==5.2.0 glfw==2.11.0 pyopengl==3.1.10 websockets==15.0.1 \
  docstring-parser==0.18.0 typeguard==4.6.0 shtab==1.13.0 \
  ml-collections==1.1.0 jaxopt==0.8.5 flask==3.1.3 flask-cors==6.0.5 blinker==1.9.0 itsdangerous==2.2.0
du -sh .whl

"""The README's optax snippet runs and does what it says."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_optax_snippet_takes_the_gradient_at_the_perturbed_point():
    snippet = next(block for block in python_blocks() if "sharpness_aware(rho=0.05)" in block)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)

    # Reference computed by hand: eps = rho g/|g| at w = 0, gradient there, then Adam's
    # first step, which is -lr * g' / (|g'| + 1e-8) element-wise.
    x, y, w0 = np.eye(3), np.ones(3), np.zeros(3)
    gradient = lambda w: 2.0 / 3.0 * x.T @ (x @ w - y)
    g = gradient(w0)
    perturbed = gradient(w0 + 0.05 * g / np.linalg.norm(g))
    expected = w0 - 1e-2 * perturbed / (np.abs(perturbed) + 1e-8)
    np.testing.assert_allclose(np.asarray(namespace["params"]["w"]), expected, rtol=1e-5)


def test_readme_two_commands_are_the_ci_command():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
    assert test_command in text and test_command in ci

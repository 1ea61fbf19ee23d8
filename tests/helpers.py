"""What the script tests share: running a script as a user would, and reading back its run."""

import glob
import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *flags, cwd):
    """Run a training script as a user would; returns the completed process (runs/ lands in cwd)."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *flags], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def only_run_dir(cwd):
    (run_dir,) = glob.glob(os.path.join(cwd, "runs", "*"))
    return run_dir


def values(scalars, tag):
    return [value for _, value in scalars[tag]]


def two_mode_dataset(num: int, noise: float):
    """(obs, actions) with a = 0.3 s_0 +- 0.6 + noise: at every state two modes, whose position depends on the state."""
    obs = torch.rand(num, 2) * 2 - 1
    signs = torch.randint(0, 2, (num, 1)).float() * 2 - 1
    return obs, 0.3 * obs[:, :1] + 0.6 * signs + noise * torch.randn(num, 1)

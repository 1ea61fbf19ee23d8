"""What the script tests share: running a script as a user would, and reading back its run."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmark.events import read_scalars

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


def check_two_stage_run(cwd):
    """A finished two-stage GoRL run: evaluations logged, stage 0 then 1, finite decoder losses; returns its scalars."""
    scalars = read_scalars(only_run_dir(cwd))
    assert len(scalars["eval/episodic_return"]) >= 3
    assert values(scalars, "charts/stage")[0] == 0 and values(scalars, "charts/stage")[-1] == 1
    assert np.isfinite(values(scalars, "losses/decoder_val")).all()
    return scalars


def check_reload(script, cwd, final_eval, eval_episodes=1):
    """The checkpoint acts again: its deterministic return is the run's last evaluation. Returns the checkpoint's path."""
    (checkpoint,) = glob.glob(os.path.join(only_run_dir(cwd), "*.pt"))
    reloaded = run_script(script, "--eval-checkpoint", checkpoint, "--eval-episodes", str(eval_episodes), cwd=cwd)
    assert reloaded.returncode == 0, reloaded.stderr
    assert float(reloaded.stdout.split("deterministic return ")[1].split()[0]) == pytest.approx(final_eval, abs=0.01)
    return checkpoint


def check_one_line_error(result, message):
    """The script refused its input as a user should see it: exit 1 and one line on stderr, starting with message."""
    assert result.returncode == 1
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

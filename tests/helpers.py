"""What the script tests share: running a script as a user would, and reading back its run."""

import glob
import os
import subprocess
import sys

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

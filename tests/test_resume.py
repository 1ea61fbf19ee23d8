"""Resumable training, all four scripts: a run interrupted at a checkpoint and resumed ends exactly as the same run
uninterrupted (same seed, CPU): the same final weights, the same final return and the same logged curves."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from benchmark.events import read_scalars
from tests.helpers import ROOT, check_one_line_error, only_run_dir, run_script

FAST_SAC = ["--batch-size", "64", "--log-every", "250", "--eval-every", "500", "--eval-episodes", "1"]
FAST_PPO = ["--num-envs", "8", "--num-steps", "128", "--eval-every", "2048", "--eval-episodes", "2", "--decoder-epochs", "3"]
RUNS = {
    # DM Control envs pickle with their physics; gymnasium's MuJoCo envs (Hopper-v5) have it restored by hand
    "gaussian_sac.py": ["--env-id", "CartpoleBalance", "--total-timesteps", "1500", "--learning-starts", "200", *FAST_SAC],
    "gorl_sac.py": ["--env-id", "Hopper-v5", "--total-timesteps", "1500", "--learning-starts", "200", *FAST_SAC]
    + ["--num-stages", "2", "--decoder-data-steps", "200", "--decoder-epochs", "5", "--critic-refresh-steps", "100"],
    "gaussian_ppo.py": ["--env-id", "Hopper-v5", "--total-timesteps", "6144", *FAST_PPO[:-2]],
    "gorl_ppo.py": ["--env-id", "CartpoleBalance", "--total-timesteps", "12000", "--num-stages", "2", *FAST_PPO],
}
TWINS = {"gaussian_sac.py": "gorl_sac.py", "gorl_sac.py": "gaussian_sac.py", "gaussian_ppo.py": "gorl_ppo.py"}
TWINS["gorl_ppo.py"] = "gaussian_ppo.py"
CHECKPOINT_EVERY = {"gaussian_sac.py": 300, "gorl_sac.py": 300, "gaussian_ppo.py": 1024, "gorl_ppo.py": 1024}


def interrupt_after_first_checkpoint(script, flags, cwd, signum):
    """Start a run, send signum once its first training-state checkpoint is on disk; returns (process, checkpoint)."""
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, script), *flags],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not glob.glob(os.path.join(cwd, "runs", "*", "training_state.pt")) and proc.poll() is None:
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    if signum == signal.SIGKILL:  # a hard kill leaves no time to write one: it lands after the run logged a little more
        time.sleep(1.0)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=300)
    (checkpoint,) = glob.glob(os.path.join(cwd, "runs", "*", "training_state.pt"))
    return proc.returncode, stdout, stderr, checkpoint


def final_weights(script, cwd):
    return torch.load(os.path.join(only_run_dir(cwd), script.replace(".py", ".pt")), weights_only=False)


@pytest.mark.parametrize(
    "script, signum",
    [
        ("gaussian_sac.py", signal.SIGINT),
        ("gorl_sac.py", signal.SIGTERM),
        ("gaussian_ppo.py", signal.SIGUSR1),
        ("gorl_ppo.py", signal.SIGINT),
        ("gaussian_sac.py", signal.SIGKILL),
    ],
)
def test_interrupted_and_resumed_run_ends_as_the_uninterrupted_one(script, signum, tmp_path):
    flags = [*RUNS[script], "--checkpoint-every", str(CHECKPOINT_EVERY[script]), "--save-model"]
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    whole = run_script(script, *flags, cwd=tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    code, stdout, stderr, checkpoint = interrupt_after_first_checkpoint(script, flags, tmp_path / "cut", signum)
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:  # a caught signal writes the checkpoint at the next iteration and stops with 128 + the signal's number
        assert code == 128 + signum, stderr
        assert f"stopped by {signal.Signals(signum).name} at step " in stdout
        assert f"--resume {os.path.relpath(checkpoint, tmp_path / 'cut')}" in stdout
    assert "final deterministic eval return" not in stdout  # it really stopped before the end

    # a checkpoint continues the run with its own flags, and only in its own script
    result = run_script(script, "--resume", checkpoint, "--seed", "2", "--total-timesteps", "9", cwd=tmp_path)
    check_one_line_error(result, "error: --resume continues the saved run with its own flags; drop --seed, --total-timesteps")
    twin = TWINS[script]
    result = run_script(twin, "--resume", checkpoint, cwd=tmp_path)
    check_one_line_error(result, f"error: --resume {checkpoint} was saved by {script}, not {twin}: resume it with that script")

    resumed = run_script(script, "--resume", checkpoint, cwd=tmp_path)  # from another directory: the run's own is used
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed " in resumed.stdout
    assert not os.path.exists(checkpoint)  # a finished run leaves no training state behind

    whole_final = whole.stdout.split("final deterministic eval return ")[1].split()[0]
    assert resumed.stdout.split("final deterministic eval return ")[1].split()[0] == whole_final
    expected, got = final_weights(script, tmp_path / "whole"), final_weights(script, tmp_path / "cut")
    weight_keys = [key for key in expected if isinstance(expected[key], dict) and key != "args"]  # agent, qf, decoder, ...
    assert weight_keys
    for key in weight_keys:
        for name, tensor in expected[key].items():
            assert torch.equal(tensor, got[key][name]), f"{key}.{name}"

    # the curves continue: every scalar at every step once, as in the uninterrupted run (wall-clock SPS aside)
    expected_scalars = read_scalars(only_run_dir(tmp_path / "whole"))
    got_scalars = read_scalars(only_run_dir(tmp_path / "cut"))
    assert set(got_scalars) == set(expected_scalars)
    for tag in expected_scalars:
        if tag != "charts/SPS":
            assert got_scalars[tag] == expected_scalars[tag], tag


def test_resume_refuses_files_that_are_no_training_state(tmp_path):
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("hello")
    result = run_script("gorl_ppo.py", "--resume", str(not_a_checkpoint), cwd=tmp_path)
    check_one_line_error(result, f"error: --resume {not_a_checkpoint} cannot be read as a training-state checkpoint")
    result = run_script("gaussian_sac.py", "--checkpoint-every", "-5", cwd=tmp_path)
    check_one_line_error(result, "error: --checkpoint-every must be 0 (no checkpoints) or a count of env steps, got -5")


@pytest.mark.parametrize("script", ["gaussian_ppo", "gorl_ppo"])
def test_resume_takes_a_configuration_name_and_refuses_flags_on_top_of_it(script, tmp_path):
    """`cleanrl --resume X` gives no flag (the saved run's flags rule); `cleanrl --seed 5 --resume X` gives --seed."""
    import dataclasses
    import gzip
    import importlib
    import pickle

    module = importlib.import_module(script)
    path = str(tmp_path / "training_state.pt")
    with gzip.open(path, "wb") as f:
        pickle.dump({"script": f"{script}.py", "args": vars(module.Args(seed=7))}, f)
    args, _ = module.load_training_state(dataclasses.replace(module.CLEANRL, resume=path))
    assert args.seed == 7 and args.num_steps == module.Args().num_steps  # the saved run's flags, not cleanrl's
    with pytest.raises(ValueError, match="^--resume continues the saved run with its own flags; drop --seed$"):
        module.load_training_state(dataclasses.replace(module.CLEANRL, seed=5, resume=path))

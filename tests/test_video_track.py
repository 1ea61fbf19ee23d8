"""--capture-video and --track: gaussian_sac.py in depth; the other scripts (the FPO and DPPO baselines too) through the
same flags on an env that cannot render, which fails only if a flag is missing or the eval envs do not get the recorder."""

import glob
import os
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from benchmark.events import read_scalars
from tests.helpers import ROOT, check_one_line_error, run_script

# DM Control's hopper/stand cut to 25-step episodes (tests/envs.py): evaluations at steps 0, 200 and the final one, 300
RUN = ["--env-id", "tests.envs:dm_control/hopper-short-v0", "--total-timesteps", "300", "--learning-starts", "100"]
RUN += ["--eval-every", "200", "--eval-episodes", "2", "--batch-size", "64", "--log-every", "100", "--save-model"]
OFFLINE = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def frames(path):
    """The decoded frames of an MP4 (what a player shows) and its frame rate."""
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]), meta["fps"]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One short gaussian_sac.py run with --capture-video and --track (W&B offline); returns its directory."""
    cwd = str(tmp_path_factory.mktemp("video_track"))
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "gaussian_sac.py"), *RUN, "--capture-video", "--track"],
        cwd=cwd,
        env=OFFLINE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return cwd


def test_capture_video_records_the_first_episode_of_each_evaluation(tracked_run):
    (video_dir,) = glob.glob(os.path.join(tracked_run, "videos", "**", "*__gaussian_sac__1__*"), recursive=True)
    # one whole episode per evaluation: env 1's episode and the episodes the autoreset starts are not recorded
    assert sorted(os.listdir(video_dir)) == ["step-0-episode-0.mp4", "step-200-episode-0.mp4", "step-300-episode-0.mp4"]
    for name in os.listdir(video_dir):
        video, fps = frames(os.path.join(video_dir, name))
        assert video.shape == (25, 240, 320, 3)  # a frame per env step of the 25-step episode
        assert fps == 50  # real time: the hopper's control step is 0.02 s
        assert np.abs(video[-1].astype(int) - video[0]).mean() > 1  # the hopper moves in the picture
    # TensorBoard has each video's path at its evaluation's step
    (run_dir,) = glob.glob(os.path.join(tracked_run, "runs", "**", "*__gaussian_sac__1__*"), recursive=True)
    events = EventAccumulator(run_dir, size_guidance={"tensors": 0})
    events.Reload()
    logged = {event.step: event.tensor_proto.string_val[0].decode() for event in events.Tensors("eval/video/text_summary")}
    video_root = os.path.relpath(video_dir, tracked_run)
    assert logged == {step: f"{video_root}/step-{step}-episode-0.mp4" for step in (0, 200, 300)}


def test_eval_checkpoint_capture_video_records_every_episode_without_changing_them(tracked_run):
    (checkpoint,) = glob.glob(os.path.join(tracked_run, "runs", "**", "gaussian_sac.pt"), recursive=True)
    flags = ["--eval-checkpoint", checkpoint, "--eval-episodes", "2"]
    plain, recorded = (run_script("gaussian_sac.py", *flags, *extra, cwd=tracked_run) for extra in ([], ["--capture-video"]))
    assert plain.returncode == recorded.returncode == 0, plain.stderr + recorded.stderr
    assert recorded.stdout.startswith(plain.stdout.strip())  # the same returns, then where the videos are
    run_name = os.path.basename(os.path.dirname(checkpoint))
    videos = sorted(glob.glob(os.path.join(tracked_run, "videos", run_name, "checkpoint-episode-*.mp4")))
    assert [os.path.basename(video) for video in videos] == ["checkpoint-episode-0.mp4", "checkpoint-episode-1.mp4"]
    assert all(frames(video)[0].shape == (25, 240, 320, 3) for video in videos)


def test_track_offline_writes_a_run_with_the_scalars_args_and_videos(tracked_run):
    (wandb_run,) = glob.glob(os.path.join(tracked_run, "wandb", "offline-run-*"))
    (records,) = glob.glob(os.path.join(wandb_run, "run-*.wandb"))
    content = open(records, "rb").read()
    for key in (b"eval/episodic_return", b"losses/qf_loss", b"charts/SPS", b"wandb_project_name", b"capture_video"):
        assert key in content  # the synced scalars' history and the args (config)
    # the TensorBoard file it syncs holds the run's scalars, and the three evaluations' videos are media of the run
    (synced,) = glob.glob(os.path.join(wandb_run, "files", "runs", "**", "events.out.tfevents.*"), recursive=True)
    (run_dir,) = glob.glob(os.path.join(tracked_run, "runs", "**", "*__gaussian_sac__1__*"), recursive=True)
    assert read_scalars(os.path.dirname(synced)) == read_scalars(run_dir)
    assert len(read_scalars(run_dir)["eval/episodic_return"]) == 3
    assert len(glob.glob(os.path.join(wandb_run, "files", "media", "videos", "eval", "*.mp4"))) == 3


def test_track_without_wandb_stops_in_one_line(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text('import sys\n\nsys.modules["wandb"] = None  # as if wandb were not installed\n')
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "gaussian_sac.py"), "--env-id", "Pendulum-v1", "--track"],
        cwd=tmp_path,
        env={**OFFLINE, "PYTHONPATH": str(shim)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    check_one_line_error(result, "error: --track logs to Weights & Biases, which is not installed: pip install wandb")


BASELINES = ["benchmark/baselines/fpo_ppo.py", "benchmark/baselines/dppo.py"]


@pytest.mark.parametrize("script", ["gaussian_sac.py", "gorl_sac.py", "gaussian_ppo.py", "gorl_ppo.py", *BASELINES])
def test_every_script_has_the_flags_and_records_its_eval_envs(script, tmp_path, monkeypatch):
    """Every flag parses, and the eval envs are made to record: an env with no frames to draw is refused in one line."""
    monkeypatch.setenv("WANDB_MODE", "offline")  # never online, should a script reach --track
    flags = ["--env-id", "tests.envs:Bandit-v0", "--capture-video", "--track"]
    flags += ["--wandb-project-name", "p", "--wandb-entity", "e"]
    result = run_script(script, *flags, cwd=tmp_path)
    check_one_line_error(result, "error: --capture-video cannot render Bandit-v0:")

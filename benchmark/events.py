"""Read the scalars that the training scripts write to TensorBoard event files (tests and summarize.py use this)."""

import glob
import os

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run_dir: str) -> dict:
    """All scalars of one run directory (runs/{run_name}): {tag: [(step, value), ...]} in step order."""
    if not glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        raise FileNotFoundError(f"no TensorBoard event file in {run_dir}")
    accumulator = EventAccumulator(run_dir, size_guidance={"scalars": 0})  # 0 keeps every point
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}

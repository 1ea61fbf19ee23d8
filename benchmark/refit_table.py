"""Does each refit hand the next stage the policy it was fit on? A markdown table of a GoRL run's refits, from its
TensorBoard events: the refit report the scripts log under refit/ (action error, std ratio, sliced W1, returns before
and after on the same evaluation episodes), and the mean stochastic training return (charts/episodic_return) over a
window of training steps before the refit against the same window after it. The decoder data's own env steps lie
between the two windows (they log no training episodes), so "before" ends at the last training episode before the
refit, and "after" starts at the refit.

    python benchmark/refit_table.py runs/WalkerWalk__gorl_ppo_paper__1__<time> --window 100000
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmark.events import read_scalars  # noqa: E402


def window_mean(points: list, start: int, stop: int) -> tuple:
    """(mean, count) of the values logged at steps in (start, stop]; (nan, 0) if none."""
    values = [value for step, value in points if start < step <= stop]
    return (float(np.mean(values)) if values else float("nan")), len(values)


def refit_rows(scalars: dict, window: int) -> list:
    """One dict per refit logged in the run, in step order."""
    episodes, evals = scalars.get("charts/episodic_return", []), scalars.get("eval/episodic_return", [])
    rows = []
    for index, (step, _) in enumerate(scalars.get("refit/deterministic_error", [])):
        report = {
            name.removeprefix("refit/"): dict(points)[step] for name, points in scalars.items() if name.startswith("refit/")
        }
        last_training = max((at for at, _ in episodes if at < step), default=step)
        before, after = window_mean(episodes, last_training - window, last_training), window_mean(
            episodes, step, step + window
        )
        eval_before = [value for at, value in evals if at < step]
        eval_after = [value for at, value in evals if at >= step]
        rows.append(dict(index=index + 1, step=step, report=report, before=before, after=after,
                         eval_before=eval_before[-1] if eval_before else float("nan"),
                         eval_after=eval_after[0] if eval_after else float("nan")))  # fmt: skip
    return rows


def refit_table(run_dir: str, window: int) -> str:
    rows = refit_rows(read_scalars(run_dir), window)
    if not rows:
        raise ValueError(f"{run_dir} logged no refit report (refit/*): not a GoRL run past a refit, or older than the report")
    header = ["refit", "env steps", "action error", "std ratio", "sliced W1", "deterministic return before -> after",
              "stochastic return before -> after", f"training episodes, {window:,} steps before -> after (n)",
              "after / before", "last eval before -> first eval after"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        r, (before, n_before), (after, n_after) = row["report"], row["before"], row["after"]
        lines.append("| " + " | ".join([
            str(row["index"]), f"{row['step']:,}", f"{r['deterministic_error']:.3f}",
            f"{r['std_ratio_min']:.2f}-{r['std_ratio_max']:.2f}", f"{r['sliced_wasserstein']:.3f}",
            f"{r['old_return_deterministic']:.1f} -> {r['new_return_deterministic']:.1f}",
            f"{r['old_return_stochastic']:.1f} -> {r['new_return_stochastic']:.1f}",
            f"{before:.1f} ({n_before}) -> {after:.1f} ({n_after})", f"{after / before:.2f}",
            f"{row['eval_before']:.1f} -> {row['eval_after']:.1f}",
        ]) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a GoRL run directory (runs/{run_name}) with TensorBoard event files")
    parser.add_argument("--window", type=int, default=100_000, help="env steps of training episodes on each side")
    args = parser.parse_args(argv)
    try:
        print(refit_table(args.run_dir, args.window), end="")
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A markdown table of some runs' scalars every N env steps, with each tag's range over the whole run: for reading and
recording learning curves of single runs (a sweep's tables come from summarize.py). With --share-above R, each run
also gets a column of its training episodes (charts/episodic_return) since the previous row: the share whose return
is above R, with their count; for tasks whose episodes either succeed or fail (HopperStand stands up or not). With
--last-window W, each run's training return over its last W env steps: the mean of the episodes that ended there, the
figure CleanRL publishes (its final training return), to set beside it.

    python benchmark/curve_table.py runs/HopperStand__gorl_sac__1__* runs/HopperStand__gaussian_sac__1__* --every 50000
    python benchmark/curve_table.py runs/HopperStand__gorl_sac__1__* --tags eval/episodic_return --share-above 500
    python benchmark/curve_table.py runs/Hopper-v5__gaussian_sac__1__* --last-window 50000
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmark.events import read_scalars  # noqa: E402


def value_at(points: list, step: int):
    """The last logged value at or before step; None before the first and after the last (the run stopped there)."""
    before = [value for at, value in points if at <= step]
    return before[-1] if before and step <= points[-1][0] else None


def share_above(points: list, after: int, upto: int, threshold: float) -> str:
    """The share of the values logged in (after, upto] that exceed threshold, with their count; "" if there are none."""
    values = [value for at, value in points if after < at <= upto]
    return f"{sum(value > threshold for value in values) / len(values):.2f} ({len(values)})" if values else ""


def last_window(points: list, last: int, window: int) -> str:
    """The mean of the values logged in (last - window, last], with their count and range."""
    values = [value for at, value in points if at > last - window]
    if not values:
        return f"no episode ended in ({last - window:,}, {last:,}]"
    return (f"mean {sum(values) / len(values):.1f} over {len(values)} episodes in ({last - window:,}, {last:,}], "
            f"{min(values):.4g} to {max(values):.4g}")  # fmt: skip


def curve_table(run_dirs: list, tags: list, every: int, threshold: float | None = None, window: int | None = None) -> str:
    runs = {os.path.basename(os.path.normpath(d)).split("__")[1]: read_scalars(d) for d in run_dirs}
    last_step = max(points[-1][0] for scalars in runs.values() for tag, points in scalars.items() if tag in tags)
    header = ["env steps"]
    for name in runs:
        header += [f"{name} `{tag}`" for tag in tags]
        header += [] if threshold is None else [f"{name} training episodes above {threshold:g} (n)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for step in range(0, last_step + 1, every):
        cells = [f"{step:,}"]
        for scalars in runs.values():
            for tag in tags:
                value = value_at(scalars.get(tag, []), step)
                cells.append("" if value is None else f"{value:.4g}")
            if threshold is not None:
                cells.append(share_above(scalars.get("charts/episodic_return", []), step - every, step, threshold))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for name, scalars in runs.items():
        for tag in tags:
            values = [value for _, value in scalars.get(tag, [])]
            if values:
                lines.append(f"- {name} `{tag}`: {min(values):.4g} to {max(values):.4g} over {len(values)} points, "
                             f"last {values[-1]:.4g} at step {scalars[tag][-1][0]:,}")  # fmt: skip
        episodes = scalars.get("charts/episodic_return", [])
        if window is not None and episodes:
            run_end = max(points[-1][0] for points in scalars.values() if points)  # the last step the run logged
            lines.append(f"- {name} training return, last {window:,} env steps: {last_window(episodes, run_end, window)}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories (runs/{run_name}) with TensorBoard event files")
    parser.add_argument("--tags", nargs="+", default=["eval/episodic_return", "losses/qf1_values"], help="scalars to show")
    parser.add_argument("--every", type=int, default=50_000, help="env steps between rows")
    parser.add_argument("--share-above", type=float, help="also the share of training episodes with a return above this")
    parser.add_argument("--last-window", type=int, help="also each run's mean training return over its last N env steps")
    args = parser.parse_args(argv)
    if args.last_window is not None and args.last_window <= 0:
        parser.error(f"--last-window must be a positive number of env steps, got {args.last_window}")
    try:
        print(curve_table(args.run_dirs, args.tags, args.every, args.share_above, args.last_window), end="")
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

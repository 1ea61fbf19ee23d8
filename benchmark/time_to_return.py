"""How long a user waits for a return: for each run, the env steps and training time at which its deterministic
evaluation (eval/episodic_return) first reaches each given return. This is the PPO speed figure that matters; the raw
rate (training SPS against raw env SPS, benchmark/sps.py) is secondary.

Training time at a step is step / charts/SPS there (the scripts' SPS counts training only, evaluations excluded, and
adds up the attempts of a resumed run), so runs that shared a machine differently compare only as far as their SPS do.

    python benchmark/time_to_return.py benchmark/runs/ppo_defaults/laptop/WalkerWalk__*__1/runs/* --returns 400 800
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmark.events import read_scalars  # noqa: E402


def first_reach(evals: list, sps: list, target: float):
    """(env steps, training seconds) of the first evaluation at or above target; None if the run never got there."""
    for step, value in evals:
        if value >= target:
            rate = [rate for at, rate in sps if at <= step] or [sps[0][1]]  # the rate logged last before the evaluation
            return step, step / max(rate[-1], 1)
    return None


def time_to_return_table(run_dirs: list, targets: list) -> str:
    header = ["run", "final eval", "env steps", *(f"to {target:g}: steps, minutes" for target in targets)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run_dir in run_dirs:
        scalars = read_scalars(run_dir)
        evals, sps = scalars.get("eval/episodic_return", []), scalars.get("charts/SPS", [])
        if not evals or not sps:
            raise ValueError(f"{run_dir} has no eval/episodic_return or charts/SPS scalars")
        cells = [f"`{os.path.basename(os.path.normpath(run_dir))}`", f"{evals[-1][1]:.1f}", f"{sps[-1][0]:,}"]
        for target in targets:
            reached = first_reach(evals, sps, target)
            cells.append("not reached" if reached is None else f"{reached[0] / 1e6:.2f}M, {reached[1] / 60:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories (runs/{run_name}) with TensorBoard event files")
    parser.add_argument("--returns", nargs="+", type=float, required=True, help="deterministic eval returns to reach")
    args = parser.parse_args(argv)
    try:
        print(time_to_return_table(args.run_dirs, args.returns), end="")
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

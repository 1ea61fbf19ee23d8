"""Tables and learning curves of a sweep made by benchmark/sweep.py (run_all.sh, humanoids.sh, sac.sh, ablations.sh).

    python benchmark/summarize.py benchmark/runs/main/quick        # -> benchmark/results/main/quick/

Writes into the output dir (default benchmark/results/<table>/<preset>/):
    returns.md   final deterministic eval return (the LAST eval/episodic_return of each run, as the paper reports),
                 mean +- std over seeds and n, one row per task, one column per method, each beside the paper's
                 number for that method (gaussian_ppo: PPO, fpo: FPO, dppo: DPPO, ...), the paper's others last
    curves.png   eval/episodic_return against env steps per task: mean over seeds and a +-1 std band
    runtime.md   one line per run: env steps, wall time (from the run's marker), SPS (the last charts/SPS)
A partial sweep works: runs that are missing, unfinished or failed are listed, not fatal.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from benchmark.events import read_scalars  # noqa: E402
from benchmark.sweep import METHODS, PAPER_NAMES  # noqa: E402

EVAL_TAG, SPS_TAG = "eval/episodic_return", "charts/SPS"

# Final return at 180M env steps, mean +- std over seeds, as printed in the paper (final version, arXiv 2512.02581).
# The paper runs MuJoCo Playground (MJX) ports of DM Control; this project runs the original dm_control tasks.
PAPER_RESULTS = {
    "main": {
        "seeds": 5,
        "steps": 180_000_000,
        "source": "Table 1",
        "methods": {
            "PPO": {"CheetahRun": (724.83, 155.67), "FingerSpin": (539.03, 146.63), "FingerTurnHard": (738.70, 114.45),
                    "FishSwim": (433.70, 73.63), "HopperStand": (286.09, 273.07), "WalkerWalk": (825.65, 79.70)},
            "FPO": {"CheetahRun": (599.15, 297.45), "FingerSpin": (56.05, 124.53), "FingerTurnHard": (752.08, 55.39),
                    "FishSwim": (204.66, 191.49), "HopperStand": (3.94, 1.79), "WalkerWalk": (29.00, 4.32)},
            "DPPO": {"CheetahRun": (559.79, 99.97), "FingerSpin": (694.06, 191.59), "FingerTurnHard": (633.84, 88.21),
                     "FishSwim": (143.52, 26.25), "HopperStand": (2.14, 0.81), "WalkerWalk": (345.59, 64.45)},
            "GoRL-Diff": {"CheetahRun": (902.24, 2.20), "FingerSpin": (844.74, 59.43), "FingerTurnHard": (884.59, 26.95),
                          "FishSwim": (608.61, 22.07), "HopperStand": (874.63, 38.79), "WalkerWalk": (908.96, 30.45)},
            "GoRL-FM": {"CheetahRun": (883.40, 19.94), "FingerSpin": (903.92, 104.08), "FingerTurnHard": (860.83, 14.93),
                        "FishSwim": (641.01, 13.10), "HopperStand": (733.66, 223.76), "WalkerWalk": (919.61, 60.86)},
        },
    },
    "humanoids": {
        "seeds": 3,
        "steps": 180_000_000,
        "source": "Table 2",
        "methods": {
            "PPO": {"HumanoidStand": (74.97, 4.58), "HumanoidRun": (17.39, 2.31)},
            "FPO": {"HumanoidStand": (0.0, None), "HumanoidRun": (0.0, None)},
            "DPPO": {"HumanoidStand": (26.57, 6.06), "HumanoidRun": (6.38, 1.74)},
            "GoRL-FM": {"HumanoidStand": (950.27, 20.24), "HumanoidRun": (337.61, 9.06)},
            "GoRL-Diff": {"HumanoidStand": (976.10, 2.20), "HumanoidRun": (326.30, 29.50)},
        },
    },
}  # fmt: skip


def named(column: str) -> str:
    """A column as the tables head it: `gorl_ppo` (GoRL-FM), with the paper's name of the method when it has one."""
    return f"`{column}`" + (f" ({PAPER_NAMES[column]})" if column in PAPER_NAMES else "")


def shown(path: str, start: str = ROOT) -> str:
    """A path relative to the repo when it is inside it (results are committed), else as it is."""
    relative = os.path.relpath(path, start)
    return path if relative.startswith("..") else relative


def load_sweep(sweep_dir: str) -> dict:
    path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.exists(path):
        raise SystemExit(f"error: {path} not found: give the dir of a sweep made by benchmark/sweep.py")
    with open(path) as f:
        return json.load(f)


def collect(sweep: dict) -> tuple:
    """{(task, column, seed): run record} of the finished runs, and a list of (run_id, why) for the others."""
    found, problems = {}, []
    for run in sweep["runs"]:
        run_dir = os.path.join(sweep["sweep_dir"], run["run_id"])
        marker_path = run_dir + ".done"
        events = sorted(glob.glob(os.path.join(run_dir, "runs", "*", "events.out.tfevents.*")))
        if not os.path.exists(marker_path):
            log = shown(os.path.join(run_dir, "train.log"), ROOT)
            why = "not started" if not os.path.exists(run_dir) else f"unfinished or failed, log {log}"
            problems.append((run["run_id"], why))
            continue
        if not events:
            problems.append((run["run_id"], f"marker but no event file under {shown(run_dir, ROOT)}/runs"))
            continue
        with open(marker_path) as f:
            marker = json.load(f)
        scalars = read_scalars(os.path.dirname(events[-1]))
        if not scalars.get(EVAL_TAG):
            problems.append((run["run_id"], f"no {EVAL_TAG} in {shown(os.path.dirname(events[-1]), ROOT)}"))
            continue
        found[(run["task"], run["column"], run["seed"])] = {
            "run_id": run["run_id"],
            "eval": scalars[EVAL_TAG],
            "sps": scalars[SPS_TAG][-1][1] if scalars.get(SPS_TAG) else float("nan"),
            "wall_s": marker.get("wall_s", float("nan")),
        }
    return found, problems


def mean_std(values) -> str:
    if not values:
        return "n/a"
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.1f} +- {values.std():.1f} (n={len(values)})"


def budget_text(sweep: dict) -> str:
    families = sorted({METHODS[column["method"]].family for column in sweep["columns"].values()})
    parts = [f"{sweep['budgets'][f]:,} env steps per {f.upper()}-type run, evaluation every {sweep['eval_every'][f]:,} "
             f"steps over {sweep['eval_episodes'][f]} episodes" for f in families]  # fmt: skip
    return "; ".join(parts)


def returns_table(sweep: dict, found: dict, problems: list) -> str:
    tasks, columns, seeds = sweep["tasks"], list(sweep["columns"]), sweep["seeds"]
    paper = PAPER_RESULTS.get(sweep["table"])
    caption = (
        f"**{sweep['table']} ({sweep['preset']} preset)**: final deterministic evaluation return (the last "
        f"`{EVAL_TAG}` of each run), mean +- std over seeds (n = seeds found; planned seeds {', '.join(map(str, seeds))}). "
        f"Budget: {budget_text(sweep)}."
    )
    if paper:
        caption += (
            f" Columns `paper ...` are the paper's {paper['source']} (MuJoCo Playground ports of the tasks, "
            f"{paper['steps'] // 1_000_000}M env steps, {paper['seeds']} seeds): compare the scale only, not the numbers, "
            "unless this sweep's budget is the paper's."
        )
    rows = []
    if len(tasks) == 1:  # one task (ablations): one row per column reads better
        header = ["method", tasks[0]]
        for column in columns:
            values = [found[(tasks[0], column, s)]["eval"][-1][1] for s in seeds if (tasks[0], column, s) in found]
            rows.append([f"`{column}`", mean_std(values)])
    else:
        paper_methods = list(paper["methods"]) if paper else []
        # each column the paper ran too has the paper's number beside it; the paper's other methods follow
        order = []
        for column in columns:
            order.append(("ours", column))
            if PAPER_NAMES.get(column) in paper_methods:
                order.append(("paper", PAPER_NAMES[column]))
        order += [("paper", method) for method in paper_methods if ("paper", method) not in order]
        header = ["task", *[f"paper {name}" if kind == "paper" else named(name) for kind, name in order]]
        for task in tasks:
            row = [task]
            for kind, name in order:
                if kind == "ours":
                    row.append(mean_std([found[(task, name, s)]["eval"][-1][1] for s in seeds if (task, name, s) in found]))
                else:
                    mean, std = paper["methods"][name].get(task, (None, None))
                    row.append("n/a" if mean is None else f"{mean:.1f}" + ("" if std is None else f" +- {std:.1f}"))
            rows.append(row)
    lines = [caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if problems:
        lines += ["", f"Not included ({len(problems)} of {len(sweep['runs'])} runs):", ""]
        lines += [f"- `{run_id}`: {why}" for run_id, why in problems]
    return "\n".join(lines) + "\n"


def runtime_table(sweep: dict, found: dict) -> str:
    lines = [
        f"**{sweep['table']} ({sweep['preset']} preset)**: one line per finished run. Budget: {budget_text(sweep)}. "
        "Wall time: the whole run (start-up and evaluations included; a resumed run: all its attempts); SPS: the run's "
        "last `charts/SPS` (training steps per second, evaluations excluded).",
        "",
        "| run | task | method | seed | env steps | wall time (s) | SPS | final eval return |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total = 0.0
    for run in sweep["runs"]:
        record = found.get((run["task"], run["column"], run["seed"]))
        if record is None:
            continue
        total += record["wall_s"]
        steps, final = record["eval"][-1]
        lines.append(f"| `{run['run_id']}` | {run['task']} | `{run['column']}` | {run['seed']} | {steps:,} | "
                     f"{record['wall_s']:.0f} | {record['sps']:.0f} | {final:.1f} |")  # fmt: skip
    lines += ["", f"{len(found)} runs, {total:.0f} s of wall time in all ({total / 60:.1f} min of one worker)."]
    return "\n".join(lines) + "\n"


def curve(records: list) -> tuple:
    """Mean and std over seeds of eval curves, on the steps of the first seed, up to the shortest run."""
    steps = np.array([s for s, _ in records[0]["eval"]], dtype=float)
    horizon = min(r["eval"][-1][0] for r in records)
    steps = steps[steps <= horizon]
    ys = np.stack([np.interp(steps, [s for s, _ in r["eval"]], [v for _, v in r["eval"]]) for r in records])
    return steps, ys.mean(0), ys.std(0)


def plot_curves(sweep: dict, found: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    tasks, columns = sweep["tasks"], list(sweep["columns"])
    ncols = min(3, len(tasks))
    nrows = -(-len(tasks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.4 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for i, column in enumerate(columns):
            records = [found[(task, column, s)] for s in sweep["seeds"] if (task, column, s) in found]
            if not records:
                continue
            steps, mean, std = curve(records)
            ax.plot(steps, mean, color=f"C{i}", label=f"{column} (n={len(records)})")
            ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.2)
        ax.set_title(task)
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())  # 150k, 6M: no overlapping tick labels
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    fig.suptitle(f"{sweep['table']} ({sweep['preset']} preset): {budget_text(sweep)}; mean +- std over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(sweep_dir: str, out_dir: str | None = None) -> str:
    sweep = load_sweep(sweep_dir)
    sweep["sweep_dir"] = os.path.abspath(sweep_dir)  # the sweep may have moved since
    out_dir = out_dir or os.path.join(ROOT, "benchmark", "results", sweep["table"], sweep["preset"])
    os.makedirs(out_dir, exist_ok=True)
    found, problems = collect(sweep)
    with open(os.path.join(out_dir, "returns.md"), "w") as f:
        f.write(returns_table(sweep, found, problems))
    with open(os.path.join(out_dir, "runtime.md"), "w") as f:
        f.write(runtime_table(sweep, found))
    plot_curves(sweep, found, os.path.join(out_dir, "curves.png"))
    print(f"{len(found)} of {len(sweep['runs'])} runs summarised into {out_dir} (returns.md, curves.png, runtime.md)")
    for run_id, why in problems:
        print(f"  missing {run_id}: {why}")
    return out_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a sweep's dir, e.g. benchmark/runs/main/quick")
    parser.add_argument("--out-dir", help="default benchmark/results/<table>/<preset>")
    args = parser.parse_args()
    summarize(args.sweep_dir, args.out_dir)


if __name__ == "__main__":
    main()

"""Run every (method, task, seed) of a benchmark table: locally N at a time, or as a Slurm job array.

The table scripts (run_all.sh, humanoids.sh, sac.sh, ablations.sh) only name their tasks, methods and seeds and call
this file; everything else lives here. Scale is one knob per method family: --ppo-steps for PPO-type scripts and
--sac-steps for SAC-type ones, set by --preset (paper: the paper's budgets; quick: a laptop-sized smoke run).

    python benchmark/sweep.py --table main --tasks HopperStand CheetahRun --methods gorl_ppo gaussian_ppo --seeds 1 2 3 \\
        [--preset quick] [--workers 2] [--dry-run] [--launcher slurm --partition gpu --time 48:00:00]

Layout (one sweep = one table and preset): benchmark/runs/<table>/<preset>/
    sweep.json                     what the sweep is (tasks, columns, seeds, budgets, commands): summarize.py reads it
    <task>__<exp>__<seed>/         the run's working dir: train.log and runs/<task>__<exp>__<seed>__<time>/ (events)
    <task>__<exp>__<seed>.done     marker of a finished run (JSON: attempts, total wall time, command): skipped
Every run writes a training-state checkpoint (--checkpoint-every, by default at each evaluation). A run without its
marker continues from its checkpoint with `--resume` (a run with none starts from scratch, its partial dir removed),
so an interrupted sweep resumes by running the same command again. A marker whose command differs from the current
one (budget changed) does not count. On Slurm each array task is requeued when its time limit nears (--signal,
scontrol requeue) or when it is preempted (--requeue), and continues from its checkpoint.
"""

import argparse
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "benchmark", "runs")


@dataclass(frozen=True)
class Method:
    script: str  # relative to --scripts-dir (the repo root)
    family: str  # "ppo" or "sac": which budget knob applies


METHODS = {
    "gaussian_ppo": Method("gaussian_ppo.py", "ppo"),
    "gorl_ppo": Method("gorl_ppo.py", "ppo"),
    "gaussian_sac": Method("gaussian_sac.py", "sac"),
    "gorl_sac": Method("gorl_sac.py", "sac"),
    # the paper's generative baselines (Table 1's FPO and DPPO); their defaults are the paper's PPO shell for them, and
    # `paper`, which they take as the twins do, changes nothing
    "fpo": Method("benchmark/baselines/fpo_ppo.py", "ppo"),
    "dppo": Method("benchmark/baselines/dppo.py", "ppo"),
}
# the PPO scripts' named starting configurations (their first argument) and the methods that have each: `paper` (the
# paper's settings and networks; fpo's and dppo's defaults) and the twins' `cleanrl` (CleanRL's PPO defaults)
PPO_CONFIGS = {"paper": ("gaussian_ppo", "gorl_ppo", "fpo", "dppo"), "cleanrl": ("gaussian_ppo", "gorl_ppo")}
# the paper's names of the table scripts' columns (run_all.sh's five are Table 1's methods)
PAPER_NAMES = {"gaussian_ppo": "PPO", "fpo": "FPO", "dppo": "DPPO", "gorl_ppo": "GoRL-FM", "gorl_ppo_diff": "GoRL-Diff"}

# paper: 180M env steps per DM Control task (humanoids too), 4M for the SAC variant (2M + 1M + 1M); evaluation every
# 6M steps (budget / 30) over 128 deterministic episodes. quick: small enough that the main table (6 tasks x 2
# methods x 2 seeds = 24 runs) takes about 25 minutes with one worker on a 2-core laptop (see benchmark/README.md).
# laptop: 10M env steps per PPO-type run (~1 h here at the twins' ~3,000 SPS, two at a time on 2 cores), 1M per SAC-type
# run, the first 2 seeds, and only the tasks known to learn within that: WalkerWalk (the twins' defaults, 939.9-958.8
# at 10M, seed 1: results/ppo_defaults.md), CheetahRun (not yet measured here), and Gym MuJoCo's SAC tasks. ppo_config:
# the configuration that the PPO scripts start from where they have it (`python gorl_ppo.py cleanrl ...`; None: their
# defaults). quick's is `cleanrl`: the defaults' 30,720-step rollout batch does not fit GoRL's 4 stages of 150k steps
# (fpo and dppo, which have no `cleanrl`, run their defaults).
PRESETS = {
    "paper": dict(ppo_steps=180_000_000, sac_steps=4_000_000, num_seeds=None, num_evals=30, ppo_eval_episodes=128,
                  sac_eval_episodes=10, method_flags={}, ppo_config="paper", tasks=None),
    "laptop": dict(ppo_steps=10_000_000, sac_steps=1_000_000, num_seeds=2, num_evals=20, ppo_eval_episodes=10,
                   sac_eval_episodes=10, method_flags={}, ppo_config=None,
                   tasks=("WalkerWalk", "CheetahRun", "Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")),
    "quick": dict(ppo_steps=150_000, sac_steps=20_000, num_seeds=2, num_evals=5, ppo_eval_episodes=5, sac_eval_episodes=5,
                  # the scripts' default 1% of the budget would refit the decoder on only 1.5k pairs at 150k steps
                  method_flags={"gorl_ppo": ["--decoder-data-fraction", "0.03"]}, ppo_config="cleanrl", tasks=None),
}  # fmt: skip


@dataclass
class Run:
    task: str
    column: str  # the exp name: a method name, or a variant's name
    method: str
    seed: int
    flags: list  # everything after the script path
    run_id: str = ""

    def __post_init__(self):
        self.run_id = f"{self.task}__{self.column}__{self.seed}"


@dataclass
class Sweep:
    table: str
    preset: str
    sweep_dir: str
    tasks: list
    columns: dict  # column (exp name) -> {"method": ..., "flags": [...]}
    seeds: list
    budgets: dict  # family -> env steps
    eval_every: dict  # family -> env steps
    eval_episodes: dict  # family -> episodes
    python: str
    scripts_dir: str
    runs: list = field(default_factory=list)

    def command(self, run: Run) -> list:
        return [self.python, os.path.join(self.scripts_dir, METHODS[run.method].script), *run.flags]

    def run_dir(self, run: Run) -> str:
        return os.path.join(self.sweep_dir, run.run_id)

    def marker(self, run: Run) -> str:
        return os.path.join(self.sweep_dir, run.run_id + ".done")

    def is_done(self, run: Run) -> bool:
        """Finished: the marker exists and records the same flags (a changed budget or flag means not done)."""
        try:
            with open(self.marker(run)) as f:
                return json.load(f).get("flags") == run.flags
        except (OSError, ValueError):
            return False


def parse_variant(text: str):
    """'NAME=METHOD [CONFIG] --flag value ...' -> (NAME, METHOD, CONFIG or None, [--flag, value, ...]).

    CONFIG is a PPO script's named starting configuration (`python gorl_ppo.py paper ...`): it must come first on the
    script's command line, so it is kept apart from the flags."""
    name, sep, rest = text.partition("=")
    words = shlex.split(rest)
    if not sep or not name or not words or words[0] not in METHODS:
        raise argparse.ArgumentTypeError(
            f"--variant {text!r}: expected NAME=METHOD [CONFIG] [FLAGS], METHOD one of {', '.join(METHODS)}"
        )
    method, words = words[0], words[1:]
    config = words.pop(0) if words and not words[0].startswith("-") else None
    if config is not None and method not in PPO_CONFIGS.get(config, ()):
        has = [name for name, methods in PPO_CONFIGS.items() if method in methods]
        raise argparse.ArgumentTypeError(
            f"--variant {text!r}: {config!r} is not a configuration of {method} (it has {', '.join(has) or 'none'})"
        )
    return name, method, config, words


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to run (the table scripts set these; a later flag overrides an earlier one)")
    g.add_argument("--table", required=True, help="table name: the sweep's dir is <out-dir>/<table>/<preset>")
    g.add_argument("--tasks", nargs="+", required=True, help="env ids as the scripts take them (HopperStand, Hopper-v5)")
    g.add_argument("--methods", nargs="*", default=[], choices=sorted(METHODS), help="methods run with their default flags")
    g.add_argument("--variant", action="append", default=[], type=parse_variant, metavar="NAME=METHOD [CONFIG] FLAGS",
                   help="an extra column: METHOD run with FLAGS under exp name NAME (repeatable); CONFIG, e.g. cleanrl, "
                   "starts a PPO script from that configuration instead of the preset's")  # fmt: skip
    g.add_argument("--seeds", nargs="+", type=int, required=True, help="the table's seeds (a preset may use the first few)")
    g = p.add_argument_group("scale (defaults from --preset)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="paper: the paper's budgets and PPO configuration; laptop: 10M/1M steps, 2 seeds, the tasks that "
                   "learn within that; quick: a smoke run, the PPO twins in cleanrl")  # fmt: skip
    g.add_argument("--ppo-steps", type=int, help="env steps per PPO-type run (paper 180M, quick 150k)")
    g.add_argument("--sac-steps", type=int, help="env steps per SAC-type run (paper 4M, quick 20k)")
    g.add_argument("--num-seeds", type=int, help="use the first N of --seeds (paper: all, quick: 2)")
    g.add_argument("--num-evals", type=int, help="evaluations per run: --eval-every = budget / N (paper 30, quick 5)")
    g.add_argument("--eval-episodes", type=int, help="episodes per evaluation (paper 128 PPO-type / 10 SAC-type, quick 5)")
    g.add_argument("--extra-flags", default="", help="flags appended to every command, e.g. '--num-envs 64'")
    g.add_argument("--checkpoint-every", type=int,
                   help="env steps between each run's training-state checkpoints (default: at each evaluation; 0: none)")  # fmt: skip
    g = p.add_argument_group("how to run")
    g.add_argument("--dry-run", action="store_true", help="print every command (or the Slurm script); run nothing")
    g.add_argument("--workers", type=int, default=os.cpu_count(), help="local runs at a time (default: number of CPUs)")
    g.add_argument("--launcher", choices=["local", "slurm"], default="local")
    g.add_argument("--out-dir", default=DEFAULT_OUT, help="parent of the sweep dirs (default benchmark/runs)")
    g.add_argument("--python", default=sys.executable, help="interpreter of the runs (default: this one)")
    g.add_argument("--scripts-dir", default=ROOT, help="where the training scripts are (default: the repo root)")
    g = p.add_argument_group("slurm (with --launcher slurm)")
    g.add_argument("--partition", help="#SBATCH --partition")
    g.add_argument(
        "--time", default="72:00:00", help="#SBATCH --time per job; a run that needs longer is requeued and resumes"
    )
    g.add_argument("--signal-seconds", type=int, default=300,
                   help="seconds before the time limit at which a run checkpoints, stops and is requeued")  # fmt: skip
    g.add_argument("--cpus-per-task", type=int, default=1, help="#SBATCH --cpus-per-task (also --torch-threads)")
    g.add_argument("--mem", default="4G", help="#SBATCH --mem per run")
    g.add_argument(
        "--slurm-extra", action="append", default=[], help="extra '#SBATCH' line, e.g. '--account=abc' (repeatable)"
    )
    return p


def plan(args) -> Sweep:
    """The sweep the arguments describe: budgets from the preset unless overridden, and every run's command."""
    preset = PRESETS[args.preset]
    budgets = {"ppo": args.ppo_steps or preset["ppo_steps"], "sac": args.sac_steps or preset["sac_steps"]}
    num_evals = args.num_evals or preset["num_evals"]
    eval_every = {family: max(1, steps // num_evals) for family, steps in budgets.items()}
    eval_episodes = {
        "ppo": args.eval_episodes or preset["ppo_eval_episodes"],
        "sac": args.eval_episodes or preset["sac_eval_episodes"],
    }
    num_seeds = args.num_seeds or preset["num_seeds"] or len(args.seeds)
    seeds = args.seeds[:num_seeds]
    columns = {m: {"method": m, "config": None, "flags": []} for m in args.methods}
    for name, method, config, flags in args.variant:
        columns[name] = {"method": method, "config": config, "flags": flags}
    if not columns:
        raise SystemExit("error: nothing to run: give --methods and/or --variant")
    tasks = [task for task in args.tasks if preset["tasks"] is None or task in preset["tasks"]]
    if not tasks:
        raise SystemExit(
            f"error: the {args.preset} preset runs only tasks that learn within its budget ({', '.join(preset['tasks'])}); "
            f"none of {' '.join(args.tasks)} is one"
        )
    if len(tasks) < len(args.tasks):  # say so: a task left out silently looks like a finished sweep without it
        skipped = " ".join(task for task in args.tasks if task not in tasks)
        print(f"the {args.preset} preset skips {skipped} (it runs only {', '.join(preset['tasks'])})", file=sys.stderr)
    sweep = Sweep(
        table=args.table, preset=args.preset, sweep_dir=os.path.join(os.path.abspath(args.out_dir), args.table, args.preset),
        tasks=tasks, columns=columns, seeds=seeds, budgets=budgets, eval_every=eval_every,
        eval_episodes=eval_episodes, python=args.python, scripts_dir=os.path.abspath(args.scripts_dir),
    )  # fmt: skip
    extra = shlex.split(args.extra_flags)
    threads = ["--torch-threads", str(args.cpus_per_task)] if args.launcher == "slurm" and args.cpus_per_task > 1 else []
    for task in sweep.tasks:
        for column, spec in columns.items():
            family = METHODS[spec["method"]].family
            for seed in seeds:
                config = spec["config"] or preset["ppo_config"]
                config = [config] if spec["method"] in PPO_CONFIGS.get(config, ()) else []
                checkpoint_every = eval_every[family] if args.checkpoint_every is None else args.checkpoint_every
                flags = [*config, "--env-id", task, "--seed", str(seed), "--total-timesteps", str(budgets[family]),
                         "--exp-name", column, "--eval-every", str(eval_every[family]),
                         "--eval-episodes", str(eval_episodes[family]), "--checkpoint-every", str(checkpoint_every),
                         *preset["method_flags"].get(spec["method"], []), *spec["flags"], *threads, *extra]  # fmt: skip
                sweep.runs.append(Run(task, column, spec["method"], seed, flags))
    return sweep


def describe(sweep: Sweep, pending: list, workers: int, launcher: str) -> str:
    families = sorted({METHODS[c["method"]].family for c in sweep.columns.values()})
    lines = [f"sweep {sweep.table!r}, preset {sweep.preset!r} -> {sweep.sweep_dir}"]
    for family in families:
        lines.append(
            f"  {family.upper()}-type budget: {sweep.budgets[family]:,} env steps per run; evaluation every "
            f"{sweep.eval_every[family]:,} steps over {sweep.eval_episodes[family]} episodes"
        )
    lines.append(f"  tasks: {' '.join(sweep.tasks)}")
    columns = [column + (f" ({PAPER_NAMES[column]})" if column in PAPER_NAMES else "") for column in sweep.columns]
    lines.append(f"  columns: {', '.join(columns)}; seeds: {' '.join(map(str, sweep.seeds))}")
    how = f"{workers} at a time" if launcher == "local" else "one Slurm array task each"
    lines.append(
        f"  {len(sweep.runs)} runs: {len(sweep.runs) - len(pending)} already done (skipped), {len(pending)} to run, {how}"
    )
    return "\n".join(lines)


def write_manifest(sweep: Sweep):
    os.makedirs(sweep.sweep_dir, exist_ok=True)
    manifest = asdict(sweep)
    manifest["runs"] = [dict(asdict(run), command=sweep.command(run)) for run in sweep.runs]
    with open(os.path.join(sweep.sweep_dir, "sweep.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def run_env() -> dict:
    """Environment of every run: single-threaded numerics, headless MuJoCo, the repo importable (module:Env-v0 ids)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.setdefault("MUJOCO_GL", "egl")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, env.get("PYTHONPATH", "")] if p)
    return env


def training_state(run_dir: str) -> str | None:
    """The training-state checkpoint an interrupted run left in run_dir, if any."""
    states = glob.glob(os.path.join(run_dir, "runs", "*", "training_state.pt"))
    return states[0] if len(states) == 1 else None


def run_one(run_dir: str, marker: str, command: list, flags: list, processes: dict | None = None) -> tuple:
    """Run one command in run_dir (log: run_dir/train.log), continuing from the training-state checkpoint of an
    interrupted earlier attempt if there is one, from scratch otherwise; on success write the marker.
    Returns (exit code, wall seconds). Used by the local launcher and, through `sweep.py run-one`, by Slurm tasks."""
    state = training_state(run_dir)
    if state:
        command = [*command[:2], "--resume", os.path.relpath(state, run_dir)]  # the run's own flags are in the state
    else:
        if os.path.exists(run_dir):
            shutil.rmtree(run_dir)  # a partial earlier attempt: its event files would mix with the new ones
        os.makedirs(run_dir)
    start = time.time()
    with open(os.path.join(run_dir, "train.log"), "a" if state else "w") as log:
        log.write("$ " + shlex.join(command) + "\n")
        log.flush()
        proc = subprocess.Popen(command, cwd=run_dir, env=run_env(), stdout=log, stderr=subprocess.STDOUT)
        if processes is not None:
            processes[run_dir] = proc
        returncode = proc.wait()
        if processes is not None:
            processes.pop(run_dir, None)
    wall = time.time() - start
    attempts = add_attempt(run_dir, wall)
    if returncode == 0:
        with open(marker, "w") as f:
            json.dump({**attempts, "flags": flags, "command": command, "finished": time.ctime()}, f)
    return returncode, wall


def add_attempt(run_dir: str, wall: float) -> dict:
    """Count one more attempt at the run in run_dir/attempts.json: {"attempts": n, "wall_s": their total}. A resumed
    run's marker then gives its whole wall time, not only its last attempt's (a fresh start removes the file)."""
    path = os.path.join(run_dir, "attempts.json")
    attempts = {"attempts": 0, "wall_s": 0.0}
    if os.path.exists(path):
        with open(path) as f:
            attempts = json.load(f)
    attempts = {"attempts": attempts["attempts"] + 1, "wall_s": round(attempts["wall_s"] + wall, 1)}
    with open(path, "w") as f:
        json.dump(attempts, f)
    return attempts


def final_eval(log_path: str) -> str:
    try:
        with open(log_path) as f:
            for line in reversed(f.read().splitlines()):
                if line.startswith("final deterministic eval return"):
                    return line.split()[4]
    except OSError:
        pass
    return "n/a"


def stopped_by_signal(code: int) -> bool:
    """A run stopped by a signal (Ctrl-C, SIGTERM, SIGUSR1: it checkpoints and exits 128 + the signal; negative: killed)."""
    return code < 0 or code - 128 in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def launch_local(sweep: Sweep, pending: list, workers: int) -> int:
    """Run the pending runs, `workers` at a time. Ctrl-C or SIGTERM to the sweep, or a signal that stops one of its
    runs, stops the whole sweep: no further run starts, each stopped run keeps its training-state checkpoint."""
    failed, processes, lock, finished, stop = [], {}, threading.Lock(), [0], threading.Event()

    def work(run):
        if stop.is_set():
            return
        code, wall = run_one(sweep.run_dir(run), sweep.marker(run), sweep.command(run), run.flags, processes)
        log = os.path.join(sweep.run_dir(run), "train.log")
        with lock:
            if stopped_by_signal(code):
                stop.set()
                print(f"{run.run_id}: stopped by a signal after {wall:.0f} s (exit {code}); the sweep stops", flush=True)
                return
            finished[0] += 1
            status = f"final eval {final_eval(log)}" if code == 0 else f"FAILED (exit {code}), log {log}"
            print(f"[{finished[0]}/{len(pending)}] {run.run_id}: {wall:.0f} s, {status}", flush=True)
            if code != 0:
                failed.append((run, code, log))

    def interrupt(signum, frame):  # SIGTERM to the sweep: as Ctrl-C, stop its runs (they checkpoint) and start no other
        raise KeyboardInterrupt

    start, previous_handler = time.time(), signal.signal(signal.SIGTERM, interrupt)
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for future in as_completed([pool.submit(work, run) for run in pending]):
            future.result()
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(processes.values()):
            proc.terminate()
        for proc in list(processes.values()):
            proc.wait()  # each run writes its training-state checkpoint before it stops
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    if stop.is_set():
        print("interrupted: finished runs keep their markers, the others their checkpoints; run the same command again to "
              "resume", file=sys.stderr)  # fmt: skip
        return 130
    pool.shutdown()
    print(f"{len(pending) - len(failed)} of {len(pending)} runs finished in {time.time() - start:.0f} s")
    for run, code, log in failed:
        print(f"FAILED: {run.run_id} (exit {code}); log: {log}")
    return 1 if failed else 0


def slurm_script(sweep: Sweep, pending: list, args) -> str:
    """A job array with one task per pending run; each task runs `sweep.py run-one` around the run's command. A task
    that reaches its time limit or is preempted checkpoints its run and is requeued; the requeued task resumes it."""
    sbatch = [f"--job-name=gorl-{sweep.table}-{sweep.preset}", f"--array=0-{len(pending) - 1}", f"--time={args.time}",
              f"--cpus-per-task={args.cpus_per_task}", f"--mem={args.mem}", "--requeue",
              f"--signal=B:USR1@{args.signal_seconds}", "--open-mode=append",
              f"--output={os.path.join(sweep.sweep_dir, 'slurm', '%A_%a.out')}"]  # fmt: skip
    if args.partition:
        sbatch.append(f"--partition={args.partition}")
    sbatch += args.slurm_extra
    lines = ["#!/bin/bash", *[f"#SBATCH {s}" for s in sbatch], ""]
    lines += [f"# {line}" for line in describe(sweep, pending, 0, "slurm").splitlines()]
    lines += ["export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MUJOCO_GL=${MUJOCO_GL:-egl}",
              f"export PYTHONPATH={shlex.quote(ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}", "RUNS=("]  # fmt: skip
    this = os.path.abspath(__file__)
    for run in pending:
        wrapped = [sweep.python, this, "run-one", sweep.run_dir(run), sweep.marker(run), "--", *sweep.command(run)]
        lines.append("  " + shlex.quote(shlex.join(wrapped)))
    # USR1 (--signal, before the time limit) reaches this shell only: pass it on, let the run checkpoint, requeue the
    # task. Preemption sends SIGTERM to every process of the job, the run included, and --requeue puts the task back.
    # `exec`: the background job is run-one itself, not a subshell that USR1 would kill.
    lines += [")", "requeue() {", '  kill -USR1 "$child"; wait "$child"',
              '  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"', "}", "trap requeue USR1",
              'eval "exec ${RUNS[$SLURM_ARRAY_TASK_ID]}" &', "child=$!", 'wait "$child"', ""]  # fmt: skip
    return "\n".join(lines)


def launch_slurm(sweep: Sweep, pending: list, args) -> int:
    script = slurm_script(sweep, pending, args)
    if args.dry_run:
        print(script)
        return 0
    path = os.path.join(sweep.sweep_dir, "slurm", f"array_{time.strftime('%Y%m%d_%H%M%S')}.sh")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(script)
    print(f"wrote {path}; submitting with sbatch")
    return subprocess.run(["sbatch", path]).returncode


def main_run_one(argv: list) -> int:
    """`sweep.py run-one RUN_DIR MARKER -- COMMAND...`: one run with its log and marker (what a Slurm task does)."""
    if len(argv) < 4 or argv[2] != "--":
        print("usage: sweep.py run-one RUN_DIR MARKER -- COMMAND...", file=sys.stderr)
        return 2
    run_dir, marker, command = argv[0], argv[1], argv[3:]
    if os.path.exists(marker):
        print(f"{marker} exists: already done")
        return 0
    processes = {}

    def forward(signum, frame):  # Slurm signals this process: the run checkpoints and stops
        for proc in list(processes.values()):
            proc.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, forward)
    code, wall = run_one(run_dir, marker, command, command[2:], processes)
    print(f"{os.path.basename(run_dir)}: exit {code} after {wall:.0f} s; log {os.path.join(run_dir, 'train.log')}")
    return code


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run-one"]:
        return main_run_one(argv[1:])
    args = build_parser().parse_args(argv)
    sweep = plan(args)
    pending = [run for run in sweep.runs if not sweep.is_done(run)]
    print(describe(sweep, pending, args.workers, args.launcher), flush=True)
    if args.launcher == "slurm":
        if not pending:
            print("nothing to submit: every run is done")
            return 0
        if not args.dry_run:
            write_manifest(sweep)
        return launch_slurm(sweep, pending, args)
    if args.dry_run:
        done = {run.run_id for run in sweep.runs} - {run.run_id for run in pending}
        for run in sweep.runs:
            prefix = "# done, skipped: " if run.run_id in done else ""
            print(f"{prefix}(cd {shlex.quote(sweep.run_dir(run))} && {shlex.join(sweep.command(run))})")
        return 0
    write_manifest(sweep)
    return launch_local(sweep, pending, args.workers) if pending else 0


if __name__ == "__main__":
    sys.exit(main())

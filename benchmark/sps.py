"""Training speed of the algorithm scripts against the raw env stepping rate, measured in one session.

The raw rate steps the same task through the same wrappers (make_vector_env, reward scaling) with the same
num_envs, with random actions and no learning. Each script then trains for --steps env steps with evaluation
off, and its own charts/SPS (training steps per second of wall time) is read back from its event file.

    python benchmark/sps.py --env-id HopperStand --steps 100000
    python benchmark/sps.py --scripts gaussian_sac.py gorl_sac.py --steps 20000 --rate-after 5000

--rate-after N reports the rate over the env steps after N only (SAC's random warm-up steps are far faster than its
training steps, so charts/SPS, which counts from step 0, overstates the training rate). It needs no extra logging:
charts/SPS = step / elapsed at each logged step, so two points give the wall time between them.
"""

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time

import gymnasium as gym

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmark.events import read_scalars  # noqa: E402


def load_script(script: str):
    spec = importlib.util.spec_from_file_location(script[: -len(".py")], os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw_env_sps(script: str, env_id: str, steps: int) -> float:
    """Random-action steps per second through the script's own env stack (its default num_envs)."""
    module = load_script(script)
    defaults = module.Args()
    envs = module.make_vector_env(module.resolve_env_id(env_id), defaults.num_envs, seed=0)
    envs = gym.wrappers.vector.NormalizeReward(envs, gamma=defaults.gamma)
    envs.reset(seed=0)
    envs.action_space.seed(0)
    start = time.time()
    for _ in range(steps // defaults.num_envs):
        envs.step(envs.action_space.sample())
    elapsed = time.time() - start
    envs.close()
    return steps // defaults.num_envs * defaults.num_envs / elapsed


def rate_after(sps_points: list, after: int) -> float:
    """Env steps per second between the first charts/SPS point past `after` and the last one.

    Each point is (step, step / elapsed), so elapsed = step / sps; the rate is the steps between two points over the
    difference of their elapsed times."""
    later = [(step, sps) for step, sps in sps_points if step > after and sps > 0]
    if len(later) < 2:
        raise SystemExit(f"error: --rate-after {after:,} leaves fewer than 2 charts/SPS points; raise --steps")
    (first_step, first_sps), (last_step, last_sps) = later[0], later[-1]
    return (last_step - first_step) / (last_step / last_sps - first_step / first_sps)


def training_sps(script: str, env_id: str, steps: int, extra_flags: list, after: int = 0) -> float:
    """The script's training rate over a run of `steps` env steps with evaluation off: its last charts/SPS, or with
    `after` > 0 the rate over the steps past `after` (see rate_after)."""
    with tempfile.TemporaryDirectory() as cwd:
        command = [sys.executable, os.path.join(ROOT, script), "--env-id", env_id, "--total-timesteps", str(steps)]
        command += ["--eval-every", str(10 * steps), "--eval-episodes", "1", *extra_flags]
        subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        (run_name,) = os.listdir(os.path.join(cwd, "runs"))
        sps_points = read_scalars(os.path.join(cwd, "runs", run_name))["charts/SPS"]
        return rate_after(sps_points, after) if after > 0 else sps_points[-1][1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="HopperStand")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per measurement")
    parser.add_argument("--scripts", nargs="+", default=["gaussian_ppo.py", "gorl_ppo.py"])
    parser.add_argument("--script-flags", default="", help="extra flags for every script, as one string")
    parser.add_argument("--gorl-flags", default="", help="extra flags for the gorl_* scripts only, as one string")
    parser.add_argument("--rate-after", type=int, default=0, help="measure training over the env steps after this one only")
    parser.add_argument("--output", help="also write the markdown table to this file")
    args = parser.parse_args()

    raw = raw_env_sps(args.scripts[0], args.env_id, args.steps)
    rows = [f"| raw env stepping (random actions) | {raw:,.0f} | 1.00 | |"]
    first = None
    for script in args.scripts:
        flags = args.script_flags.split() + (args.gorl_flags.split() if script.startswith("gorl") else [])
        sps = training_sps(script, args.env_id, args.steps, flags, args.rate_after)
        first = first or sps
        rows.append(f"| {script} {' '.join(flags)} | {sps:,.0f} | {sps / raw:.2f} | {sps / first:.2f} |")
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            f"Training SPS on {args.env_id}, {args.steps:,} env steps per run"
            + (f" (rate over the steps after {args.rate_after:,})" if args.rate_after else "")
            + ", evaluation off; "
            f"{platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}.",
            "",
            f"| run | SPS | x raw env | x {args.scripts[0]} |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()

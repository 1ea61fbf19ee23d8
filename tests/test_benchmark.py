"""Tests of the benchmark tooling: sweep command lists, resume, Slurm script, summaries and the multimodality experiment."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmark import multimodality, summarize, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE_1 = ["CheetahRun", "FingerSpin", "FingerTurnHard", "FishSwim", "HopperStand", "WalkerWalk"]


def read(path):
    with open(path) as f:
        return f.read()


def table_script(name, *flags, out_dir):
    """Run a table script (benchmark/<name>.sh) with this interpreter; returns its stdout."""
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "benchmark", name), "--out-dir", str(out_dir), *flags],
        env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def commands(stdout):
    """The dry run's commands, each as the list of words after the script path."""
    return [line.split(" && ", 1)[1].rstrip(")").split()[2:] for line in stdout.splitlines() if line.startswith("(cd ")]


def flag(words, name):
    return words[words.index(name) + 1]


# ---------------------------------------------------------------- command lists


def test_main_table_paper_preset_runs_every_task_method_and_seed_at_the_paper_budget(tmp_path):
    out = table_script("run_all.sh", "--dry-run", out_dir=tmp_path)
    runs = commands(out)
    assert len(runs) == 6 * 5 * 5
    assert sorted({flag(r, "--env-id") for r in runs}) == sorted(TABLE_1)
    assert {flag(r, "--exp-name") for r in runs} == {"gaussian_ppo", "fpo", "dppo", "gorl_ppo", "gorl_ppo_diff"}
    assert "columns: gaussian_ppo (PPO), fpo (FPO), dppo (DPPO), gorl_ppo (GoRL-FM), gorl_ppo_diff (GoRL-Diff);" in out
    assert all(r[-2:] == ["--decoder", "diffusion"] for r in runs if flag(r, "--exp-name") == "gorl_ppo_diff")
    assert all(r[0] == "paper" for r in runs)  # the PPO scripts start from the paper's configuration
    assert re.search(r"/benchmark/baselines/fpo_ppo\.py paper --env-id CheetahRun --seed 1 ", out)
    assert sorted({int(flag(r, "--seed")) for r in runs}) == [1, 2, 3, 4, 5]
    assert {flag(r, "--total-timesteps") for r in runs} == {"180000000"}
    assert {flag(r, "--eval-every") for r in runs} == {"6000000"} and {flag(r, "--eval-episodes") for r in runs} == {"128"}
    assert {flag(r, "--checkpoint-every") for r in runs} == {"6000000"}  # a resumable state at each evaluation
    keys = {(flag(r, "--env-id"), flag(r, "--exp-name"), flag(r, "--seed")) for r in runs}
    assert len(keys) == len(runs)  # no duplicates
    assert "180,000,000 env steps per run" in out and "150 runs: 0 already done (skipped), 150 to run" in out
    assert not os.listdir(tmp_path)  # a dry run writes nothing


def test_quick_preset_is_one_knob_smaller_and_scales_evaluation(tmp_path):
    runs = commands(table_script("run_all.sh", "--preset", "quick", "--dry-run", out_dir=tmp_path))
    assert len(runs) == 6 * 5 * 2
    assert sorted({int(flag(r, "--seed")) for r in runs}) == [1, 2]
    assert {flag(r, "--total-timesteps") for r in runs} == {"150000"}
    assert {flag(r, "--eval-every") for r in runs} == {"30000"}
    gorl = [r for r in runs if flag(r, "--exp-name").startswith("gorl_ppo")]
    assert len(gorl) == 24 and all("--decoder-data-fraction" in r for r in gorl)
    # the twins start from `cleanrl` (the paper's 30,720-step batch does not fit 4 stages of 150k); fpo and dppo have none
    twins = {"gaussian_ppo", "gorl_ppo", "gorl_ppo_diff"}
    assert all(r[0] == ("cleanrl" if flag(r, "--exp-name") in twins else "--env-id") for r in runs)
    # overrides: the budget knob, the number of seeds and the task list
    runs = commands(
        table_script("run_all.sh", "--preset", "quick", "--ppo-steps", "50000", "--num-seeds", "1", "--tasks", "HopperStand",
                     "--dry-run", out_dir=tmp_path)  # fmt: skip
    )
    assert len(runs) == 5 and {flag(r, "--total-timesteps") for r in runs} == {"50000"}
    assert {flag(r, "--eval-every") for r in runs} == {"10000"}


def test_laptop_preset_runs_ten_million_steps_on_the_tasks_that_learn(tmp_path):
    runs = commands(table_script("run_all.sh", "--preset", "laptop", "--dry-run", out_dir=tmp_path))
    assert len(runs) == 2 * 5 * 2 and {flag(r, "--env-id") for r in runs} == {"WalkerWalk", "CheetahRun"}
    assert {flag(r, "--total-timesteps") for r in runs} == {"10000000"} and {r[0] for r in runs} == {"--env-id"}  # defaults
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "benchmark", "humanoids.sh"), "--preset", "laptop", "--dry-run", "--out-dir",
         str(tmp_path)],
        env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error: the laptop preset runs only tasks that learn")


def test_a_variant_may_name_a_ppo_configuration_which_goes_first(tmp_path, capsys):
    base = ["--table", "t", "--preset", "laptop", "--tasks", "WalkerWalk", "--seeds", "1", "--num-seeds", "1", "--dry-run",
            "--out-dir", str(tmp_path)]  # fmt: skip
    assert (
        sweep.main([*base, "--variant", "gorl_cleanrl=gorl_ppo cleanrl --decoder diffusion", "--methods", "gaussian_ppo"]) == 0
    )
    runs = {flag(r, "--exp-name"): r for r in commands(capsys.readouterr().out)}
    assert runs["gorl_cleanrl"][0] == "cleanrl" and runs["gorl_cleanrl"][-2:] == ["--decoder", "diffusion"]
    assert runs["gaussian_ppo"][0] == "--env-id"  # the laptop preset's own configuration: the scripts' defaults
    for bad, why in [("x=gorl_sac paper", "not a configuration of gorl_sac (it has none)"),
                     ("x=fpo cleanrl", "'cleanrl' is not a configuration of fpo (it has paper)"),
                     ("x=gorl_ppo papr", "'papr' is not a configuration of gorl_ppo (it has paper, cleanrl)")]:  # fmt: skip
        with pytest.raises(SystemExit):
            sweep.main([*base, "--variant", bad])
        assert why in capsys.readouterr().err


def test_other_tables_command_lists(tmp_path):
    humanoids = commands(table_script("humanoids.sh", "--dry-run", out_dir=tmp_path))
    assert len(humanoids) == 2 * 5 * 3
    assert {flag(r, "--env-id") for r in humanoids} == {"HumanoidStand", "HumanoidRun"}
    assert {flag(r, "--total-timesteps") for r in humanoids} == {"180000000"}

    out = table_script("sac.sh", "--dry-run", out_dir=tmp_path)
    sac = commands(out)
    assert len(sac) == 3 * 2 * 5
    assert {flag(r, "--env-id") for r in sac} == {"Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"}
    assert {flag(r, "--total-timesteps") for r in sac} == {"4000000"}
    assert all(re.search(r"/(gorl|gaussian)_sac\.py --env-id", line) for line in out.splitlines() if line.startswith("(cd"))

    ablations = commands(table_script("ablations.sh", "--dry-run", out_dir=tmp_path))
    assert len(ablations) == 7 * 3 and {flag(r, "--env-id") for r in ablations} == {"HopperStand"}
    variants = {flag(r, "--exp-name"): r[r.index("--checkpoint-every") + 2 :] for r in ablations}
    assert variants == {
        "gorl_ppo": [], "gorl_ppo-stages1": ["--num-stages", "1"], "gorl_ppo-stages2": ["--num-stages", "2"],
        "gorl_ppo-kl0": ["--latent-kl-coef", "0"], "gorl_ppo-kl1e-2": ["--latent-kl-coef", "1e-2"],
        "gorl_ppo-flow1": ["--flow-steps", "1"], "gorl_ppo-flow5": ["--flow-steps", "5"],
    }  # fmt: skip


# ---------------------------------------------------------------- local launcher: resume and failures

FAKE_SCRIPT = """
import os, sys
args = sys.argv[1:]
seed = args[args.index("--seed") + 1]
with open(os.path.join(os.environ["FAKE_CALLS"], f"{args[args.index('--env-id') + 1]}_{os.path.basename(__file__)}_{seed}"), "a") as f:
    f.write("x")
os.makedirs("runs/fake", exist_ok=True)  # the cwd is the run's own dir
print("final deterministic eval return 1.00 after 10 steps")
sys.exit(3 if os.environ.get("FAKE_FAIL") == seed else 0)
"""


def fake_sweep(tmp_path, monkeypatch, *extra):
    scripts, calls = tmp_path / "scripts", tmp_path / "calls"
    scripts.mkdir(exist_ok=True)
    calls.mkdir(exist_ok=True)
    for name in ("gorl_ppo.py", "gaussian_ppo.py"):
        (scripts / name).write_text(FAKE_SCRIPT)
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    argv = ["--table", "t", "--tasks", "A", "B", "--methods", "gorl_ppo", "gaussian_ppo", "--seeds", "1", "2",
            "--ppo-steps", "1000", "--workers", "2", "--out-dir", str(tmp_path / "out"), "--scripts-dir", str(scripts), *extra]  # fmt: skip
    return argv, calls


def test_failed_runs_are_reported_and_finished_runs_are_skipped_on_resume(tmp_path, monkeypatch, capsys):
    argv, calls = fake_sweep(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_FAIL", "2")
    assert sweep.main(argv) == 1  # the seed-2 runs fail, the others still run
    out = capsys.readouterr().out
    sweep_dir = tmp_path / "out" / "t" / "paper"
    assert len(list(calls.iterdir())) == 8
    assert out.count("FAILED: ") == 4 and str(sweep_dir / "A__gorl_ppo__2" / "train.log") in out
    assert sorted(p.name for p in sweep_dir.glob("*.done")) == sorted(
        f"{t}__{m}__1.done" for t in "AB" for m in ("gorl_ppo", "gaussian_ppo")
    )
    marker = json.loads((sweep_dir / "A__gorl_ppo__1.done").read_text())
    assert marker["flags"][:3] == ["paper", "--env-id", "A"] and marker["wall_s"] >= 0  # the paper preset's PPO config
    assert (sweep_dir / "A__gorl_ppo__1" / "runs" / "fake").is_dir()  # the run's cwd is its own dir

    monkeypatch.delenv("FAKE_FAIL")
    assert sweep.main(argv) == 0  # resume: only the four failed runs run again
    assert "8 runs: 4 already done (skipped), 4 to run" in capsys.readouterr().out
    assert {p.name: p.read_text() for p in calls.iterdir()} == {
        f"{t}_{m}.py_{s}": "x" * s for t in "AB" for m in ("gorl_ppo", "gaussian_ppo") for s in (1, 2)
    }
    assert sweep.main(argv + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("# done, skipped: (cd ") == 8

    # a marker whose command differs (another budget) does not count as done
    argv_bigger = [*argv, "--ppo-steps", "2000"]
    plan = sweep.plan(sweep.build_parser().parse_args(argv_bigger))
    assert not any(plan.is_done(run) for run in plan.runs)


def test_is_done_needs_a_marker_with_the_same_flags(tmp_path):
    args = sweep.build_parser().parse_args(["--table", "t", "--tasks", "A", "--methods", "gorl_ppo", "--seeds", "1",
                                            "--out-dir", str(tmp_path)])  # fmt: skip
    plan = sweep.plan(args)
    (run,) = plan.runs
    assert not plan.is_done(run)
    os.makedirs(plan.sweep_dir)
    with open(plan.marker(run), "w") as f:
        json.dump({"flags": run.flags, "wall_s": 1.0}, f)
    assert plan.is_done(run)
    with open(plan.marker(run), "w") as f:
        f.write("not json")
    assert not plan.is_done(run)


# ---------------------------------------------------------------- slurm


def test_slurm_script_has_one_array_task_per_pending_run(tmp_path, capsys):
    argv = ["--table", "main", "--tasks", "HopperStand", "CheetahRun", "--methods", "gorl_ppo", "gaussian_ppo",
            "--seeds", "1", "2", "3", "--out-dir", str(tmp_path), "--launcher", "slurm", "--partition", "cpu",
            "--time", "12:00:00", "--cpus-per-task", "1", "--mem", "8G", "--dry-run"]  # fmt: skip
    plan = sweep.plan(sweep.build_parser().parse_args(argv))
    os.makedirs(plan.sweep_dir)
    with open(plan.marker(plan.runs[0]), "w") as f:  # one run already finished: not in the array
        json.dump({"flags": plan.runs[0].flags}, f)
    assert sweep.main(argv) == 0
    script = capsys.readouterr().out.split("#!/bin/bash", 1)[1]
    for line in ["#SBATCH --array=0-10", "#SBATCH --partition=cpu", "#SBATCH --time=12:00:00", "#SBATCH --cpus-per-task=1",
                 "#SBATCH --mem=8G", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@300", "export OMP_NUM_THREADS=1",
                 'eval "exec ${RUNS[$SLURM_ARRAY_TASK_ID]}" &', "trap requeue USR1", 'kill -USR1 "$child"; wait "$child"',
                 'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"']:  # fmt: skip
        assert line in script
    entries = re.findall(r"^  '(.*)'$", script, flags=re.MULTILINE)
    assert len(entries) == 11
    assert plan.runs[0].run_id + ".done" not in script
    assert all(" run-one " in e and "--total-timesteps 180000000" in e for e in entries)
    assert not os.path.exists(os.path.join(plan.sweep_dir, "sweep.json"))  # a dry run submits and writes nothing


def test_run_one_cli_writes_log_and_marker(tmp_path):
    run_dir, marker = tmp_path / "r", tmp_path / "r.done"
    command = [sys.executable, "-c", "print('hello')", "--seed", "1"]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmark", "sweep.py"), "run-one", str(run_dir), str(marker),
                           "--", *command], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "hello" in (run_dir / "train.log").read_text()
    assert json.loads(marker.read_text())["command"] == command


def test_slurm_task_checkpoints_requeues_and_resumes_its_run(tmp_path):
    """The array script as Slurm runs it, with a stand-in scontrol: USR1 (the time limit nears) reaches the task's
    shell, which passes it on through run-one to the run; the run checkpoints and stops, the task requeues itself,
    no marker is written, and the requeued task continues the run from its checkpoint to the end."""
    argv = ["--table", "t", "--tasks", "Pendulum-v1", "--methods", "gaussian_sac", "--seeds", "1", "--preset", "quick",
            "--sac-steps", "1200", "--num-evals", "2", "--eval-episodes", "1", "--checkpoint-every", "300",
            "--extra-flags", "--learning-starts 200 --batch-size 64", "--out-dir", str(tmp_path), "--launcher", "slurm"]  # fmt: skip
    args = sweep.build_parser().parse_args(argv)
    plan = sweep.plan(args)
    (run,) = plan.runs
    script = tmp_path / "array.sh"
    script.write_text(sweep.slurm_script(plan, plan.runs, args))
    (tmp_path / "bin").mkdir()
    scontrol = tmp_path / "bin" / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "requeued"}\n')
    scontrol.chmod(0o755)
    env = dict(os.environ, SLURM_ARRAY_JOB_ID="77", SLURM_ARRAY_TASK_ID="0", PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")

    task = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while sweep.training_state(plan.run_dir(run)) is None:
        assert task.poll() is None and time.time() < deadline, "the run wrote no checkpoint"
        time.sleep(0.05)
    task.send_signal(signal.SIGUSR1)
    assert task.wait(timeout=120) == 128 + signal.SIGUSR1, task.stderr.read()  # the run's exit: stopped by USR1
    assert (tmp_path / "requeued").read_text() == "requeue 77_0\n"
    assert not os.path.exists(plan.marker(run)) and sweep.training_state(plan.run_dir(run))
    first_wall = json.loads(read(os.path.join(plan.run_dir(run), "attempts.json")))["wall_s"]

    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    log = read(os.path.join(plan.run_dir(run), "train.log"))
    stopped_at = int(re.search(r"stopped by SIGUSR1 at step (\d+)", log).group(1))
    assert re.search(
        rf"--resume runs/Pendulum-v1__gaussian_sac__1__\d+/training_state.pt\nresumed .* at step {stopped_at:,} ", log
    )
    assert "final deterministic eval return" in log and os.path.exists(plan.marker(run))
    assert sweep.training_state(plan.run_dir(run)) is None  # the finished run removed its checkpoint
    marker = json.loads(read(plan.marker(run)))
    assert marker["attempts"] == 2 and marker["wall_s"] > first_wall > 0  # the whole run's time, both attempts


def child_pids(pid: int) -> list:
    """The processes whose parent is pid (read from /proc)."""
    children = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(read(f"/proc/{entry}/stat").rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
        except (OSError, IndexError):
            pass  # the process ended meanwhile
    return children


@pytest.mark.parametrize("target", ["run", "sweep"])
def test_signal_stops_the_whole_local_sweep(tmp_path, target):
    """SIGTERM to a run (as `kill` or a scheduler would send it) or to the sweep itself: the run checkpoints and stops,
    and the sweep stops with it instead of starting the next run; the same command then resumes."""
    argv = ["--table", "t", "--tasks", "Pendulum-v1", "--methods", "gaussian_sac", "--seeds", "1", "2", "--preset", "quick",
            "--num-seeds", "2", "--sac-steps", "20000", "--num-evals", "2", "--eval-episodes", "1", "--checkpoint-every", "300",
            "--extra-flags", "--learning-starts 200 --batch-size 64", "--out-dir", str(tmp_path), "--workers", "1"]  # fmt: skip
    plan = sweep.plan(sweep.build_parser().parse_args(argv))
    first, second = plan.runs
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "benchmark", "sweep.py"), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 120
    while sweep.training_state(plan.run_dir(first)) is None:
        assert proc.poll() is None and time.time() < deadline, "the first run wrote no checkpoint"
        time.sleep(0.05)
    os.kill(child_pids(proc.pid)[0] if target == "run" else proc.pid, signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert "stopped by SIGTERM" in read(os.path.join(plan.run_dir(first), "train.log"))
    assert sweep.training_state(plan.run_dir(first)) and not os.path.exists(plan.marker(first))
    assert not os.path.exists(plan.run_dir(second)), output  # the next run never started
    assert "run the same command again to resume" in output


# ---------------------------------------------------------------- summarize


def synthetic_sweep(tmp_path):
    """A main-table sweep of 2 tasks x 3 methods x 3 seeds with made-up event files; one run never finished."""
    from torch.utils.tensorboard import SummaryWriter

    argv = ["--table", "main", "--tasks", "HopperStand", "CheetahRun", "--methods", "gorl_ppo", "gaussian_ppo", "fpo",
            "--seeds", "1", "2", "3", "--preset", "quick", "--num-seeds", "3", "--out-dir", str(tmp_path / "runs")]  # fmt: skip
    plan = sweep.plan(sweep.build_parser().parse_args(argv))
    sweep.write_manifest(plan)
    for run in plan.runs:
        if run.run_id == "CheetahRun__gaussian_ppo__3":
            os.makedirs(plan.run_dir(run))  # started, never finished
            continue
        base = 100.0 * (run.column == "gorl_ppo") - 5.0 * (run.column == "fpo") + 10.0 * run.seed
        base += 500.0 if run.task == "HopperStand" else 0.0
        writer = SummaryWriter(os.path.join(plan.run_dir(run), "runs", f"{run.run_id}__123"))
        for step in range(0, 150_001, 30_000):
            writer.add_scalar("eval/episodic_return", base * step / 150_000, step)
            writer.add_scalar("charts/SPS", 1000 + run.seed, step)
        writer.close()
        with open(plan.marker(run), "w") as f:
            json.dump({"flags": run.flags, "wall_s": 60.0 + run.seed}, f)
    return plan


def test_summarize_writes_tables_and_curves_and_lists_missing_runs(tmp_path):
    plan = synthetic_sweep(tmp_path)
    out_dir = summarize.summarize(plan.sweep_dir, str(tmp_path / "results"))
    returns = read(os.path.join(out_dir, "returns.md"))
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in returns.splitlines() if line.startswith("| ")}
    # final return = LAST eval: base; seeds 1..3 add 10, 20, 30 -> mean 20 + base, population std 8.2
    # each column beside the paper's number for it, then the paper's methods that this sweep did not run
    assert rows["task"] == ["| task", "`gorl_ppo` (GoRL-FM)", "paper GoRL-FM", "`gaussian_ppo` (PPO)", "paper PPO",
                            "`fpo` (FPO)", "paper FPO", "paper DPPO", "paper GoRL-Diff |"]  # fmt: skip
    assert rows["HopperStand"][1] == "620.0 +- 8.2 (n=3)" and rows["HopperStand"][2] == "733.7 +- 223.8"
    assert rows["HopperStand"][3] == "520.0 +- 8.2 (n=3)" and rows["HopperStand"][4] == "286.1 +- 273.1"
    assert rows["HopperStand"][5] == "515.0 +- 8.2 (n=3)" and rows["HopperStand"][6] == "3.9 +- 1.8"
    assert rows["CheetahRun"][1] == "120.0 +- 8.2 (n=3)" and rows["CheetahRun"][3] == "15.0 +- 5.0 (n=2)"
    assert "150,000 env steps per PPO-type run" in returns and "planned seeds 1, 2, 3" in returns
    assert "`CheetahRun__gaussian_ppo__3`: unfinished or failed" in returns

    runtime = read(os.path.join(out_dir, "runtime.md"))
    assert (
        sum(line.startswith("| `") for line in runtime.splitlines()) == 17
        and "| `HopperStand__gorl_ppo__2` | HopperStand | `gorl_ppo` | 2 | 150,000 | 62 | 1002 |" in runtime
    )
    assert "150,000 env steps per PPO-type run" in runtime
    assert os.path.getsize(os.path.join(out_dir, "curves.png")) > 10_000


def test_curve_averages_seeds_on_common_steps():
    records = [{"eval": [(0, 0.0), (10, 10.0), (20, 20.0)]}, {"eval": [(0, 2.0), (10, 4.0)]}]
    steps, mean, std = summarize.curve(records)
    assert steps.tolist() == [0, 10] and mean.tolist() == [1.0, 7.0] and std.tolist() == [1.0, 3.0]


# ---------------------------------------------------------------- multimodality


def test_bimodality_coefficient_separates_one_mode_from_two():
    rng = np.random.default_rng(0)
    gaussian, uniform = rng.standard_normal(50_000), rng.uniform(-1, 1, 50_000)
    two_modes = np.concatenate([rng.normal(-1, 0.3, 30_000), rng.normal(1, 0.3, 20_000)])
    assert multimodality.bimodality_coefficient(gaussian) == pytest.approx(1 / 3, abs=0.01)
    assert multimodality.bimodality_coefficient(uniform) == pytest.approx(5 / 9, abs=0.01)
    assert multimodality.bimodality_coefficient(two_modes) > 0.75


def test_first_component_is_the_axis_between_two_clusters():
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], 4000)
    actions = np.outer(signs, [0.6, -0.8]) + 0.1 * rng.standard_normal((4000, 2))  # the clusters lie along (0.6, -0.8)
    projection = multimodality.first_component(actions)
    assert abs(np.corrcoef(projection, signs)[0, 1]) > 0.99
    assert multimodality.bimodality_coefficient(projection) > 0.8


def test_gorl_policy_with_a_two_mode_decoder_reads_bimodal_and_the_identity_reads_gaussian():
    """What the figure measures, through the script's own sampling: a decoder fit on two modes per state makes the latent
    policy's N(0, I) samples bimodal; stage 0's identity decoder leaves them Gaussian."""
    import torch

    import gorl_ppo
    from tests.helpers import two_mode_dataset

    torch.manual_seed(0)
    obs, actions = two_mode_dataset(4000, noise=0.02)
    agent, decoder = gorl_ppo.Agent(obs_dim=2, action_dim=1), gorl_ppo.FlowDecoder(obs_dim=2, action_dim=1, flow_steps=10)
    agent.reset_to_prior()
    state = torch.tensor([0.5, -0.2])
    identity = multimodality.sample_actions(agent, decoder, state, 10_000).numpy()
    assert multimodality.bimodality_coefficient(multimodality.first_component(identity)) == pytest.approx(1 / 3, abs=0.02)
    gorl_ppo.fit_decoder(decoder, obs, actions, epochs=40, batch_size=512, lr=1e-3, noise_draws=8, patience=10)
    decoded = multimodality.sample_actions(agent, decoder, state, 10_000).numpy()
    assert multimodality.bimodality_coefficient(multimodality.first_component(decoded)) > 5 / 9


def test_curve_table_reads_each_run_at_every_step_and_gives_ranges(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from benchmark.curve_table import curve_table

    for name, last in [("gorl_sac", 100), ("gaussian_sac", 60)]:
        writer = SummaryWriter(str(tmp_path / f"Task__{name}__1__0"))
        for step in range(0, last + 1, 10):
            writer.add_scalar("losses/qf1_values", step / 10, step)
        writer.close()
    table = curve_table([str(tmp_path / "Task__gorl_sac__1__0"), str(tmp_path / "Task__gaussian_sac__1__0")],
                        ["losses/qf1_values"], every=50)  # fmt: skip
    assert "| 50 | 5 | 5 |" in table and "| 100 | 10 |  |" in table  # nothing after a run's last point
    assert "- gaussian_sac `losses/qf1_values`: 0 to 6 over 7 points, last 6 at step 60" in table


def test_curve_table_gives_the_share_of_training_episodes_above_a_return_and_the_last_window_mean(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from benchmark.curve_table import curve_table

    writer = SummaryWriter(str(tmp_path / "Task__gorl_sac__1__0"))
    for step, episode_return in [(10, 900.0), (20, 0.0), (30, 950.0), (40, 920.0), (60, 5.0), (70, 0.0)]:
        writer.add_scalar("charts/episodic_return", episode_return, step)
        writer.add_scalar("eval/episodic_return", episode_return, step)
    writer.close()
    table = curve_table([str(tmp_path / "Task__gorl_sac__1__0")], ["eval/episodic_return"], every=50, threshold=500)
    assert "| env steps | gorl_sac `eval/episodic_return` | gorl_sac training episodes above 500 (n) |" in table
    # rows at 0 and 50: the episodes of (-50, 0] (none) and of (0, 50] (3 of 4 above 500); the next row is past the run
    assert "| 0 |  |  |" in table and "| 50 | 920 | 0.75 (4) |" in table
    # --last-window: the training episodes that ended in the run's last 35 steps, (35, 70]: 920, 5 and 0
    table = curve_table([str(tmp_path / "Task__gorl_sac__1__0")], ["eval/episodic_return"], every=50, window=35)
    assert "- gorl_sac training return, last 35 env steps: mean 308.3 over 3 episodes in (35, 70], 0 to 920" in table
    table = curve_table([str(tmp_path / "Task__gorl_sac__1__0")], ["eval/episodic_return"], every=50, window=0)
    assert "- gorl_sac training return, last 0 env steps: no episode ended in (70, 70]" in table


def test_refit_check_refits_decoders_on_buffer_slices_of_a_training_state(tmp_path):
    from tests.test_resume import RUNS, interrupt_after_first_checkpoint

    flags = [*RUNS["gorl_sac.py"], "--checkpoint-every", "300"]
    code, _, stderr, state = interrupt_after_first_checkpoint("gorl_sac.py", flags, tmp_path, signal.SIGINT)
    assert code == 128 + signal.SIGINT, stderr
    check = [sys.executable, os.path.join(ROOT, "benchmark", "refit_check.py"), state, "--episodes", "2"]
    proc = subprocess.run([*check, "--slices", "0:200", "--hidden", "16"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^(.+?)\s+z=(zero|prior)\s+return\s+(-?[\d.]+), (\d)/2 above 500", proc.stdout, re.M)
    assert [(name.strip(), latent) for name, latent, _, _ in rows] == [
        ("the run's decoder", "zero"),
        ("the run's decoder", "prior"),
        ("200 pairs, hidden 16", "zero"),
        ("200 pairs, hidden 16", "prior"),
    ]
    assert re.search(r"refit on 0:200, hidden 16: train loss [\d.]+, val loss [\d.]+", proc.stdout)
    # the stage-0 decoder is the identity and the refit one is not: the same latents give other returns
    assert rows[0][2] != rows[2][2] or rows[1][2] != rows[3][2]
    proc = subprocess.run([*check, "--slices", "0:99999"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and re.fullmatch(
        r"error: slice 0:99999 ends past the buffer's [\d,]+ transitions\n", proc.stderr
    )
    # --pairs: fresh pairs from the state's policy, as the script collects them at a refit, and the refit report
    proc = subprocess.run(
        [*check, "--pairs", "200", "--hidden", "16", "--epochs", "2"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"200 pairs, fresh 4x16 decoder: val loss [\d.]+ .*deterministic action error [\d.]+", proc.stdout)
    assert re.search(r"action error by phase: first 100 steps [\d.]+ \(\d+ states\), later", proc.stdout)


def test_sps_rate_after_counts_only_the_steps_past_the_warm_up():
    from benchmark.sps import rate_after

    # 2,000 fast warm-up steps in 2 s, then 1,000 steps every 10 s: charts/SPS = step / elapsed at each logged step
    elapsed = {1000: 1.0, 2000: 2.0, 3000: 12.0, 4000: 22.0, 5000: 32.0}
    points = [(step, int(step / seconds)) for step, seconds in elapsed.items()]
    assert points[-1][1] == 156  # what charts/SPS reports: the warm-up inflates it
    assert rate_after(points, 2000) == pytest.approx(100, rel=0.02)
    with pytest.raises(SystemExit, match="fewer than 2"):
        rate_after(points, 4000)


def test_time_to_return_gives_the_steps_and_training_time_of_the_first_evaluation_at_each_return(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    from benchmark.time_to_return import main

    run_dir = str(tmp_path / "Task__gorl_ppo__1__0")
    writer = SummaryWriter(run_dir)
    for step, value in [(0, 10.0), (1_000_000, 350.0), (2_000_000, 420.0), (3_000_000, 390.0), (4_000_000, 810.0)]:
        writer.add_scalar("eval/episodic_return", value, step)
    for step in range(500_000, 4_500_001, 500_000):  # 1,000 SPS, then 2,000 from 3M on
        writer.add_scalar("charts/SPS", 1000 if step < 3_000_000 else 2000, step)
    writer.close()
    assert main([run_dir, "--returns", "400", "800", "900"]) == 0
    table = capsys.readouterr().out
    # 400 first at 2M (2,000 s at 1,000 SPS = 33 min), 800 at 4M (4M / 2,000 SPS = 33 min), 900 never
    assert table.splitlines()[2] == "| `Task__gorl_ppo__1__0` | 810.0 | 4,500,000 | 2.00M, 33 | 4.00M, 33 | not reached |"


def test_refit_table_reads_each_refit_report_and_the_training_return_around_it(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    from benchmark.refit_table import main

    run_dir = str(tmp_path / "Task__gorl_ppo__1__0")
    writer = SummaryWriter(run_dir)
    # training episodes every 10k steps: 100 before the data collection (steps 1.0M-1.1M), 300 after the refit at 1.2M
    for step in range(1_000_000, 1_100_001, 10_000):
        writer.add_scalar("charts/episodic_return", 100.0, step)
    for step in range(1_210_000, 1_310_001, 10_000):
        writer.add_scalar("charts/episodic_return", 300.0 if step <= 1_300_000 else 900.0, step)
    report = dict(deterministic_error=0.1, std_ratio_min=0.9, std_ratio_mean=1.0, std_ratio_max=1.1, sliced_wasserstein=0.05)
    report |= dict(
        old_return_deterministic=500, new_return_deterministic=450, old_return_stochastic=400, new_return_stochastic=380
    )
    for name, value in report.items():
        writer.add_scalar(f"refit/{name}", value, 1_200_000)
    writer.add_scalar("eval/episodic_return", 510.0, 1_050_000)
    writer.add_scalar("eval/episodic_return", 470.0, 1_250_000)
    writer.close()
    assert main([run_dir, "--window", "100000"]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    # before: the 10 episodes in (1.0M, 1.1M]; after: the 10 in (1.2M, 1.3M], not the one at 1.31M
    assert row == (
        "| 1 | 1,200,000 | 0.100 | 0.90-1.10 | 0.050 | 500.0 -> 450.0 | 400.0 -> 380.0 | 100.0 (10) -> 300.0 (10) | 3.00 "
        "| 510.0 -> 470.0 |"
    )

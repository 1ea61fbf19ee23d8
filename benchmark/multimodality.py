"""Emergent multimodality (the paper's qualitative figure) on a one-step bandit with two equally good actions.

BimodalBandit-v0 (gorl_envs.py) pays exp(-(|a| - 0.6)^2 / (2 * 0.1^2)): the best actions are a = -0.6 and a = +0.6,
the middle pays nothing. Gaussian PPO and GoRL-PPO are trained on it (subprocesses, --save-model), then 10,000
stochastic actions are sampled from each policy at the task's one state and plotted side by side:

    python benchmark/multimodality.py      # 3 seeds, ~2.5 min -> benchmark/results/multimodality.png and .md

A tanh-squashed Gaussian can put at most about 21.7% of its mass within 0.2 of each mode at once (mean 0, std about
0.7 in pre-squash space; anything else loses one side), so ">= 30% within 0.2 of both -0.6 and +0.6" is a shape no
Gaussian policy can have; that is what tests/test_benchmark.py asks of GoRL.

Result (benchmark/results/multimodality.md): NOT reproduced. Both methods put 100% of their mass on one mode, the
same one for a given seed (stage 0 of GoRL is Gaussian PPO). At a single state this design cannot do otherwise: the
decoder is refit on the composed policy's own pre-squash actions, which are Gaussian after stage 0; the flow that
carries N(0, 1) onto a 1-D Gaussian is affine (tests/test_ppo.py checks that the fitted decoder is), so the next
stage's Gaussian latent decodes to a Gaussian again, stage after stage. A 1-D flow is monotone and puts out two modes
only when it was fit on two. Multimodality has to enter through the decoder pooling the different actions of nearby
states (as in the paper's HopperStand figure, at 180M steps); see benchmark/README.md for a contextual variant.
"""

import argparse
import glob
import os
import subprocess
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import gorl_envs  # noqa: E402  the bandit's reward, for the plot

ENV_ID = "gorl_envs:BimodalBandit-v0"  # the scripts import gorl_envs for a "module:Env-v0" id
MODE, WINDOW = 0.6, 0.2
# one-step episodes: small rollouts, many updates; an entropy bonus keeps both methods exploring (the same for both)
COMMON_FLAGS = [
    "--num-envs", "16", "--num-steps", "16", "--num-minibatches", "4", "--update-epochs", "10",
    "--learning-rate", "3e-3", "--ent-coef", "0.01", "--eval-every", "1000000", "--eval-episodes", "4",
]  # fmt: skip
# a well-fitted decoder (many small batches, 10% of the budget as refit data), so that a unimodal result cannot be
# blamed on an under-trained decoder
GORL_FLAGS = ["--num-stages", "4", "--decoder-batch-size", "512", "--decoder-data-fraction", "0.1", "--decoder-patience", "20"]
DEFAULT_STEPS = 40_000


def train(method: str, out_dir: str, total_timesteps: int = DEFAULT_STEPS, seed: int = 1, extra: list = ()) -> str:
    """Train `method` (gaussian_ppo or gorl_ppo) on the bandit in out_dir; returns the checkpoint's path."""
    os.makedirs(out_dir, exist_ok=True)
    flags = COMMON_FLAGS + (GORL_FLAGS if method == "gorl_ppo" else []) + list(extra)
    argv = ["--env-id", ENV_ID, "--seed", str(seed), "--total-timesteps", str(total_timesteps)]
    argv += ["--exp-name", method, "--save-model", *flags]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log_path = os.path.join(out_dir, f"{method}.log")
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, os.path.join(REPO, f"{method}.py"), *argv], cwd=out_dir, env=env, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed (exit {proc.returncode}); see {log_path}")
    checkpoints = sorted(glob.glob(os.path.join(out_dir, "runs", f"{ENV_ID}__{method}__{seed}__*", f"{method}.pt")))
    if not checkpoints:
        raise FileNotFoundError(f"{method} wrote no checkpoint under {out_dir}/runs; see {log_path}")
    return checkpoints[-1]


@torch.no_grad()
def sample_actions(method: str, checkpoint: str, num_samples: int = 10_000, seed: int = 0) -> np.ndarray:
    """num_samples stochastic env actions of a saved policy at the bandit's (only) state, shape (num_samples,)."""
    torch.manual_seed(seed)
    if method == "gaussian_ppo":
        import gaussian_ppo as module

        _, agent, envs = module.load_checkpoint(checkpoint, 1)
        decoder = None
    else:
        import gorl_ppo as module

        _, agent, decoder, envs = module.load_checkpoint(checkpoint, 1)
    obs, _ = envs.reset(seed=seed)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    envs.close()
    obs = torch.from_numpy(obs).repeat(num_samples, 1)
    mean = agent.get_mean(obs)
    z = torch.distributions.Normal(mean, agent.actor_logstd.expand_as(mean).exp()).sample()
    pre_squash = z if decoder is None else decoder(obs, z)
    return module.squash_to_bounds(pre_squash.numpy(), low, high)[:, 0]


def mode_fractions(actions: np.ndarray) -> dict:
    """Fractions of the actions within WINDOW of -MODE, of +MODE, and of 0 (the middle, which pays nothing)."""
    actions = np.asarray(actions)
    return {
        "neg": float(np.mean(np.abs(actions + MODE) <= WINDOW)),
        "pos": float(np.mean(np.abs(actions - MODE) <= WINDOW)),
        "middle": float(np.mean(np.abs(actions) <= WINDOW)),
    }


def plot(samples: dict, path: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(samples), figsize=(5 * len(samples), 3.6), sharey=True)
    grid = np.linspace(-1, 1, 401)
    reward = gorl_envs.BimodalBandit().reward(grid)
    for ax, (name, actions) in zip(np.atleast_1d(axes), samples.items()):
        fractions = mode_fractions(actions)
        ax.hist(actions, bins=np.linspace(-1, 1, 81), density=True, color="tab:blue", alpha=0.8, label="actions")
        ax2 = ax.twinx()
        ax2.plot(grid, reward, color="tab:red", lw=1, label="reward")
        ax2.set_ylim(0, 1.05)
        ax2.set_yticks([])
        ax.set_title(f"{name}\nnear -0.6: {fractions['neg']:.0%}, near +0.6: {fractions['pos']:.0%}, middle: {fractions['middle']:.0%}",
                     fontsize=9)  # fmt: skip
        ax.set_xlabel("action")
    np.atleast_1d(axes)[0].set_ylabel("density of 10,000 sampled actions")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total-timesteps", type=int, default=DEFAULT_STEPS, help="training steps of each method")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="the figure shows the first seed")
    parser.add_argument("--num-samples", type=int, default=10_000, help="actions sampled at the state")
    parser.add_argument("--work-dir", default=os.path.join(REPO, "benchmark", "runs", "multimodality"),
                        help="where the training runs (event files, checkpoints, logs) go")  # fmt: skip
    parser.add_argument("--out", default=os.path.join(REPO, "benchmark", "results", "multimodality.png"))
    args = parser.parse_args()

    samples, lines, bimodal = {}, [], {"Gaussian PPO": 0, "GoRL-PPO (flow decoder)": 0}
    for seed in args.seeds:
        for method, label in (("gaussian_ppo", "Gaussian PPO"), ("gorl_ppo", "GoRL-PPO (flow decoder)")):
            start = time.time()
            checkpoint = train(method, os.path.join(args.work_dir, f"seed{seed}"), args.total_timesteps, seed)
            actions = sample_actions(method, checkpoint, args.num_samples)
            if seed == args.seeds[0]:
                samples[label] = actions
            fractions = mode_fractions(actions)
            bimodal[label] += min(fractions["neg"], fractions["pos"]) >= 0.3
            lines.append(f"| {label} | {seed} | {fractions['neg']:.1%} | {fractions['pos']:.1%} | {fractions['middle']:.1%} | "
                         f"{time.time() - start:.0f} |")  # fmt: skip
            print(lines[-1], flush=True)
    title = (f"BimodalBandit-v0, reward exp(-(|a|-0.6)^2/0.02): {args.num_samples:,} stochastic actions at the state after "
             f"{args.total_timesteps:,} env steps of training (seed {args.seeds[0]})")  # fmt: skip
    plot(samples, args.out, title)
    table = [
        f"Action samples at the bandit's state after {args.total_timesteps:,} env steps of training ({args.num_samples:,} "
        f"samples per run; window +-{WINDOW} around -0.6, +0.6 and 0). Flags shared by both: `{' '.join(COMMON_FLAGS)}`; "
        f"GoRL adds `{' '.join(GORL_FLAGS)}`. A tanh-Gaussian can hold at most ~21.7% in both mode windows at once. "
        f"Made by `python benchmark/multimodality.py --total-timesteps {args.total_timesteps} --seeds "
        f"{' '.join(map(str, args.seeds))}`.",
        "",
        "| method | seed | mass near -0.6 | mass near +0.6 | mass near 0 | train + sample time (s) |",
        "|---|---|---|---|---|---|",
        *lines,
        "",
        "Runs with >= 30% of their samples near both modes: "
        + ", ".join(f"{label} {count} of {len(args.seeds)}" for label, count in bimodal.items())
        + ".",
    ]
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write("\n".join(table) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

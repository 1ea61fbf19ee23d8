"""Emergent multimodality, as the paper draws it (HopperStand, Sec. 5): 10,000 actions sampled at one state, projected on
their first principal component, for GoRL-PPO and Gaussian PPO side by side.

The states come from one deterministic evaluation episode of the first policy (the run's evaluation seed), at fixed
steps; both policies are sampled at the same states. GoRL: z ~ pi_theta(z|s), a = tanh(g_phi(s, z)); Gaussian PPO:
a = tanh(mean + std eps). Each state's 10,000 actions are projected on their own first principal component. The
bimodality coefficient BC = (skewness^2 + 1) / kurtosis is 1/3 for a Gaussian, 5/9 for a uniform, and above 5/9 for
two separated modes (or a strongly skewed single one: the histogram tells which). It is given for the env actions and
for the pre-squash actions, where a Gaussian policy is exactly Gaussian (BC = 1/3): any excess there is the decoder's.

    python benchmark/multimodality.py GORL.pt GAUSSIAN.pt [MORE.pt ...] --out benchmark/results/multimodality

Each argument is a --save-model checkpoint or a training_state.pt of gorl_ppo.py or gaussian_ppo.py. Writes OUT.png (two
rows of histograms per policy: env actions, pre-squash actions) and prints a Markdown table of BC per policy and state.
"""

import argparse
import dataclasses
import gzip
import os
import pickle
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gaussian_ppo  # noqa: E402
import gorl_ppo  # noqa: E402

MODULES = {"gaussian_ppo.py": gaussian_ppo, "gorl_ppo.py": gorl_ppo}
NAMES = {"gaussian_ppo.py": "Gaussian PPO", "gorl_ppo.py": "GoRL-PPO"}


def load_policy(path: str):
    """(script, run args, agent, decoder or None, env steps trained) of a --save-model checkpoint or a training state."""
    try:
        with gzip.open(path, "rb") as f:
            state = pickle.load(f)
    except gzip.BadGzipFile:  # a --save-model checkpoint: the script's own loader checks it
        script = torch.load(path, weights_only=False, map_location="cpu")["script"]
        loaded = MODULES[script].load_checkpoint(path, 1)
        loaded[-1].close()
        args, agent, decoder = loaded[0], loaded[1], (loaded[2] if len(loaded) == 4 else None)
        return script, args, agent, decoder, args.total_timesteps
    script, variables, module = state["script"], state["variables"], MODULES[state["script"]]
    known = {field.name for field in dataclasses.fields(module.Args)}  # flags dropped since then held today's behaviour
    args = module.Args(**{name: value for name, value in state["args"].items() if name in known})
    obs_dim, action_dim = variables["envs"].single_observation_space.shape[0], variables["envs"].single_action_space.shape[0]
    agent = module.Agent(obs_dim, action_dim, args.actor_hidden, args.critic_hidden, args.activation)
    agent.load_state_dict(variables["agent"].state_dict())  # today's class: a training state pickles its classes by value
    decoder = None
    if script == "gorl_ppo.py":
        decoder = gorl_ppo.DECODERS[args.decoder](obs_dim, action_dim, args.flow_steps)
        decoder.load_state_dict(variables["decoder"].state_dict())
    return script, args, agent, decoder, variables["global_step"]


@torch.no_grad()
def episode_states(args, agent, decoder, steps: list) -> torch.Tensor:
    """Observations at the given steps of one deterministic episode from the run's first evaluation seed."""
    envs = gorl_ppo.make_vector_env(gorl_ppo.resolve_env_id(args.env_id), 1, args.seed + 10_000)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    obs, _ = envs.reset(seed=args.seed + 10_000)
    states = {}
    for step in range(max(steps) + 1):
        if step in steps:
            states[step] = torch.from_numpy(obs[0].copy())
        x0 = agent.get_mean(torch.from_numpy(obs))
        x0 = decoder(torch.from_numpy(obs), x0) if decoder is not None else x0
        obs, _, terminations, truncations, _ = envs.step(gorl_ppo.squash_to_bounds(x0.numpy(), low, high))
        if terminations.any() or truncations.any():
            raise ValueError(f"the episode ended at step {step}, before step {max(steps)}")
    envs.close()
    return torch.stack([states[step] for step in steps])


@torch.no_grad()
def sample_actions(agent, decoder, state: torch.Tensor, samples: int, seed: int = 0) -> torch.Tensor:
    """`samples` pre-squash actions of the stochastic policy at one state: decoder(s, z), z ~ pi(z|s) (Gaussian: z)."""
    obs = state.expand(samples, -1)
    mean = agent.get_mean(obs)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed))
    z = mean + agent.actor_logstd.exp() * noise
    return decoder(obs, z) if decoder is not None else z


def first_component(actions: np.ndarray) -> np.ndarray:
    """Projection of each action (rows) on the first principal component of the sample."""
    centred = actions - actions.mean(0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][0]


def bimodality_coefficient(x: np.ndarray) -> float:
    """(skewness^2 + 1) / kurtosis, from the sample's central moments: 1/3 Gaussian, 5/9 uniform, > 5/9 two modes."""
    centred = x - x.mean()
    m2, m3, m4 = (np.mean(centred**k) for k in (2, 3, 4))
    return float((m3**2 / m2**3 + 1) / (m4 / m2**2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policies", nargs="+", help="--save-model checkpoints or training_state.pt files of the PPO scripts")
    p.add_argument("--steps", nargs="+", type=int, default=[100, 300, 500, 700, 900], help="episode steps of the states")
    p.add_argument("--samples", type=int, default=10_000, help="actions sampled per state")
    p.add_argument("--out", default=os.path.join("benchmark", "results", "multimodality"), help="OUT.png is written")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        policies = [load_policy(path) for path in args.policies]
    except (OSError, KeyError, ValueError, pickle.UnpicklingError) as err:
        sys.exit(f"error: cannot read a gorl_ppo.py or gaussian_ppo.py checkpoint or training state: {err}")
    _, first_args, first_agent, first_decoder, _ = policies[0]
    states = episode_states(first_args, first_agent, first_decoder, args.steps)
    print(f"states: steps {', '.join(map(str, args.steps))} of a deterministic episode of {args.policies[0]}")
    print("\n| policy | env steps trained | BC of the actions per state | BC pre-squash per state |\n|---|---|---|---|")
    rows = []
    for path, (script, run_args, agent, decoder, trained) in zip(args.policies, policies):
        pre_squash = [sample_actions(agent, decoder, state, args.samples).numpy() for state in states]
        label = f"{NAMES[script]}, {trained / 1e6:.1f}M"
        cells = []
        for space, transform in (("actions", np.tanh), ("pre-squash", np.asarray)):
            projections = [first_component(transform(x)) for x in pre_squash]
            rows.append((f"{label}\n{space}", projections, [bimodality_coefficient(x) for x in projections]))
            cells.append(" ".join(f"{bc:.2f}" for bc in rows[-1][2]))
        print(f"| {label} ({run_args.env_id}): {os.path.basename(path)} | {trained:,} | {cells[0]} | {cells[1]} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(states), figsize=(2.6 * len(states), 2.2 * len(rows)), squeeze=False)
    for row, (label, projections, bcs) in zip(axes, rows):
        for ax, projection, bc, step in zip(row, projections, bcs, args.steps):
            ax.hist(projection, bins=60, color="tab:red" if bc > 5 / 9 else "tab:blue")
            ax.set_title(f"step {step}: BC {bc:.2f}", fontsize=9)
            ax.set_yticks([])
        row[0].set_ylabel(label, fontsize=8)
    fig.suptitle(f"{args.samples:,} actions per state on their first principal component (BC > 5/9: bimodal or skewed)")
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=110)
    print(f"\nwrote {args.out}.png")


if __name__ == "__main__":
    main()

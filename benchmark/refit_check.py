"""Does a refit decoder reproduce the policy it was fit on? An offline check on a gorl_sac.py training state.

A stage's composed policy right after a refit is the decoder fed the prior: a = g_phi(s, z), z ~ N(0, I). If the
decoder is faithful it behaves like the stage-0 policy whose (s, a) pairs it was fit on. This loads a training state
(--checkpoint-every) of a run past its first refit, refits fresh decoders on slices of its replay buffer (their
stored pre-squash actions; a slice [a, b) is the transitions a to b-1 in the order they were collected, so on one env
without action repeat the index is the env step) and reports each decoder's return on the evaluation episodes, z = 0
(the deterministic evaluation) and z ~ N(0, I), next to the run's own decoder.

    python benchmark/refit_check.py runs/HopperStand__gorl_sac__1__<time>/training_state.pt \\
        --slices 490000:500000 440000:500000 --hidden 64 256
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gorl_sac


def slice_arg(text: str) -> slice:
    start, sep, stop = text.partition(":")
    if not sep or not start.isdigit() or not stop.isdigit() or int(start) >= int(stop):
        raise argparse.ArgumentTypeError(f"{text!r}: expected START:STOP transition indices, START < STOP")
    return slice(int(start), int(stop))


def returns(decoder, envs, latent: str, seed: int) -> np.ndarray:
    """Return of the first episode of each env, a = decoder(s, z) with z = 0 or z ~ N(0, I) (seeded)."""
    low, high = envs.single_action_space.low, envs.single_action_space.high
    action_dim, generator = envs.single_action_space.shape[0], torch.Generator().manual_seed(seed)
    obs, _ = envs.reset(seed=seed)
    total, running = np.zeros(envs.num_envs), np.ones(envs.num_envs, dtype=bool)
    while running.any():
        shape = (envs.num_envs, action_dim)
        z = torch.zeros(shape) if latent == "zero" else torch.randn(shape, generator=generator)
        with torch.no_grad():
            x0 = decoder(torch.from_numpy(obs), z)
        obs, reward, terminations, truncations, _ = envs.step(gorl_sac.squash_to_bounds(x0.numpy(), low, high))
        total += reward * running
        running &= ~(terminations | truncations)
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("state", help="a gorl_sac.py training_state.pt")
    p.add_argument("--slices", nargs="+", type=slice_arg, required=True, help="replay-buffer slices START:STOP to refit on")
    p.add_argument("--hidden", nargs="+", type=int, default=[64], help="decoder widths to try (the script's is 64)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes (the run's eval seeds)")
    p.add_argument("--success", type=float, default=500.0, help="an episode counts as a success above this return")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        state = gorl_sac.load_training_state(args.state)
    except ValueError as err:  # its message is worded for the scripts' --resume
        sys.exit(f"error: {str(err).removeprefix('--resume ')}")
    run_args, variables = state["args"], state["variables"]
    buffer = variables["rb"]
    for part in args.slices:
        if part.stop > buffer.count:
            sys.exit(f"error: slice {part.start}:{part.stop} ends past the buffer's {buffer.count:,} transitions")
    seed = run_args["seed"] + 10_000  # the run's evaluation seeds
    envs = gorl_sac.make_vector_env(gorl_sac.resolve_env_id(run_args["env_id"]), args.episodes, seed)
    print(f"{args.state}: {buffer.count:,} transitions, stage {variables['stage']}, step {variables['global_step']:,}")

    def report(name, decoder):
        for latent in ("zero", "prior"):
            r = returns(decoder, envs, latent, seed)
            print(f"{name:45s} z={latent:5s} return {r.mean():6.1f}, {np.sum(r > args.success)}/{len(r)} above "
                  f"{args.success:g}: {np.round(r).astype(int).tolist()}", flush=True)  # fmt: skip

    report("the run's decoder", variables["decoder"])
    obs, x0 = torch.from_numpy(buffer.obs), torch.from_numpy(buffer.pre_squash_actions).clamp(-3.0, 3.0)
    for part in args.slices:
        for hidden in args.hidden:
            decoder = gorl_sac.DECODERS[run_args["decoder"]](obs.shape[1], x0.shape[1], run_args["flow_steps"], hidden=hidden)
            start = time.time()
            train_loss, val_loss = gorl_sac.fit_decoder(
                decoder, obs[part], x0[part], run_args["decoder_epochs"], run_args["decoder_batch_size"],
                run_args["decoder_lr"], run_args["decoder_noise_draws"], run_args["decoder_patience"],
            )  # fmt: skip
            print(f"refit on {part.start:,}:{part.stop:,}, hidden {hidden}: train loss {train_loss:.3f}, val loss "
                  f"{val_loss:.3f} ({time.time() - start:.0f} s)")  # fmt: skip
            report(f"  {part.stop - part.start:,} pairs, hidden {hidden}", decoder)


if __name__ == "__main__":
    main()

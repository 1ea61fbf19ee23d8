"""Does a refit hand the next stage the policy it was fit on? Offline refits on a GoRL training state (--checkpoint-every).

gorl_ppo.py: the state's latent policy (the stage's best, as the script picks it, or its last) and decoder collect
fresh decoder data as the script would at the stage's end; decoders are refit on it with the variants asked for, and
each is compared with the policy it was fit on by the scripts' own refit report (action error, std ratio, sliced W1,
returns before and after on the same episodes). --collect latent collects with an identity decoder instead, what
`--fresh-decoder` did before the fix of 2026-12-03 (the fresh decoder was built before the data was collected).

    python benchmark/refit_check.py runs/WalkerWalk__gorl_ppo_paper__1__<time>/training_state.pt --collect composed latent

gorl_sac.py: decoders are refit on slices of the state's replay buffer (their stored pre-squash actions; a slice
[a, b) is the transitions a to b-1 in the order they were collected, so on one env without action repeat the index is
the env step) and run on the evaluation episodes with z = 0 (the deterministic evaluation) and z ~ N(0, I) (the
composed policy the next stage starts from), next to the run's own decoder.

    python benchmark/refit_check.py runs/HopperStand__gorl_sac__1__<time>/training_state.pt \\
        --slices 490000:500000 440000:500000 --hidden 64 256

With --pairs N instead, a gorl_sac.py state's composed policy collects N fresh pairs (10 envs from reset), as the
script does at a refit, and each refit is compared with that policy by the script's refit report, on the same episodes.
"""

import argparse
import copy
import dataclasses
import gzip
import os
import pickle
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gorl_ppo
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


def rebuilt(network, make):
    """The network as today's class of the script (a training state pickles its classes by value, as they were)."""
    fresh = make()
    fresh.load_state_dict(network.state_dict())
    return fresh


def check_ppo(state: dict, args):
    # flags dropped since the state was written held the behaviour the script now always has: leave them out
    known = {field.name for field in dataclasses.fields(gorl_ppo.Args)}
    run_args = gorl_ppo.Args(**{name: value for name, value in state["args"].items() if name in known})
    variables = state["variables"]
    obs_dim, action_dim = variables["envs"].single_observation_space.shape[0], variables["envs"].single_action_space.shape[0]

    def new_decoder(hidden=64):
        return gorl_ppo.DECODERS[run_args.decoder](obs_dim, action_dim, run_args.flow_steps, hidden=hidden)

    agent = rebuilt(
        variables["agent"],
        lambda: gorl_ppo.Agent(obs_dim, action_dim, run_args.actor_hidden, run_args.critic_hidden, run_args.activation),
    )
    if args.policy == "best" and variables["stage_best_state"] is not None:
        agent.load_state_dict(variables["stage_best_state"])
    decoder = rebuilt(variables["decoder"], new_decoder)
    reset = copy.deepcopy(agent)
    reset.reset_to_prior()
    pairs = args.pairs or gorl_ppo.plan_stages(run_args.total_timesteps, run_args)[1]
    gym_id, seed = gorl_ppo.resolve_env_id(run_args.env_id), run_args.seed + 10_000  # the run's evaluation seeds
    eval_envs = gorl_ppo.make_vector_env(gym_id, args.episodes, seed)
    best = f"{variables['stage_best_eval']:.1f}" if variables["stage_best_state"] is not None else "none yet"
    print(
        f"stage {variables['stage']}, step {variables['global_step']:,}, the stage's best eval {best}; policy: {args.policy}"
    )
    num_envs = gorl_ppo.decoder_data_envs(pairs, variables["longest_episode"], run_args.num_envs)
    for collect in args.collect:
        collector = decoder if collect == "composed" else new_decoder()  # a new decoder is the identity
        data_envs = gorl_ppo.make_vector_env(gym_id, num_envs, run_args.seed + 20_000)
        start = time.time()
        torch.manual_seed(0)
        obs, actions, data_returns = gorl_ppo.collect_decoder_data(agent, collector, data_envs, pairs // num_envs, seed=0)
        data_envs.close()
        episodes = (
            f"{len(data_returns)} episodes ended, mean return {np.mean(data_returns):.1f}"
            if data_returns
            else "no episode ended"
        )
        print(f"collected by the {collect} policy: {len(obs):,} pairs, {episodes} ({time.time() - start:.0f} s)", flush=True)
        for hidden in args.hidden:
            for lr in args.lr or [run_args.decoder_lr]:
                fresh = run_args.fresh_decoder or hidden != 64
                refit = new_decoder(hidden) if fresh else copy.deepcopy(decoder)
                start = time.time()
                torch.manual_seed(0)
                train_loss, val_loss, held_out = gorl_ppo.fit_decoder(
                    refit, obs, actions.clamp(-3.0, 3.0), args.epochs or run_args.decoder_epochs,
                    run_args.decoder_batch_size, lr, run_args.decoder_noise_draws, run_args.decoder_patience,
                )  # fmt: skip
                fit_seconds = time.time() - start
                report = gorl_ppo.refit_report((agent, decoder), (reset, refit), obs[held_out[:1024]], eval_envs, seed)
                print(f"  {collect} data, {'fresh' if fresh else 'warm'} 4x{hidden} decoder, lr {lr:g}: val loss "
                      f"{val_loss:.4f} ({fit_seconds:.0f} s); {gorl_ppo.refit_summary(report)}", flush=True)  # fmt: skip


def check_sac_collect(state: dict, args):
    """As the script refits: --pairs fresh (s, x0) pairs from the state's composed policy (stochastic latents), a decoder
    refit on them per --hidden, and the scripts' refit report against that policy, with the action error split into the
    get-up phase (the first 100 steps of an episode) and the rest, and each episode's deterministic return."""
    run_args, variables = state["args"], state["variables"]
    gym_id, seed = gorl_sac.resolve_env_id(run_args["env_id"]), run_args["seed"] + 10_000  # the run's evaluation seeds
    obs_dim, action_dim = variables["rb"].obs.shape[1], variables["rb"].pre_squash_actions.shape[1]
    actor = rebuilt(variables["actor"], lambda: gorl_sac.Actor(obs_dim, action_dim, run_args["hidden_size"]))
    decoder = variables["decoder"]
    data_envs, eval_envs = gorl_sac.make_vector_env(gym_id, 10, run_args["seed"] + 20_000), gorl_sac.make_vector_env(
        gym_id, args.episodes, seed
    )
    print(f"{args.state}: stage {variables['stage']}, step {variables['global_step']:,}")
    obs, _ = data_envs.reset(seed=run_args["seed"] + 20_000)
    low, high = data_envs.single_action_space.low, data_envs.single_action_space.high
    data_obs, data_x0, data_t, t = [], [], [], np.zeros(10, dtype=int)
    torch.manual_seed(0)
    for _ in range(args.pairs // 10):
        with torch.no_grad():
            x0 = decoder(torch.from_numpy(obs), actor.get_action(torch.from_numpy(obs))[0])
        data_obs.append(torch.from_numpy(obs)), data_x0.append(x0), data_t.append(torch.from_numpy(t.copy()))
        obs, _, terminations, truncations, _ = data_envs.step(gorl_sac.squash_to_bounds(x0.numpy(), low, high))
        t = np.where(terminations | truncations, 0, t + 1)
    data_obs, data_x0, data_t = torch.cat(data_obs), torch.cat(data_x0).clamp(-3.0, 3.0), torch.cat(data_t)
    reset = copy.deepcopy(actor)
    reset.reset_to_prior()
    old_returns = gorl_sac.evaluate(actor, decoder, eval_envs, seed)
    print(f"the state's policy, deterministic: {old_returns.mean():.1f}, {np.round(old_returns).astype(int).tolist()}")
    for hidden in args.hidden:
        refit = gorl_sac.FlowDecoder(obs_dim, action_dim, run_args["flow_steps"], hidden=hidden)
        start = time.time()
        torch.manual_seed(0)
        _, val_loss, held_out = gorl_sac.fit_decoder(
            refit, data_obs, data_x0, args.epochs or run_args["decoder_epochs"], run_args["decoder_batch_size"],
            run_args["decoder_lr"], run_args["decoder_noise_draws"], run_args["decoder_patience"],
        )  # fmt: skip
        held_out = held_out[:4096]
        with torch.no_grad():
            states = data_obs[held_out]
            error = torch.tanh(refit(states, torch.zeros(len(held_out), action_dim))) - torch.tanh(
                decoder(states, actor.get_mean(states))
            )
        getting_up = data_t[held_out] < 100
        phases = ", ".join(
            f"{name} {(error[mask] ** 2).mean().sqrt():.3f} ({mask.sum()} states)"
            for name, mask in (("first 100 steps", getting_up), ("later", ~getting_up))
        )
        report = gorl_sac.refit_report((actor, decoder), (reset, refit), states[:1024], eval_envs, seed)
        new_returns = gorl_sac.evaluate(reset, refit, eval_envs, seed)
        print(f"  {len(data_obs):,} pairs, fresh 4x{hidden} decoder: val loss {val_loss:.4f} ({time.time() - start:.0f} s); "
              f"{gorl_sac.refit_summary(report)}\n  deterministic action error by phase: {phases}\n  deterministic "
              f"returns after: {np.round(new_returns).astype(int).tolist()}", flush=True)  # fmt: skip


def check_sac(state: dict, args):
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
            decoder = gorl_sac.FlowDecoder(obs.shape[1], x0.shape[1], run_args["flow_steps"], hidden=hidden)
            start = time.time()
            train_loss, val_loss, _ = gorl_sac.fit_decoder(
                decoder, obs[part], x0[part], run_args["decoder_epochs"], run_args["decoder_batch_size"],
                run_args["decoder_lr"], run_args["decoder_noise_draws"], run_args["decoder_patience"],
            )  # fmt: skip
            print(f"refit on {part.start:,}:{part.stop:,}, hidden {hidden}: train loss {train_loss:.3f}, val loss "
                  f"{val_loss:.3f} ({time.time() - start:.0f} s)")  # fmt: skip
            report(f"  {part.stop - part.start:,} pairs, hidden {hidden}", decoder)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("state", help="a gorl_ppo.py or gorl_sac.py training_state.pt")
    p.add_argument("--hidden", nargs="+", type=int, default=[64], help="decoder widths to try (the scripts' is 64)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes (the run's eval seeds)")
    ppo = p.add_argument_group("gorl_ppo.py states")
    ppo.add_argument(
        "--policy",
        choices=["best", "last"],
        default="best",
        help="the stage's best-evaluated policy, as the script refits, or its last",
    )
    ppo.add_argument(
        "--collect",
        nargs="+",
        choices=["composed", "latent"],
        default=["composed"],
        help="who collects: the composed policy (latent policy and decoder), or the latent policy decoded by the identity",
    )
    p.add_argument("--pairs", type=int, help="env steps of decoder data (gorl_ppo.py default: the run's; gorl_sac.py: "
                   "fresh pairs from the state's policy, as the script collects at a refit, instead of --slices)")  # fmt: skip
    ppo.add_argument("--lr", nargs="+", type=float, help="decoder learning rates to try (default: the run's)")
    p.add_argument("--epochs", type=int, help="maximum refit epochs (default: the run's)")
    sac = p.add_argument_group("gorl_sac.py states")
    sac.add_argument("--slices", nargs="+", type=slice_arg, help="replay-buffer slices START:STOP to refit on")
    sac.add_argument("--success", type=float, default=500.0, help="an episode counts as a success above this return")
    args = p.parse_args(argv)  # fmt: skip
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        with gzip.open(args.state, "rb") as f:
            state = pickle.load(f)
        script = state["script"]
    except Exception as err:  # not a gzip file, a truncated one, a pickle of something else: one line
        sys.exit(f"error: {args.state} cannot be read as a training-state checkpoint: {err}")
    if script == "gorl_ppo.py":
        check_ppo(state, args)
    elif script == "gorl_sac.py":
        try:  # a run of a flag gorl_sac.py has dropped (--decoder diffusion) is refused in one line
            state["args"] = gorl_sac.saved_run_args(state["args"], args.state)
        except ValueError as err:
            sys.exit(f"error: {err}")
        if bool(args.slices) == bool(args.pairs):
            sys.exit(
                "error: a gorl_sac.py state needs either --slices START:STOP of its replay buffer or --pairs N to refit on"
            )
        check_sac(state, args) if args.slices else check_sac_collect(state, args)
    else:
        sys.exit(f"error: {args.state} was saved by {script}; refit_check reads gorl_ppo.py and gorl_sac.py states")


if __name__ == "__main__":
    main()

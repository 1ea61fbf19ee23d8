"""Action repeat on HopperStand (issue 23 item 1): the bookkeeping checks, and how far untrained policies reach the reward.

    python benchmark/action_repeat_check.py checks                 # asserts, both SAC scripts; ~1 CPU minute
    python benchmark/action_repeat_check.py explore --episodes 50  # reward reach at repeat 1 and 2; ~6 min wall, 2 cores

`checks` verifies, at --action-repeat 1 and 2: an agent step's reward is the sum of its env steps' rewards; an episode is
1000 / repeat agent steps ending by truncation (not termination), stored with its true last observation and no done
flag, so the critic bootstraps through the time limit; --learning-starts counts env steps and --utd counts updates per
agent step (a real run of each script, read from its training state); evaluation runs at the training repeat and
returns the sum over all 1000 env steps; the initial policies of the two scripts are the same distribution.

`explore` steps HopperStand with three untrained policies (uniform actions, the warm-up draws tanh(N(0, I)), and a freshly
initialised actor sampled as in training) at repeat 1 and 2, on the same initial states, and reports how often the torso
stands high enough (height >= 0.6, the only way to a nonzero reward) before and after the hopper has fallen.
"""

import argparse
import gzip
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import gaussian_sac  # noqa: E402
import gorl_sac  # noqa: E402

ENV = "HopperStand"
SCRIPTS = {"gaussian_sac": gaussian_sac, "gorl_sac": gorl_sac}


def raw_env(module, seed: int):
    """The script's env pipeline without the ActionRepeat wrapper (flattened float32 observations), and its physics."""
    env = module.make_env(module.resolve_env_id(ENV), seed, action_repeat=1)()
    return env, env.unwrapped._env.physics


def check_reward_sum(module, seed: int = 0) -> str:
    """ActionRepeat(2) against the raw env stepped twice per action: same rewards summed, same observations, 500 agent
    steps, the last one truncated and none terminated; and per env step, reward > 0 exactly when 0.6 <= height <= 2."""
    gym_id = module.resolve_env_id(ENV)
    wrapped = module.make_env(gym_id, seed, action_repeat=2)()
    raw, physics = raw_env(module, seed)
    obs_w, _ = wrapped.reset(seed=seed)
    obs_r, _ = raw.reset(seed=seed)
    assert np.array_equal(obs_w, obs_r)
    rng = np.random.default_rng(seed)
    agent_steps, total_w, total_r, sparse_ok = 0, 0.0, 0.0, 0
    while True:
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        obs_w, reward_w, term_w, trunc_w, _ = wrapped.step(action)
        reward_sum = 0.0
        for _ in range(2):
            obs_r, reward_r, term_r, trunc_r, _ = raw.step(action)
            height = physics.height()
            assert (reward_r > 0) == (0.6 <= height <= 2.0), (reward_r, height)  # no margin: zero below 0.6
            assert reward_r == 0 or 0.8 <= reward_r <= 1.0  # standing * (4 + small_control) / 5
            sparse_ok += 1
            reward_sum += float(reward_r)
            if term_r or trunc_r:
                break
        agent_steps += 1
        total_w, total_r = total_w + reward_w, total_r + reward_sum
        assert reward_w == reward_sum and np.array_equal(obs_w, obs_r), (agent_steps, reward_w, reward_sum)
        assert (term_w, trunc_w) == (term_r, trunc_r)
        if term_w or trunc_w:
            break
    assert (agent_steps, term_w, trunc_w) == (500, False, True), (agent_steps, term_w, trunc_w)
    assert abs(total_w - total_r) < 1e-9
    return (
        f"reward of each agent step = sum of its 2 env rewards (500 of 500); episode: 500 agent steps, truncated, not "
        f"terminated; return {total_w:.3f} both ways; reward > 0 iff 0.6 <= height <= 2 on all {sparse_ok} env steps"
    )


class Spy:
    """A vector env that remembers what its last step returned (step_envs keeps the flags to itself)."""

    def __init__(self, envs):
        self.envs, self.last = envs, None

    def step(self, actions):
        self.last = self.envs.step(actions)
        return self.last

    def __getattr__(self, name):
        return getattr(self.envs, name)


class NoWriter:
    def add_scalar(self, *args, **kwargs):
        pass


def check_transitions(module, repeat: int, seed: int = 0) -> str:
    """One episode through the script's own step_envs into its ReplayBuffer: 1000 / repeat transitions, no done flag
    stored (termination-only masking), the last one's next_obs the true final observation, not the reset one."""
    envs = module.make_vector_env(module.resolve_env_id(ENV), 1, seed, action_repeat=repeat)
    spy = Spy(envs)
    obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    rb = module.ReplayBuffer(2000, obs_dim, action_dim, seed)
    obs, _ = envs.reset(seed=seed)
    rng, steps, finished = np.random.default_rng(seed), 0, []
    while not finished:
        z = rng.standard_normal((1, action_dim)).astype(np.float32)
        obs, finished = module.step_envs(spy, rb, NoWriter(), obs, z, z, steps)
        steps += 1
        _, _, terminations, truncations, infos = spy.last
        assert terminations[0] == (False) and truncations[0] == bool(finished), (steps, terminations, truncations)
    n = rb.count
    assert n == steps == 1000 // repeat, (n, steps)
    assert rb.terminations[:n].sum() == 0  # a time limit stores no done flag: the target bootstraps there
    assert np.array_equal(rb.next_obs[n - 1], infos["final_obs"][0]) and not np.array_equal(rb.next_obs[n - 1], obs[0])
    assert np.array_equal(rb.next_obs[: n - 1], rb.obs[1:n])  # consecutive transitions chain up
    episode_return, episode_length = float(infos["episode"]["r"][0]), int(infos["episode"]["l"][0])
    assert abs(episode_return - float(rb.rewards[:n].sum())) < 1e-3 and episode_length == n
    envs.close()
    return (
        f"repeat {repeat}: {n} transitions per episode, the last truncated and none terminated, terminations stored "
        f"{int(rb.terminations[:n].sum())}, last next_obs = final_obs; logged episode length {episode_length} (agent steps), "
        f"return {episode_return:.3f} (sum over 1000 env steps)"
    )


def check_counts(script: str, repeat: int, workdir: str) -> str:
    """A real run (--learning-starts 1000, a training state every 2000 env steps), read at its first training state and
    then stopped. Expected at env step T: the first update at env step 1000, then --utd (1) per agent step, so
    1 + (T - 1000) / repeat updates, and T / repeat transitions in a buffer of --total-timesteps / repeat."""
    run_dir = os.path.join(workdir, f"{script}_ar{repeat}")
    os.makedirs(run_dir)
    cmd = [sys.executable, os.path.join(ROOT, f"{script}.py"), "--env-id", ENV, "--action-repeat", str(repeat), "--seed", "1"]
    cmd += ["--total-timesteps", "100000", "--learning-starts", "1000", "--checkpoint-every", "2000", "--no-cuda"]
    cmd += ["--eval-every", "100000", "--eval-episodes", "1"] + (["--num-stages", "1"] if script == "gorl_sac" else [])
    proc = subprocess.Popen(cmd, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # a finished run deletes its training state, so read the first one while the run goes on
        while not (
            paths := [os.path.join(d, "training_state.pt") for d, _, f in os.walk(run_dir) if "training_state.pt" in f]
        ):
            assert proc.poll() is None, f"{script} exited with {proc.returncode} before writing a training state"
            time.sleep(0.5)
        with gzip.open(paths[0], "rb") as f:  # written to a temporary file and renamed: complete once it exists
            state = pickle.load(f)["variables"]  # cloudpickle stored the script's classes by value
    finally:
        proc.kill()
        proc.wait()
    global_step, num_updates, rb = state["global_step"], state["num_updates"], state["rb"]
    expected = (1 + (global_step - 1000) // repeat, global_step // repeat, 100000 // repeat)
    assert global_step >= 2000 and (num_updates, rb.count, rb.size) == expected, (global_step, num_updates, rb.count, rb.size)
    return (
        f"{script} repeat {repeat}: at env step {global_step:,}, {num_updates:,} updates (from env step 1000 on, one per "
        f"agent step), {rb.count:,} transitions stored, buffer size {rb.size:,}"
    )


def check_eval(module, repeat: int, seed: int = 10_001) -> str:
    """The script's evaluate() on eval envs built as the script builds them (make_vector_env with the run's repeat),
    against a hand-made rollout that holds each deterministic action for `repeat` raw env steps."""
    gym_id = module.resolve_env_id(ENV)
    torch.manual_seed(0)
    envs = module.make_vector_env(gym_id, 2, seed, repeat)
    obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    actor = module.Actor(obs_dim, action_dim)
    if module is gorl_sac:
        returns = module.evaluate(actor, module.FlowDecoder(obs_dim, action_dim, 10), envs, seed=seed)
    else:
        returns = module.evaluate(actor, envs, seed=seed)
    envs.close()
    for i in range(2):
        env, _ = raw_env(module, seed + i)
        obs, _ = env.reset(seed=seed + i)
        total, agent_steps, done = 0.0, 0, False
        while not done:
            with torch.no_grad():
                z = actor.get_mean(torch.from_numpy(obs)[None]).numpy()
            action = module.squash_to_bounds(z[0], env.action_space.low, env.action_space.high)
            for _ in range(repeat):
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
                if done:
                    break
            agent_steps += 1
        assert agent_steps == 1000 // repeat and abs(total - returns[i]) < 1e-6, (agent_steps, total, returns[i])
    return f"repeat {repeat}: evaluate() = hand rollout holding each action {repeat} env steps ({returns.round(3).tolist()})"


def check_same_initial_policy() -> str:
    """Both scripts' actors, built under the same seed, have the same weights, and GoRL-SAC's stage-0 decoder is the
    identity: their first policies (after the shared N(0, I) warm-up) are the same distribution."""
    torch.manual_seed(1)
    a = gaussian_sac.Actor(15, 4)
    torch.manual_seed(1)
    b = gorl_sac.Actor(15, 4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    z = torch.randn(64, 4)
    assert torch.equal(gorl_sac.FlowDecoder(15, 4, 10)(torch.randn(64, 15), z), z)
    target_entropy, target_kl = -4.0, gorl_sac.Args().target_kl * 4
    return (
        f"same actor weights under one seed; stage-0 decoder(s, z) = z; alpha's targets: entropy {target_entropy} "
        f"(Gaussian SAC), KL {target_kl} (GoRL-SAC), per agent step and independent of the repeat"
    )


def checks():
    torch.set_num_threads(1)
    start = time.time()
    print("- reward sum, sparse reward:", check_reward_sum(gaussian_sac), flush=True)
    for name, module in SCRIPTS.items():
        for repeat in (1, 2):
            print(f"- {name} transitions, truncation:", check_transitions(module, repeat), flush=True)
            print(f"- {name} evaluation:", check_eval(module, repeat), flush=True)
    print("- initial policies, alpha targets:", check_same_initial_policy(), flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        for script in SCRIPTS:
            for repeat in (1, 2):
                print("- learning starts, utd, buffer:", check_counts(script, repeat, workdir), flush=True)
    print(f"all checks passed in {time.time() - start:.0f} s")


def policy_action(kind: str, actor, obs, rng, torch_gen):
    if kind == "uniform":
        return rng.uniform(-1, 1, 4).astype(np.float32)
    if kind == "warm-up":  # both scripts' first --learning-starts env steps
        return np.tanh(rng.standard_normal(4)).astype(np.float32)
    with torch.no_grad():  # a fresh actor, sampled as in training (GoRL-SAC's stage 0: the same, see the checks)
        mean, log_std = actor(torch.from_numpy(obs)[None])
        z = mean + log_std.exp() * torch.randn(mean.shape, generator=torch_gen)
    return torch.tanh(z[0]).numpy()


def explore_episode(kind: str, repeat: int, seed: int, fallen_after: int):
    """One episode from the initial state of `seed`; per env step, the reward and the torso height over the foot."""
    env, physics = raw_env(gaussian_sac, seed)
    obs, _ = env.reset(seed=seed)
    rng, torch_gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    actor = gaussian_sac.Actor(obs.shape[0], 4) if kind == "initial actor" else None
    heights, rewards, transition_rewards = [physics.height()], [], []
    done = False
    while not done:
        action = policy_action(kind, actor, obs, rng, torch_gen)
        for _ in range(repeat):
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            heights.append(physics.height())
            done = terminated or truncated
            if done:
                break
        transition_rewards.append(sum(rewards[-repeat:]))  # what the replay buffer stores for this agent step
    start_height, rewards, heights = heights[0], np.array(rewards), np.array(heights[1:])
    rewarded = np.flatnonzero(rewards > 0)
    return {
        "return": rewards.sum(),
        "rewarded steps": len(rewarded),
        "rewarded transitions": int((np.array(transition_rewards) > 0).sum()),
        "transitions": len(transition_rewards),
        "last rewarded step": rewarded[-1] + 1 if len(rewarded) else 0,
        "rewarded steps late": int((rewards[fallen_after:] > 0).sum()),
        "max height": heights.max(),
        "max height late": heights[fallen_after:].max(),
        "start height": start_height,
    }


def explore(episodes: int, fallen_after: int):
    torch.set_num_threads(1)
    print(
        f"HopperStand, {episodes} episodes per row (initial states: env seeds 0..{episodes - 1}, the same in every row); "
        f"'late': env steps {fallen_after + 1}-1000\n"
    )
    header = [
        "policy",
        "repeat",
        "episodes with reward",
        "episodes with reward late",
        "env steps with reward",
        "env steps with reward late",
        "transitions with reward",
        "mean return",
        "max return",
        "last rewarded env step (max)",
        "max height",
        "max height late",
        "mean of episode max height late",
    ]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for kind in ("uniform", "warm-up", "initial actor"):
        for repeat in (1, 2):
            start = time.time()
            rows = [explore_episode(kind, repeat, seed, fallen_after) for seed in range(episodes)]
            col = {key: np.array([row[key] for row in rows]) for key in rows[0]}
            cells = [kind, repeat, f"{(col['rewarded steps'] > 0).sum()} of {episodes}",
                     f"{(col['rewarded steps late'] > 0).sum()} of {episodes}",
                     f"{col['rewarded steps'].sum() / (1000 * episodes):.2%}",
                     f"{col['rewarded steps late'].sum() / ((1000 - fallen_after) * episodes):.3%}",
                     f"{col['rewarded transitions'].sum() / col['transitions'].sum():.2%}",
                     f"{col['return'].mean():.2f}", f"{col['return'].max():.2f}", int(col["last rewarded step"].max()),
                     f"{col['max height'].max():.3f}", f"{col['max height late'].max():.3f}",
                     f"{col['max height late'].mean():.3f}"]  # fmt: skip
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
            print(f"<!-- {kind} repeat {repeat}: {time.time() - start:.0f} s -->", file=sys.stderr, flush=True)
    print(f"\nstart height (before the first step): {col['start height'].min():.3f} to {col['start height'].max():.3f}; "
          f"start at or above 0.6 in {(col['start height'] >= 0.6).sum()} of {episodes} initial states")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["checks", "explore"])
    parser.add_argument("--episodes", type=int, default=50, help="explore: episodes per (policy, repeat)")
    parser.add_argument("--fallen-after", type=int, default=100, help="explore: env steps after which the hopper has fallen")
    cli = parser.parse_args()
    checks() if cli.what == "checks" else explore(cli.episodes, cli.fallen_after)

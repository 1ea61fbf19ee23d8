# docs and experiment results: README.md
"""Gaussian SAC for continuous control: the baseline of GoRL's SAC variant (arXiv 2512.02581, App. F.2), in CleanRL style.

The policy is a state-conditioned Gaussian over z, the pre-squash action; the env action is rescale(tanh(z)) to the
env's Box bounds, the critics see the squashed action a = tanh(z), and the temperature alpha is tuned toward a target
entropy.
`diff gaussian_sac.py gorl_sac.py` shows what GoRL adds.
"""

import copy
import difflib
import gzip
import importlib
import os
import pickle
import random
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Optional

os.environ.setdefault("MUJOCO_GL", "egl")  # dm_control renders headless; without it it warns about a missing DISPLAY

import cloudpickle
import gymnasium as gym
import mujoco
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import tyro
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from torch.utils.tensorboard import SummaryWriter


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment: same seed, same machine, same result"""
    torch_threads: int = 1
    """CPU threads for torch: 1 lets a sweep run one job per core, 2 a lone run ~1.3x faster; results can differ per count"""
    cuda: bool = True
    """run the networks on a GPU when one is present (the envs stay on the CPU); --no-cuda runs are deterministic"""
    track: bool = False
    """log the run to Weights & Biases (pip install wandb): the TensorBoard scalars, the args and the videos"""
    wandb_project_name: str = "gorl"
    """the W&B project of --track"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team) of --track; None: your default entity"""
    capture_video: bool = False
    """record the first episode of each evaluation as MP4 under videos/{run_name}/ (--eval-checkpoint: every episode)"""
    save_model: bool = False
    """save a checkpoint (args and weights) to runs/{run_name}/{exp_name}.pt"""
    eval_checkpoint: Optional[str] = None
    """path of a saved checkpoint: evaluate it deterministically for --eval-episodes episodes instead of training"""
    checkpoint_every: int = 0
    """env steps between training-state checkpoints (0: none); with them on, Ctrl-C, SIGTERM and SIGUSR1 save one and stop"""
    resume: Optional[str] = None
    """a training-state checkpoint (runs/{run_name}/training_state.pt): continue that run exactly, with its own flags"""

    # Algorithm specific arguments
    env_id: str = "HopperStand"
    """a DM Control task as the paper names it (HopperStand, ...), or a gymnasium Box-action id (Hopper-v5, module:Env-v0)"""
    total_timesteps: int = 1_000_000
    """total environment steps of training"""
    num_envs: int = 1
    """the number of parallel environments (stepped in one process); each vector step adds num_envs transitions"""
    action_repeat: int = 1
    """env steps each action is held for, their rewards summed (every step count of these flags is in env steps; 2 did not
    learn HopperStand: benchmark/results/sac_hopperstand_ar2.md)"""
    buffer_size: int = 1_000_000
    """the replay memory buffer size (capped at the transitions the run collects)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 0.005
    """target smoothing coefficient (Polyak averaging of the target critics)"""
    batch_size: int = 256
    """the batch size of sample from the replay memory"""
    learning_starts: int = 5_000
    """env steps of warm-up, acting with draws from N(0, I), before learning starts"""
    policy_lr: float = 3e-4
    """the learning rate of the policy network optimizer"""
    q_lr: float = 1e-3
    """the learning rate of the Q network optimizer (and of the temperature)"""
    utd: int = 1
    """update-to-data ratio: critic updates per transition stored (the paper's SAC variant uses 20)"""
    policy_frequency: int = 2
    """critic updates per actor (and temperature) update: delayed policy updates, as in TD3"""
    target_network_frequency: int = 1
    """critic updates per Polyak update of the target critics"""
    alpha: float = 0.2
    """entropy regularization coefficient (initial value when --autotune)"""
    autotune: bool = True
    """automatic tuning of the entropy coefficient toward the target entropy -action_dim"""
    eval_every: int = 25_000
    """environment steps between deterministic evaluations (mean action)"""
    eval_episodes: int = 10
    """episodes per deterministic evaluation (run in parallel envs)"""
    log_every: int = 1_000
    """environment steps between loss logs (reading a loss out of torch is kept off the per-step path)"""
    hidden_size: int = 256
    """width of both hidden layers of the actor and of each critic (CleanRL's and the paper's SAC: 256)"""

    # to be filled in runtime
    num_iterations: int = 0
    """the number of vector env steps (computed in runtime)"""


def resolve_env_id(env_id: str) -> str:
    """The gymnasium id of a DM Control task named in CamelCase (hopper/stand: HopperStand); gymnasium ids (dm_control/*-v0
    included) pass through, and "module:Env-v0" ids import the module that registers Env-v0 (tests.envs:Clock-v0)."""
    import shimmy  # registers the dm_control/<domain>-<task>-v0 ids
    from dm_control import suite

    gym.register_envs(shimmy)
    if ":" in env_id:  # gymnasium's "module:Env-v0" form: importing the module registers the env
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"cannot import {module!r} to register {env_id!r}: {err}") from None
        if env_id not in gym.registry:
            own = [name for name, spec in gym.registry.items() if str(spec.entry_point).startswith(f"{module}:")]
            raise ValueError(f"importing {module!r} registers no {env_id!r}; it registers: {', '.join(own) or 'nothing'}")
    tasks = {"".join(map(str.capitalize, f"{d}_{t}".split("_"))): f"dm_control/{d}-{t}-v0" for d, t in suite.ALL_TASKS}
    tasks["BallInCup"] = tasks["BallInCupCatch"]  # the paper's name for ball_in_cup/catch
    if env_id in tasks or env_id in gym.registry:
        return tasks.get(env_id, env_id)
    close = difflib.get_close_matches(env_id, list(tasks) + list(gym.registry), n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    valid = "a DM Control task in CamelCase (HopperStand, WalkerWalk, ...), a dm_control/<domain>-<task>-v0 or gymnasium id"
    raise ValueError(f"unknown env id {env_id!r}; {hint}valid: {valid}")


class ActionRepeat(gym.Wrapper):
    """Hold each action for `repeat` env steps and sum their rewards; stops early where the episode ends."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = repeat

    def step(self, action):
        total_reward = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if terminated or truncated:
                break
        return obs, total_reward, terminated, truncated, info


def recorded_env(env_id: str, video_folder: str) -> gym.Env:
    """env_id drawing RGB frames (DM Control: camera 0, which follows the agent) for a RecordVideo that evaluate() starts."""
    dm_control = env_id.startswith("dm_control/")
    with warnings.catch_warnings(action="ignore"):  # of a missing render mode (the error says it), of a shared folder
        try:  # an env that cannot draw frames stops the run here, in one line
            env = gym.make(env_id, render_mode="rgb_array", **({"render_kwargs": {"camera_id": 0}} if dm_control else {}))
            env.reset(seed=0)
            env.render()
        except Exception as err:
            raise ValueError(f"--capture-video cannot render {env_id}: {err}") from None
        fps = round(1 / env.unwrapped.dt) if dm_control else None  # real time: shimmy's render_fps is 1000 dt, not 1 / dt
        return gym.wrappers.RecordVideo(env, video_folder, episode_trigger=lambda _: False, fps=fps)


def make_env(env_id: str, seed: int, action_repeat: int = 1, video_folder: Optional[str] = None):
    def thunk():
        env = recorded_env(env_id, video_folder) if video_folder else gym.make(env_id)
        if action_repeat > 1:
            env = ActionRepeat(env, action_repeat)
        if isinstance(env.observation_space, gym.spaces.Dict):  # dm_control observations: a Dict of float64 arrays
            env = gym.wrappers.FlattenObservation(env)
        space = env.observation_space
        if space.dtype != np.float32:  # cast bounds first: a float64 Box cast by gymnasium warns about precision
            float32_space = gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32)
            env = gym.wrappers.TransformObservation(env, lambda obs: obs.astype(np.float32), float32_space)
        env.action_space.seed(seed)
        return env

    return thunk


def make_vector_env(env_id: str, num_envs: int, seed: int, action_repeat: int = 1, video_folder=None, videos=1):
    """num_envs copies of env_id in this process, recording raw episode returns; the first `videos` can record video."""
    env_fns = [make_env(env_id, seed + i, action_repeat, video_folder if i < videos else None) for i in range(num_envs)]
    # SAME_STEP autoreset: a finished env resets within the step; its true last observation is in infos["final_obs"]
    envs = gym.vector.SyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Box) or not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        envs.close()
        raise ValueError(f"{env_id} has action space {space}; valid: a gymnasium Box with finite bounds (e.g. HopperStand)")
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def squash_to_bounds(z: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Env action rescale(tanh(z)): maps the pre-squash action onto [low, high], which need not be symmetric."""
    return low + 0.5 * (np.tanh(z) + 1.0) * (high - low)


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class SoftQNetwork(nn.Module):
    """num_critics independent soft Q-function MLPs (two hidden layers, ReLU) held as stacked weights, so that each layer of
    all the critics is one batched matmul: one call gives every critic's value, shape (num_critics, batch)."""

    def __init__(self, obs_dim: int, action_dim: int, num_critics: int = 2, hidden: int = 256):
        super().__init__()
        sizes = [obs_dim + action_dim, hidden, hidden, 1]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers = [nn.Linear(fan_in, fan_out) for _ in range(num_critics)]  # PyTorch's default init, per critic
            self.weights.append(nn.Parameter(torch.stack([layer.weight.detach().T for layer in layers])))
            self.biases.append(nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]).unsqueeze(1)))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """Q-values of every critic; detach_params gives gradients w.r.t. the actions only (the actor's loss)."""
        x = torch.cat([obs, actions], -1).expand(len(self.weights[0]), -1, -1)  # the same input for all
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            weight, bias = (weight.detach(), bias.detach()) if detach_params else (weight, bias)
            if i < len(self.weights) - 1:
                x = F.relu(torch.baddbmm(bias, x, weight))  # (critics, batch, hidden)
            else:  # the width-1 output layer as a product and a sum: a matrix-vector bmm is slow on CPU, its backward more so
                x = (x * weight.transpose(1, 2)).sum(-1) + bias.squeeze(-1)
        return x


class Actor(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, hidden: int = 256):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.fc_mean = nn.Linear(hidden, action_dim)
        self.fc_logstd = nn.Linear(hidden, action_dim)

    def forward(self, obs: torch.Tensor):
        h = self.trunk(obs)
        return self.fc_mean(h), torch.clamp(self.fc_logstd(h), LOG_STD_MIN, LOG_STD_MAX)

    def get_mean(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)[0]

    def get_action(self, obs: torch.Tensor):
        """A reparameterised sample: (z, a = tanh(z), log pi(a|s)), the log-prob with tanh's log-det correction."""
        mean, log_std = self(obs)
        noise = torch.randn_like(mean)
        z = mean + log_std.exp() * noise
        # log N(z; mean, std) - log|det da/dz|, with log(1 - tanh(z)^2) = 2 (log 2 - z - softplus(-2 z)), stably
        log_prob = (-0.5 * noise**2 - log_std - 0.5 * np.log(2 * np.pi) - 2 * (np.log(2) - z - F.softplus(-2 * z))).sum(-1)
        return z, torch.tanh(z), log_prob


class ReplayBuffer:
    """Transitions in preallocated float32 numpy arrays, a ring overwriting the oldest: no tensor is built per stored step."""

    def __init__(self, size: int, obs_dim: int, action_dim: int, seed: int, device: torch.device = torch.device("cpu")):
        self.size, self.pos, self.count, self.device = size, 0, 0, device
        self.obs, self.next_obs = np.zeros((2, size, obs_dim), dtype=np.float32)
        self.actions = np.zeros((size, action_dim), dtype=np.float32)
        self.rewards, self.terminations = np.zeros((2, size), dtype=np.float32)
        self.rng = np.random.default_rng(seed)

    def add(self, obs, next_obs, actions, rewards, terminations):
        """Store one vector step: a batch of num_envs transitions."""
        idx = (self.pos + np.arange(len(obs))) % self.size
        self.obs[idx], self.next_obs[idx], self.actions[idx] = obs, next_obs, actions
        self.rewards[idx], self.terminations[idx] = rewards, terminations
        self.pos = int(idx[-1] + 1) % self.size
        self.count = min(self.count + len(obs), self.size)

    def sample(self, batch_size: int):
        """(obs, next_obs, actions, rewards, terminations) of batch_size transitions drawn uniformly with replacement."""
        idx = self.rng.integers(0, self.count, batch_size)
        fields = (self.obs, self.next_obs, self.actions, self.rewards, self.terminations)
        return tuple(torch.from_numpy(field[idx]).to(self.device) for field in fields)


def real_next_obs(next_obs: np.ndarray, terminations: np.ndarray, truncations: np.ndarray, infos: dict) -> np.ndarray:
    """The observation each transition led to: with SAME_STEP autoreset a finished env returns the next episode's first, its
    true last one is in infos["final_obs"], the critic's bootstrap after a truncation (a time limit is no terminal state)."""
    ended = terminations | truncations
    if ended.any():  # on a copy: the array is the vector env's
        next_obs = next_obs.copy()
        next_obs[ended] = np.stack(infos["final_obs"][ended])
    return next_obs


def soft_q_target(rewards, terminations, next_q_values, next_log_pi, alpha, gamma: float) -> torch.Tensor:
    """Soft Bellman target r + gamma (1 - terminated) (min_k Q'_k(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s').
    Only terminations cut the bootstrap: truncated transitions bootstrap from their true last observation."""
    return rewards + gamma * (1.0 - terminations) * (next_q_values.min(0).values - alpha * next_log_pi)


def update_critics(qf: SoftQNetwork, qf_target: SoftQNetwork, q_optimizer, actor: Actor, batch: tuple, alpha, gamma: float):
    """One gradient step of every critic toward the soft target; returns (Q-values, per-critic MSE, summed MSE)."""
    b_obs, b_next_obs, b_actions, b_rewards, b_terminations = batch
    with torch.no_grad():
        _, next_actions, next_log_pi = actor.get_action(b_next_obs)
        next_q_values = qf_target(b_next_obs, next_actions)
        next_q_target = soft_q_target(b_rewards, b_terminations, next_q_values, next_log_pi, alpha, gamma)
    q_values = qf(b_obs, b_actions)
    qf_losses = ((q_values - next_q_target) ** 2).mean(1)  # one MSE per critic
    qf_loss = qf_losses.sum()

    q_optimizer.zero_grad(set_to_none=True)
    qf_loss.backward()
    q_optimizer.step()
    return q_values.detach(), qf_losses.detach(), qf_loss.detach()


def q_range_warning(q_values: torch.Tensor, rewards: np.ndarray, soft_bonus: float, gamma: float) -> Optional[str]:
    """A warning line when a critic's batch-mean Q leaves the range a soft value can take, None inside it. Every step adds a
    reward seen so far plus gamma * soft_bonus (the policy's term of the soft target, its batch mean), so a true value lies
    in that sum's [lowest, highest] over 1 - gamma. The margin, 10% of that plus of 1 / (1 - gamma), is quiet at 0 rewards."""
    low = (rewards.min() + min(0.0, gamma * soft_bonus)) / (1.0 - gamma)
    high = (rewards.max() + max(0.0, gamma * soft_bonus)) / (1.0 - gamma)
    margin = 0.1 * (high - low + 1.0 / (1.0 - gamma))
    outside = [q for q in q_values.mean(1).tolist() if not low - margin <= q <= high + margin]
    rewards = f"[{rewards.min():.2f}, {rewards.max():.2f}]"
    allowed = f"[{low:.1f}, {high:.1f}], the range that rewards in {rewards} and gamma {gamma} allow: the critic is diverging"
    return f"a critic's mean Q, {outside[0]:.1f}, is outside {allowed}" if outside else None


@torch.no_grad()
def soft_update(target_params: list, params: list, tau: float):
    """Polyak averaging target <- (1 - tau) target + tau online, in two fused ops over all tensors."""
    torch._foreach_mul_(target_params, 1.0 - tau)
    torch._foreach_add_(target_params, params, alpha=tau)


def step_envs(envs: gym.vector.VectorEnv, rb: ReplayBuffer, writer: SummaryWriter, obs, z, actions, global_step: int):
    """One vector step with the pre-squash actions z, rescaled to the bounds, stored with the actions the critics take; returns
    the next observations and the finished episodes' returns."""
    space = envs.single_action_space
    next_obs, rewards, terminations, truncations, infos = envs.step(squash_to_bounds(z, space.low, space.high))
    rb.add(obs, real_next_obs(next_obs, terminations, truncations, infos), actions, rewards, terminations)
    finished = np.flatnonzero(infos["_episode"]) if "episode" in infos else []
    for i in finished:  # the raw return and length of every episode that ended in this vector step
        writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
        writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)
    return next_obs, [float(infos["episode"]["r"][i]) for i in finished]


@torch.no_grad()
def evaluate(agent: Actor, envs: gym.vector.VectorEnv, seed: int, video: str = "") -> np.ndarray:
    """Deterministic evaluation (z = policy mean): the return of the first episode of each env."""
    low, high, device = envs.single_action_space.low, envs.single_action_space.high, next(agent.parameters()).device
    obs, _ = envs.reset(seed=seed)
    for i, env in enumerate(envs.unwrapped.envs if video else []):  # the envs with a RecordVideo (--capture-video) record
        if env.has_wrapper_attr("start_recording"):  # this episode, a frame per env step; the autoreset at its end writes it
            env.get_wrapper_attr("start_recording")(f"{video}-episode-{i}")
    returns, running = np.zeros(envs.num_envs), np.ones(envs.num_envs, dtype=bool)
    while running.any():
        obs_tensor = torch.from_numpy(obs).to(device)
        z = agent.get_mean(obs_tensor)
        obs, reward, terminations, truncations, _ = envs.step(squash_to_bounds(z.cpu().numpy(), low, high))
        returns += reward * running
        running &= ~(terminations | truncations)
    return returns


def log_video(writer: SummaryWriter, video_folder: Optional[str], global_step: int, track: bool):
    """--capture-video: log the path of the episode evaluate() recorded at global_step; --track: the video itself to W&B."""
    if video_folder:
        path = f"{video_folder}/step-{global_step}-episode-0.mp4"
        writer.add_text("eval/video", path, global_step)
        if track:
            import wandb  # imported by --track

            wandb.log({"eval/video": wandb.Video(path)})


POSITIVE_FLAGS = ("num_envs", "action_repeat", "buffer_size", "batch_size", "utd", "policy_frequency", "hidden_size")
POSITIVE_FLAGS += ("target_network_frequency", "log_every", "eval_every", "eval_episodes", "torch_threads")

# float flags: the interval of valid values, as the error states it (every value must be finite; None, unset, passes);
# gamma < 1, as a soft value is finite only then
FLOAT_RANGES = {"policy_lr": "(0, inf)", "q_lr": "(0, inf)", "gamma": "[0, 1)", "tau": "(0, 1]", "alpha": "[0, inf)"}
INTERVALS = {"(0, inf)": lambda x: 0 < x, "[0, inf)": lambda x: 0 <= x, "[0, 1)": lambda x: 0 <= x < 1}
INTERVALS["(0, 1]"] = lambda x: 0 < x <= 1


def check_args(args: Args):
    """One-line errors for flag values that no run can use (the budget is checked once the stages are known)."""
    for name in POSITIVE_FLAGS:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name, interval in FLOAT_RANGES.items():
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and INTERVALS[interval](value)):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number in {interval}, got {value}")
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be 0 (no checkpoints) or a count of env steps, got {args.checkpoint_every}")


def save_checkpoint(path: str, args: Args, networks: dict):
    """Everything needed to act again: args (env id, architecture) and weights (the critics' too)."""
    weights = {name: network.state_dict() for name, network in networks.items()}
    torch.save({"script": os.path.basename(__file__), "args": vars(args), **weights}, path)


# flags dropped since a checkpoint may have been written, each with the behaviour the script now always has
DROPPED_FLAGS = {"normalize_obs": False, "critic_layer_norm": False}


def saved_run_args(saved: dict, source: str) -> dict:
    """A checkpoint's args less the dropped flags; a run that set one otherwise cannot go on without it."""
    for name, value in DROPPED_FLAGS.items():
        if saved.get(name, value) != value:
            flag = f"--{name.replace('_', '-')} {saved[name]}"
            raise ValueError(f"{source} comes from a run with {flag}, which {os.path.basename(__file__)} no longer has")
    return {name: value for name, value in saved.items() if name not in DROPPED_FLAGS}


def load_checkpoint(path: str, num_episodes: int, video_folder: Optional[str] = None):
    """The saved run's args, the networks its policy acts with, and num_episodes envs to evaluate it on."""
    script = os.path.basename(__file__)
    try:
        checkpoint = torch.load(path, weights_only=False, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"--eval-checkpoint {path} cannot be read as a checkpoint: {err}") from None
    saved_by = checkpoint.get("script", script) if isinstance(checkpoint, dict) else "no script of this project"
    if saved_by != script:
        raise ValueError(f"--eval-checkpoint {path} was saved by {saved_by}, not {script}: evaluate it with that script")
    saved_args = Args(**saved_run_args(checkpoint["args"], f"--eval-checkpoint {path}"))
    env_id, seed = resolve_env_id(saved_args.env_id), saved_args.seed + 10_000
    envs = make_vector_env(env_id, num_episodes, seed, saved_args.action_repeat, video_folder, num_episodes)
    obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    actor = Actor(obs_dim, action_dim, hidden=saved_args.hidden_size)
    actor.load_state_dict(checkpoint["actor"])
    return saved_args, actor, envs


def save_training_state(path: str, run_name: str, args: Args, variables: dict):
    """Write the loop's variables, pickled together so that shared references survive, the RNG streams, and the physics of
    gymnasium's MuJoCo envs (Hopper-v5, ...), which pickle by re-creating themselves (DM Control's pickle whole)."""
    spec, physics = mujoco.mjtState.mjSTATE_INTEGRATION, []  # per env: (its physics, its RNG), or None
    for env in (env.unwrapped for env in variables["envs"].unwrapped.envs):
        physics.append((np.empty(mujoco.mj_stateSize(env.model, spec)), env.np_random) if isinstance(env, MujocoEnv) else None)
        if physics[-1]:
            mujoco.mj_getState(env.model, env.data, physics[-1][0], spec)
    state = {"script": os.path.basename(__file__), "run_name": run_name, "args": vars(args), "variables": variables}
    state |= {"mujoco": physics, "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state())}
    with gzip.open(f"{path}.tmp", "wb", compresslevel=1) as f:  # gzip: DM Control envs pickle their MuJoCo model and arena
        cloudpickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)  # cloudpickle: gymnasium's wrappers hold lambdas
    os.replace(f"{path}.tmp", path)  # atomic: an interruption leaves the previous checkpoint


def load_training_state(args: Args) -> tuple:
    """(args, state) of the run that args.resume (saved by this script) continues with its own flags; others are refused."""
    path, script = args.resume, os.path.basename(__file__)
    try:
        with gzip.open(path, "rb") as f:
            state = pickle.load(f)
    except Exception as err:  # not a gzip file, a truncated one, a pickle of something else: one line, not a traceback
        raise ValueError(f"--resume {path} cannot be read as a training-state checkpoint: {err}") from None
    saved_by = state.get("script") if isinstance(state, dict) else "no script of this project"
    if saved_by != script:
        raise ValueError(f"--resume {path} was saved by {saved_by}, not {script}: resume it with that script")
    given = [f"--{name.replace('_', '-')}" for name in vars(args) if getattr(args, name) != getattr(Args(resume=path), name)]
    if given:
        raise ValueError(f"--resume continues the saved run with its own flags; drop {', '.join(given)}")
    return Args(**{**saved_run_args(state["args"], f"--resume {path}"), "resume": path}), state


def stop_requests() -> list:
    """Ctrl-C, SIGTERM (Slurm's preemption), SIGUSR1 (its warning): the loop checkpoints and stops; 2 Ctrl-C: at once."""
    requests = []

    def request_stop(signum, frame):
        if requests and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requests.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, request_stop)
    return requests


if __name__ == "__main__":
    args = tyro.cli(Args)
    try:
        check_args(args)
        if args.eval_checkpoint:  # --capture-video: every episode, to videos/{the checkpoint's run name}/
            torch.set_num_threads(args.torch_threads)  # the run's own eval returns repeat only at its thread count
            video_folder = f"videos/{os.path.abspath(args.eval_checkpoint).split(os.sep)[-2]}" if args.capture_video else None
            saved_args, actor, eval_envs = load_checkpoint(args.eval_checkpoint, args.eval_episodes, video_folder)
            returns = evaluate(actor, eval_envs, seed=saved_args.seed + 10_000, video="checkpoint")
            stats = f"{returns.mean():.2f} +- {returns.std():.2f} over {len(returns)} episodes"
            videos = f"; videos: {video_folder}/checkpoint-episode-*.mp4" if video_folder else ""
            print(f"{saved_args.env_id}: deterministic return {stats}{videos}")
            sys.exit(0)
        args, resumed = load_training_state(args) if args.resume else (args, None)
        gym_id = resolve_env_id(args.env_id)
        steps_per_iteration = args.num_envs * args.action_repeat  # env steps of one vector step
        args.num_iterations = args.total_timesteps // steps_per_iteration
        if args.num_iterations * steps_per_iteration <= args.learning_starts:  # no env step to learn from after the warm-up
            minimum = (args.learning_starts // steps_per_iteration + 1) * steps_per_iteration
            raise ValueError(f"--total-timesteps {args.total_timesteps} must be at least {minimum}, past --learning-starts")
        envs = make_vector_env(gym_id, args.num_envs, args.seed, action_repeat=args.action_repeat)
        run_name = resumed["run_name"] if resumed else f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
        video_folder = f"videos/{run_name}" if args.capture_video else None
        eval_envs = make_vector_env(gym_id, args.eval_episodes, args.seed + 10_000, args.action_repeat, video_folder)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    if args.track:  # before the SummaryWriter, whose scalars wandb syncs (CleanRL's way); wandb is optional
        try:
            import wandb
        except ImportError:
            sys.exit("error: --track logs to Weights & Biases, which is not installed: pip install wandb==0.31.0")
        wandb_args = dict(project=args.wandb_project_name, entity=args.wandb_entity, name=run_name, config=vars(args))
        wandb.init(**wandb_args, sync_tensorboard=True, save_code=True)
    # --resume: the same run directory, where TensorBoard drops what the interrupted run logged after the checkpoint
    run_dir = os.path.dirname(os.path.abspath(args.resume)) if resumed else f"runs/{run_name}"
    writer = SummaryWriter(run_dir, purge_step=resumed["variables"]["global_step"] + 1 if resumed else None)
    if not resumed:
        writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),
        )

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    torch.use_deterministic_algorithms(device.type == "cpu")  # on a GPU some kernels have no deterministic version

    obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    actor = Actor(obs_dim, action_dim, hidden=args.hidden_size).to(device)
    qf = SoftQNetwork(obs_dim, action_dim, hidden=args.hidden_size).to(device)
    qf_target = copy.deepcopy(qf).requires_grad_(False)
    q_params, q_target_params = list(qf.parameters()), list(qf_target.parameters())
    q_optimizer = optim.Adam(q_params, lr=args.q_lr, fused=True)  # fused: one kernel per step on CPU
    actor_optimizer = optim.Adam(actor.parameters(), lr=args.policy_lr, fused=True)

    # Automatic tuning of the temperature alpha
    log_alpha = torch.tensor([float(np.log(args.alpha))], requires_grad=args.autotune, device=device)
    alpha = log_alpha.detach().exp()
    target_entropy = -float(action_dim)
    a_optimizer = optim.Adam([log_alpha], lr=args.q_lr)

    # ALGO Logic: Storage setup
    buffer_size = min(args.buffer_size, args.total_timesteps // args.action_repeat)  # at most what the run collects
    rb = ReplayBuffer(buffer_size, obs_dim, action_dim, args.seed, device)

    # TRY NOT TO MODIFY: start the game
    global_step = num_updates = next_eval = next_log = 0
    last_eval, last_eval_step = float("nan"), 0
    q_was_out_of_range, recent_returns = False, []
    next_checkpoint, start_iteration, training_seconds = args.checkpoint_every, 1, 0.0
    obs, _ = envs.reset(seed=args.seed)
    # the training state: every variable of the loop that outlives an iteration (--checkpoint-every, --resume)
    LOOP_STATE = "actor qf qf_target q_params q_target_params q_optimizer actor_optimizer log_alpha alpha a_optimizer".split()
    LOOP_STATE += "rb envs obs global_step num_updates next_eval next_log last_eval last_eval_step q_was_out_of_range".split()
    LOOP_STATE += "recent_returns q_values qf_losses qf_loss actor_loss alpha_loss next_checkpoint start_iteration".split()
    LOOP_STATE += "training_seconds log_pi".split()
    if resumed:  # every one of them as the checkpoint left it, the envs mid-episode and the RNG streams included
        envs.close()
        globals().update(resumed["variables"])
        for env, saved in zip(envs.unwrapped.envs, resumed["mujoco"]):  # gymnasium MuJoCo envs: physics and RNG
            if saved is not None:
                physics, env.unwrapped.np_random = saved
                mujoco.mj_setState(env.unwrapped.model, env.unwrapped.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
                mujoco.mj_forward(env.unwrapped.model, env.unwrapped.data)
        for set_state, saved in zip((random.setstate, np.random.set_state, torch.set_rng_state), resumed["rng"]):
            set_state(saved)
        print(f"resumed {run_name} at step {global_step:,} from {args.resume}", flush=True)
    stop_signals = stop_requests() if args.checkpoint_every else []
    start_time = last_print = time.time() - training_seconds

    for iteration in range(start_iteration, args.num_iterations + 1):
        if global_step >= next_eval:
            eval_start = time.time()
            last_eval = evaluate(actor, eval_envs, seed=args.seed + 10_000, video=f"step-{global_step}").mean()
            last_eval_step = global_step
            writer.add_scalar("eval/episodic_return", last_eval, global_step)
            log_video(writer, video_folder, global_step, args.track)
            next_eval = (global_step // args.eval_every + 1) * args.eval_every  # the next multiple, after any jump
            start_time += time.time() - eval_start  # SPS measures training only

        # after the evaluation: what is logged at steps up to global_step precedes the checkpoint (--resume purges the rest)
        if args.checkpoint_every and (global_step >= next_checkpoint or stop_signals):
            next_checkpoint = (global_step // args.checkpoint_every + 1) * args.checkpoint_every
            start_iteration, training_seconds, checkpoint_start = iteration, time.time() - start_time, time.time()
            state_path = f"{run_dir}/training_state.pt"
            save_training_state(state_path, run_name, args, {name: globals().get(name) for name in LOOP_STATE})
            start_time += time.time() - checkpoint_start  # SPS measures training only
            if stop_signals:
                saved = f"the training state is saved: continue with python {os.path.basename(__file__)} --resume {state_path}"
                print(f"stopped by {signal.Signals(stop_signals[0]).name} at step {global_step:,}; {saved}", flush=True)
                writer.close()
                sys.exit(128 + stop_signals[0])

        # ALGO LOGIC: put action logic here
        with torch.no_grad():
            if global_step < args.learning_starts:  # warm-up: z ~ N(0, I), the same draws in gorl_sac.py's stage 0
                z = torch.randn(args.num_envs, action_dim)
                actions = torch.tanh(z)
            else:
                z, actions, _ = actor.get_action(torch.from_numpy(obs).to(device))

        # TRY NOT TO MODIFY: execute the game, log data and save it to the replay buffer.
        global_step += args.num_envs * args.action_repeat
        obs, episode_returns = step_envs(envs, rb, writer, obs, z.cpu().numpy(), actions.cpu().numpy(), global_step)
        recent_returns += episode_returns

        # ALGO LOGIC: training.
        if global_step >= args.learning_starts:
            for _ in range(args.utd * args.num_envs):
                num_updates += 1
                batch = rb.sample(args.batch_size)
                q_values, qf_losses, qf_loss = update_critics(qf, qf_target, q_optimizer, actor, batch, alpha, args.gamma)

                # delayed policy updates (TD3): one actor and temperature step per policy_frequency critic steps
                if num_updates % args.policy_frequency == 0:
                    b_obs = batch[0]
                    _, pi_actions, log_pi = actor.get_action(b_obs)
                    min_qf_pi = qf(b_obs, pi_actions, detach_params=True).min(0).values
                    actor_loss = (alpha * log_pi - min_qf_pi).mean()
                    # the temperature's loss, on the same sample: alpha grows while the entropy is below its target
                    alpha_loss = (-log_alpha.exp() * (log_pi.detach() + target_entropy)).mean()

                    actor_optimizer.zero_grad(set_to_none=True)
                    a_optimizer.zero_grad(set_to_none=True)
                    (actor_loss + alpha_loss).backward()  # one backward pass; alpha_loss reaches log_alpha only
                    actor_optimizer.step()
                    if args.autotune:
                        a_optimizer.step()
                        alpha = log_alpha.detach().exp()

                # update the target networks
                if num_updates % args.target_network_frequency == 0:
                    soft_update(q_target_params, q_params, args.tau)

            if global_step >= next_log and num_updates >= args.policy_frequency:
                next_log = (global_step // args.log_every + 1) * args.log_every
                if not (torch.isfinite(qf_loss) and torch.isfinite(actor_loss)):  # stop before the run writes garbage
                    sys.exit(f"error: non-finite loss (critic {qf_loss:g}, actor {actor_loss:g}) at step {global_step}")
                sps = int(global_step / (time.time() - start_time))
                losses = dict(qf1_values=q_values[0].mean(), qf1_loss=qf_losses[0], qf2_loss=qf_losses[1], qf_loss=qf_loss / 2)
                losses |= dict(actor_loss=actor_loss, alpha=alpha, alpha_loss=alpha_loss)
                for name, value in losses.items():
                    writer.add_scalar(f"losses/{name}", value.item(), global_step)
                writer.add_scalar("charts/SPS", sps, global_step)
                q_warning = q_range_warning(q_values, rb.rewards[: rb.count], -(alpha * log_pi).mean().item(), args.gamma)
                writer.add_scalar("charts/q_out_of_range", float(q_warning is not None), global_step)
                if q_warning and not q_was_out_of_range:  # one line when it leaves the range, not one per log
                    print(f"warning at step {global_step:,}: {q_warning}", flush=True)
                q_was_out_of_range = q_warning is not None
                if time.time() - last_print > 5:
                    last_print = time.time()
                    recent = f"{np.mean(recent_returns):8.1f}" if recent_returns else "     n/a"
                    print(
                        f"step {global_step:>10,}/{args.total_timesteps:,} | SPS {sps:5d} | episodic return "
                        f"{recent} | eval {last_eval:8.1f} (step {last_eval_step:,}) | critic loss {qf_loss.item():.3f}",
                        flush=True,
                    )
                    recent_returns = []

    training_seconds = time.time() - start_time
    writer.add_scalar("charts/SPS", int(global_step / training_seconds), global_step)
    last_eval = evaluate(actor, eval_envs, seed=args.seed + 10_000, video=f"step-{global_step}").mean()
    writer.add_scalar("eval/episodic_return", last_eval, global_step)
    log_video(writer, video_folder, global_step, args.track)
    print(f"final deterministic eval return {last_eval:.2f} after {global_step:,} steps, {training_seconds:.0f} s of training")
    if args.save_model:
        model_path = f"{run_dir}/{args.exp_name}.pt"
        save_checkpoint(model_path, args, {"actor": actor, "qf": qf})
        print(f"model saved; evaluate it with: python {os.path.basename(__file__)} --eval-checkpoint {model_path}")
    if os.path.exists(f"{run_dir}/training_state.pt"):  # the run is complete: nothing is left to resume
        os.remove(f"{run_dir}/training_state.pt")

    envs.close()
    eval_envs.close()
    writer.close()

# docs and experiment results: README.md
"""GoRL-SAC: generative online RL (Zhang et al., arXiv 2512.02581, App. F.2) with a SAC latent optimiser, in CleanRL style.

SAC on the latent MDP: the actor pi_theta(eps|s) is an unsquashed Gaussian over eps, the critics are Q(s, eps), KL to
N(0, I) replaces the negative entropy, and alpha is tuned toward a target KL. A generative decoder g_phi(s, eps), which
no gradient reaches and which is the identity in stage 0, turns eps into the pre-squash action z; the env action is
rescale(tanh(z)). At each stage end the decoder is refit on fresh rollouts to map the FIXED prior N(0, I) to the
policy's actions, the actor restarts at N(0, I), and the replay buffer is relabelled into the new decoder's latents.
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
    """coefficient of the KL to the prior (initial value when --autotune)"""
    autotune: bool = True
    """automatic tuning of the KL coefficient toward --target-kl"""
    eval_every: int = 25_000
    """environment steps between deterministic evaluations (mean action)"""
    eval_episodes: int = 10
    """episodes per deterministic evaluation (run in parallel envs)"""
    log_every: int = 1_000
    """environment steps between loss logs (reading a loss out of torch is kept off the per-step path)"""
    hidden_size: int = 256
    """width of both hidden layers of the actor and of each critic (CleanRL's and the paper's SAC: 256)"""

    # GoRL arguments
    num_stages: int = 3
    """stages of latent-policy training; the budget splits like the paper's SAC variant's 2M/1M/1M (1/2, 1/4, 1/4)"""
    target_kl: float = 1.0
    """target of KL(pi_theta(.|s) || N(0, I)) per action dimension, toward which alpha is tuned"""
    flow_steps: int = 10
    """sampling steps of the decoder from t=1 (x=eps) to t=0 (x=pre-squash action)"""
    decoder_data_steps: Optional[int] = None
    """fresh env steps of the policy to refit the decoder on at each stage end, in the budget and the replay buffer; None:
    5% of --total-timesteps, at least 1,000 (1% was too little: benchmark/results/sac_hopperstand_refit.md)"""
    decoder_epochs: int = 100
    """maximum epochs of each decoder refit"""
    decoder_batch_size: int = 512
    """minibatch size of the decoder refit (the paper's 8192 suits its 512k-pair refits, too few steps on a few thousand)"""
    decoder_lr: float = 1e-3
    """learning rate of the decoder refit"""
    decoder_noise_draws: int = 8
    """(eps, t) draws per (s, a) pair in the flow-matching loss"""
    decoder_patience: int = 20
    """stop a decoder refit after this many epochs without a better validation loss"""
    critic_refresh_steps: int = 5_000
    """critic updates on the relabelled replay buffer after each refit, before the next stage acts"""

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


class ObsNormalizer(nn.Module):
    """The decoder's observation statistics, set by fit_decoder at each refit (the actor and critics see raw observations)."""

    def __init__(self, shape: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))  # unused; saved decoders hold it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + 1e-8), -10.0, 10.0)


class FlowDecoder(nn.Module):
    """Conditional flow-matching decoder g_phi(s, eps) (paper Sec. 4.2): a velocity field v(s, x_t, t) integrated from t=1
    (x = eps) to t=0 (the pre-squash action) by the midpoint rule (Euler's narrow a refit: benchmark/integrator_check.py)."""

    def __init__(self, obs_dim: int, action_dim: int, flow_steps: int, hidden: int = 64, time_dim: int = 8):
        super().__init__()
        self.flow_steps, self.obs_rms = flow_steps, ObsNormalizer(obs_dim)
        self.register_buffer("frequencies", 2.0 ** torch.arange(time_dim // 2) * torch.pi)
        step_times = (1.0 - torch.arange(flow_steps, dtype=torch.float64) / flow_steps).float()
        self.register_buffer("step_times", step_times, persistent=False)
        self.register_buffer("step_sizes", torch.full((flow_steps,), -1.0 / flow_steps), persistent=False)
        widths = [obs_dim + action_dim + time_dim] + [hidden] * 4
        layers = [layer for i, o in zip(widths, widths[1:]) for layer in (nn.Linear(i, o), nn.SiLU())]
        self.velocity = nn.Sequential(*layers, nn.Linear(hidden, action_dim))
        # a zero output layer makes v = 0, so the steps leave x unchanged: stage 0's decoder is exactly a = z
        nn.init.zeros_(self.velocity[-1].weight)
        nn.init.zeros_(self.velocity[-1].bias)

    def velocity_at(self, obs_normalized: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = t * self.frequencies  # sinusoidal embedding of t, shape (batch, time_dim)
        return self.velocity(torch.cat([obs_normalized, x, torch.sin(angles), torch.cos(angles)], -1))

    def step(self, obs_normalized: torch.Tensor, x: torch.Tensor, t: float, step_size: float) -> torch.Tensor:
        """x at t + step_size from x at t, by the midpoint rule."""
        midpoint = x + 0.5 * step_size * self.velocity_at(obs_normalized, x, torch.full_like(x[:, :1], t))
        return x + step_size * self.velocity_at(obs_normalized, midpoint, torch.full_like(x[:, :1], t + 0.5 * step_size))

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if not (self.velocity[-1].weight.any() or self.velocity[-1].bias.any()):
            return z  # zero output layer (stage 0): the steps are the identity, so skip them
        obs_normalized, x = self.obs_rms(obs), z
        for t, step_size in zip(self.step_times.tolist(), self.step_sizes.tolist()):
            x = self.step(obs_normalized, x, t, step_size)
        return x

    def loss(self, obs, actions, eps, t) -> torch.Tensor:
        """Conditional flow matching with the fixed prior: x_t = t eps + (1 - t) a, target velocity eps - a."""
        x_t = t * eps + (1 - t) * actions
        return ((self.velocity_at(self.obs_rms(obs), x_t, t) - (eps - actions)) ** 2).mean()


def fit_decoder(decoder, obs, actions, epochs, batch_size, lr, noise_draws, patience, val_fraction=0.1):
    """Refit the decoder on (s, pre-squash action) pairs, noise from the fixed N(0, I) prior (the latent policy's z
    collapses: paper Fig. 4a), keeping the best-validation weights: (last train loss, best val loss, held-out indices)."""
    decoder.obs_rms.mean.copy_(obs.mean(0))
    decoder.obs_rms.var.copy_(obs.var(0, unbiased=False))
    perm, num_val = torch.randperm(len(obs)), max(1, int(len(obs) * val_fraction))
    val, train = perm[:num_val], perm[num_val:].repeat(noise_draws)
    val_eps, val_t = torch.randn_like(actions[val]), torch.rand(num_val, 1, device=obs.device)  # fixed: comparable
    optimizer = optim.Adam(decoder.velocity.parameters(), lr=lr)
    best_val, best_state, best_epoch = float("inf"), copy.deepcopy(decoder.state_dict()), -1
    for epoch in range(epochs):
        for idx in train[torch.randperm(len(train))].split(batch_size):
            eps, t = torch.randn_like(actions[idx]), torch.rand(len(idx), 1, device=obs.device)
            loss = decoder.loss(obs[idx], actions[idx], eps, t)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = decoder.loss(obs[val], actions[val], val_eps, val_t).item()
        if val_loss < best_val:
            best_val, best_state, best_epoch = val_loss, copy.deepcopy(decoder.state_dict()), epoch
        elif epoch - best_epoch >= patience:
            break
    decoder.load_state_dict(best_state)
    return loss.item(), best_val, val


@torch.no_grad()
def invert_decoder(decoder: FlowDecoder, obs: torch.Tensor, x0: torch.Tensor, iterations: int = 20, chunk: int = 65536):
    """The latent eps that the decoder maps to x0: forward()'s steps x_{k+1} = step_k(x_k) undone in reverse order, solving
    F(x) = step_k(x) - x_{k+1} = 0 per coordinate from the explicit backward step by secant updates (fixed-point ones where the
    secant is degenerate: alone they fail where a step is steep) until no |F| > 1e-5, or after `iterations`."""
    if not (decoder.velocity[-1].weight.any() or decoder.velocity[-1].bias.any()):
        return x0.clone()  # the identity decoder of stage 0
    latents = []
    for obs_chunk, x in zip(obs.split(chunk), x0.split(chunk)):
        obs_normalized = decoder.obs_rms(obs_chunk)
        for k in reversed(range(decoder.flow_steps)):
            t, step_size, x_next = decoder.step_times[k].item(), decoder.step_sizes[k].item(), x
            x_before, residual_before = x_next, decoder.step(obs_normalized, x_next, t, step_size) - x_next
            x = x_next - residual_before  # the explicit backward step
            for _ in range(iterations):
                current = decoder.step(obs_normalized, x, t, step_size) - x_next
                if current.abs().max() < 1e-5:
                    break
                slope = (current - residual_before) / (x - x_before)  # dF/dx along each coordinate
                usable = torch.isfinite(slope) & (slope.abs() > 0.05)
                x_before, residual_before = x, current
                # a secant from two far-apart points can point anywhere: no update moves a coordinate by more than 1
                x = x - (current / torch.where(usable, slope, torch.ones_like(slope))).clamp(-1.0, 1.0)
        latents.append(x)
    return torch.cat(latents)


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
        # eps through tanh, a bijection flat where every latent decodes to one saturated action (on raw eps the critic
        # extrapolated there and the actor followed: benchmark/results/sac_critic_tanh.md); in stage 0, Gaussian SAC's input
        x = torch.cat([obs, torch.tanh(actions)], -1).expand(len(self.weights[0]), -1, -1)  # the same input for all
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
        """A reparameterised latent sample and its policy's KL to the prior: (eps, KL(pi_theta(.|s) || N(0, I)))."""
        mean, log_std = self(obs)
        noise = torch.randn_like(mean)
        eps = mean + log_std.exp() * noise
        # KL(N(mean, std^2) || N(0, I)) = 0.5 (mean^2 + std^2 - 1) - log std per dimension, summed
        return eps, (0.5 * (mean**2 + torch.exp(2 * log_std) - 1) - log_std).sum(-1)

    def reset_to_prior(self):
        """Make pi_theta(eps|s) exactly N(0, I) for every s: mean head 0, log-std head 0 (inside its clamp range)."""
        for head in (self.fc_mean, self.fc_logstd):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)


class ReplayBuffer:
    """Transitions in preallocated float32 numpy arrays, a ring overwriting the oldest: no tensor is built per stored step."""

    def __init__(self, size: int, obs_dim: int, action_dim: int, seed: int, device: torch.device = torch.device("cpu")):
        self.size, self.pos, self.count, self.device = size, 0, 0, device
        self.obs, self.next_obs = np.zeros((2, size, obs_dim), dtype=np.float32)
        self.actions = np.zeros((size, action_dim), dtype=np.float32)
        self.pre_squash_actions = np.zeros((size, action_dim), dtype=np.float32)  # to relabel when the decoder changes
        self.rewards, self.terminations = np.zeros((2, size), dtype=np.float32)
        self.rng = np.random.default_rng(seed)

    def add(self, obs, next_obs, actions, rewards, terminations, pre_squash_actions):
        """Store one vector step: a batch of num_envs transitions."""
        idx = (self.pos + np.arange(len(obs))) % self.size
        self.obs[idx], self.next_obs[idx], self.actions[idx] = obs, next_obs, actions
        self.pre_squash_actions[idx] = pre_squash_actions
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


def soft_q_target(rewards, terminations, next_q_values, next_kl, alpha, gamma: float) -> torch.Tensor:
    """Soft Bellman target r + gamma (1 - terminated) (min_k Q'_k(s', eps') - alpha KL(pi(.|s') || N(0, I))), eps' ~ pi(.|s').
    Only terminations cut the bootstrap: truncated transitions bootstrap from their true last observation."""
    return rewards + gamma * (1.0 - terminations) * (next_q_values.min(0).values - alpha * next_kl)


def update_critics(qf: SoftQNetwork, qf_target: SoftQNetwork, q_optimizer, actor: Actor, batch: tuple, alpha, gamma: float):
    """One gradient step of every critic toward the soft target; returns (Q-values, per-critic MSE, summed MSE)."""
    b_obs, b_next_obs, b_actions, b_rewards, b_terminations = batch
    with torch.no_grad():
        next_actions, next_kl = actor.get_action(b_next_obs)
        next_q_values = qf_target(b_next_obs, next_actions)
        next_q_target = soft_q_target(b_rewards, b_terminations, next_q_values, next_kl, alpha, gamma)
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
    rb.add(obs, real_next_obs(next_obs, terminations, truncations, infos), actions, rewards, terminations, z)
    finished = np.flatnonzero(infos["_episode"]) if "episode" in infos else []
    for i in finished:  # the raw return and length of every episode that ended in this vector step
        writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
        writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)
    return next_obs, [float(infos["episode"]["r"][i]) for i in finished]


@torch.no_grad()
def evaluate(agent: Actor, decoder: FlowDecoder, envs: gym.vector.VectorEnv, seed: int, stochastic=False, video: str = ""):
    """Deterministic evaluation (eps = latent mean; stochastic: eps sampled): the return of the first episode of each env."""
    low, high, device = envs.single_action_space.low, envs.single_action_space.high, next(agent.parameters()).device
    obs, _ = envs.reset(seed=seed)
    for i, env in enumerate(envs.unwrapped.envs if video else []):  # the envs with a RecordVideo (--capture-video) record
        if env.has_wrapper_attr("start_recording"):  # this episode, a frame per env step; the autoreset at its end writes it
            env.get_wrapper_attr("start_recording")(f"{video}-episode-{i}")
    returns, running = np.zeros(envs.num_envs), np.ones(envs.num_envs, dtype=bool)
    while running.any():
        obs_tensor = torch.from_numpy(obs).to(device)
        z = decoder(obs_tensor, agent.get_action(obs_tensor)[0] if stochastic else agent.get_mean(obs_tensor))
        obs, reward, terminations, truncations, _ = envs.step(squash_to_bounds(z.cpu().numpy(), low, high))
        returns += reward * running
        running &= ~(terminations | truncations)
    return returns


@torch.no_grad()
def refit_report(old: tuple, new: tuple, obs: torch.Tensor, eval_envs, seed: int, draws: int = 128) -> dict:
    """How faithfully a refit hands on old = (latent policy, decoder) to new = (reset latent policy, refit decoder) on held-out
    states, in tanh(x_0): RMS deterministic action error, new over old action std per dimension, sliced W1 (16 directions),
    returns. The same noise drives both (unchanged: 0, 1, 0, equal returns); its own RNG leaves training unaffected."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        noise = torch.randn(draws, *obs.shape[:1], eval_envs.single_action_space.shape[0], device=obs.device)

        def actions(agent, decoder):
            mean, log_std = agent(obs)
            samples = decoder(obs.repeat(draws, 1), (mean + log_std.exp() * noise).flatten(0, 1))
            return torch.tanh(decoder(obs, mean)), torch.tanh(samples).view_as(noise)

        (old_mode, old_samples), (new_mode, new_samples) = actions(*old), actions(*new)
        std_ratio = new_samples.std(0).mean(0) / old_samples.std(0).mean(0).clamp(min=1e-8)
        directions = nn.functional.normalize(torch.randn(noise.shape[-1], 16, device=obs.device), dim=0)
        sorted_old, sorted_new = (torch.sort(samples @ directions, dim=0).values for samples in (old_samples, new_samples))
        report = {"deterministic_error": ((new_mode - old_mode) ** 2).mean().sqrt().item()}
        report |= {f"std_ratio_{stat}": getattr(std_ratio, stat)().item() for stat in ("min", "mean", "max")}
        report["sliced_wasserstein"] = (sorted_new - sorted_old).abs().mean().item()
        for name, policy in (("old", old), ("new", new)):
            for mode in ("deterministic", "stochastic"):
                torch.manual_seed(seed)  # the same episodes and latent draws for both policies
                report[f"{name}_return_{mode}"] = evaluate(*policy, eval_envs, seed, mode == "stochastic").mean().item()
    return report


def refit_summary(report: dict) -> str:
    return (
        "deterministic action error {deterministic_error:.3f}, action std ratio {std_ratio_min:.2f}-{std_ratio_max:.2f}, "
        "sliced W1 {sliced_wasserstein:.3f}; return before -> after: deterministic {old_return_deterministic:.1f} -> "
        "{new_return_deterministic:.1f}, stochastic {old_return_stochastic:.1f} -> {new_return_stochastic:.1f}"
    ).format(**report)


def plan_stages(total_timesteps: int, args: Args) -> tuple:
    """(vector steps of each stage, env steps of decoder data per refit) for a budget: the first half of the stages weigh
    twice the rest (the paper's 2M/1M/1M), and the decoder data of every stage but the last comes out of its share."""
    steps_per_iteration = args.num_envs * args.action_repeat  # env steps of one vector step
    data_steps = args.decoder_data_steps if args.decoder_data_steps is not None else max(1_000, total_timesteps // 20)
    decoder_data_steps = data_steps // steps_per_iteration * steps_per_iteration
    weights = np.where(np.arange(args.num_stages) < args.num_stages // 2, 2.0, 1.0)
    stage_budgets = (total_timesteps * (weights / weights.sum())).astype(int)
    stage_budgets[:-1] -= decoder_data_steps
    iterations = stage_budgets // steps_per_iteration
    stage_steps = iterations * steps_per_iteration
    if iterations.min() < 1 or stage_steps[0] <= args.learning_starts:
        stages = f"stages of {stage_steps.tolist()} env steps after {decoder_data_steps} decoder-data steps per refit"
        rule = f"every stage needs a step and stage 0 more than --learning-starts {args.learning_starts}"
        raise ValueError(f"--total-timesteps {total_timesteps} leaves {stages}: {rule}")
    return iterations, decoder_data_steps


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
POSITIVE_FLAGS += ("num_stages", "flow_steps", "decoder_epochs", "decoder_batch_size", "decoder_noise_draws")

# float flags: the interval of valid values, as the error states it (every value must be finite; None, unset, passes);
# gamma < 1, as a soft value is finite only then
FLOAT_RANGES = {"policy_lr": "(0, inf)", "q_lr": "(0, inf)", "gamma": "[0, 1)", "tau": "(0, 1]", "alpha": "[0, inf)"}
FLOAT_RANGES |= {"target_kl": "(0, inf)", "decoder_lr": "(0, inf)"}
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
    min_data_steps = max(10, args.num_envs) * args.action_repeat
    if args.num_stages > 1 and args.decoder_data_steps is not None and args.decoder_data_steps < min_data_steps:
        needed = f"{min_data_steps} (10 transitions and one per env, of --action-repeat env steps each)"
        raise ValueError(f"--decoder-data-steps must be at least {needed}, got {args.decoder_data_steps}")
    if args.decoder_data_steps is None and args.num_stages + args.num_stages // 2 >= 20:  # then a stage's share is <= 1/20
        raise ValueError(f"--num-stages {args.num_stages} must be at most 13 with default --decoder-data-steps (5% per refit)")


def save_checkpoint(path: str, args: Args, networks: dict):
    """Everything needed to act again: args (env id, architecture) and weights (the critics' too)."""
    weights = {name: network.state_dict() for name, network in networks.items()}
    torch.save({"script": os.path.basename(__file__), "args": vars(args), **weights}, path)


# flags dropped since a checkpoint may have been written, each with the behaviour the script now always has
DROPPED_FLAGS = {"normalize_obs": False, "critic_layer_norm": False}
DROPPED_FLAGS["decoder"] = "flow"  # GoRL-Diff is gorl_ppo.py's: the paper's SAC variant reports GoRL-FM only


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
    decoder = FlowDecoder(obs_dim, action_dim, saved_args.flow_steps)
    decoder.load_state_dict(checkpoint["decoder"])
    return saved_args, actor, decoder, envs


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
            saved_args, actor, decoder, eval_envs = load_checkpoint(args.eval_checkpoint, args.eval_episodes, video_folder)
            returns = evaluate(actor, decoder, eval_envs, seed=saved_args.seed + 10_000, video="checkpoint")
            stats = f"{returns.mean():.2f} +- {returns.std():.2f} over {len(returns)} episodes"
            videos = f"; videos: {video_folder}/checkpoint-episode-*.mp4" if video_folder else ""
            print(f"{saved_args.env_id}: deterministic return {stats}{videos}")
            sys.exit(0)
        args, resumed = load_training_state(args) if args.resume else (args, None)
        gym_id = resolve_env_id(args.env_id)
        steps_per_iteration = args.num_envs * args.action_repeat  # env steps of one vector step
        stage_iterations, decoder_data_steps = plan_stages(args.total_timesteps, args)
        args.decoder_data_steps, args.num_iterations = decoder_data_steps, int(stage_iterations.sum())
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
    target_kl = args.target_kl * action_dim
    a_optimizer = optim.Adam([log_alpha], lr=args.q_lr)
    with torch.random.fork_rng():  # the decoder's init leaves the RNG stream as in Gaussian SAC
        decoder = FlowDecoder(obs_dim, action_dim, args.flow_steps).to(device)
    stage, stage_ends = 0, np.cumsum(stage_iterations)

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
    LOOP_STATE += "training_seconds kl decoder stage".split()
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
            last_eval = evaluate(actor, decoder, eval_envs, seed=args.seed + 10_000, video=f"step-{global_step}").mean()
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
            if global_step < args.learning_starts:  # warm-up: eps ~ N(0, I), the prior, so stage 0 = Gaussian SAC's draws
                actions = torch.randn(args.num_envs, action_dim).to(device)
            else:
                actions, _ = actor.get_action(torch.from_numpy(obs).to(device))
            z = decoder(torch.from_numpy(obs).to(device), actions)

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
                    pi_actions, kl = actor.get_action(b_obs)
                    min_qf_pi = qf(b_obs, pi_actions, detach_params=True).min(0).values
                    actor_loss = (alpha * kl - min_qf_pi).mean()
                    # the coefficient's loss, on the same sample: alpha grows while the KL exceeds its target
                    alpha_loss = (-log_alpha.exp() * (kl.detach() - target_kl)).mean()

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
                losses |= dict(actor_loss=actor_loss, alpha=alpha, alpha_loss=alpha_loss, latent_kl=kl.mean())
                for name, value in losses.items():
                    writer.add_scalar(f"losses/{name}", value.item(), global_step)
                writer.add_scalar("charts/stage", stage, global_step)
                writer.add_scalar("charts/SPS", sps, global_step)
                q_warning = q_range_warning(q_values, rb.rewards[: rb.count], -(alpha * kl).mean().item(), args.gamma)
                writer.add_scalar("charts/q_out_of_range", float(q_warning is not None), global_step)
                if q_warning and not q_was_out_of_range:  # one line when it leaves the range, not one per log
                    print(f"warning at step {global_step:,}: {q_warning}", flush=True)
                q_was_out_of_range = q_warning is not None
                if time.time() - last_print > 5:
                    last_print = time.time()
                    recent = f"{np.mean(recent_returns):8.1f}" if recent_returns else "     n/a"
                    print(
                        f"step {global_step:>10,}/{args.total_timesteps:,} | stage {stage} | SPS {sps:5d} | episodic return "
                        f"{recent} | eval {last_eval:8.1f} (step {last_eval_step:,}) | critic loss {qf_loss.item():.3f}",
                        flush=True,
                    )
                    recent_returns = []

        if iteration in stage_ends[:-1]:
            # Decoder refinement (paper Sec. 4.2) on fresh rollouts of the composed policy, in the budget and the replay buffer
            refit_start, data = time.time(), []
            for _ in range(decoder_data_steps // steps_per_iteration):
                global_step += steps_per_iteration
                obs_tensor = torch.from_numpy(obs).to(device)
                with torch.no_grad():
                    actions, _ = actor.get_action(obs_tensor)
                    z = decoder(obs_tensor, actions)
                data.append((obs_tensor, z))
                obs, episode_returns = step_envs(envs, rb, writer, obs, z.cpu().numpy(), actions.cpu().numpy(), global_step)
                recent_returns += episode_returns
            data_obs, data_actions = map(torch.cat, zip(*data))  # the (s, pre-squash action) pairs
            old_policy = copy.deepcopy(actor), copy.deepcopy(decoder)
            # targets are pre-squash actions, clipped as in the paper's code: tanh(3) is already 0.995 of the bound
            fit = [getattr(args, f"decoder_{name}") for name in ("epochs", "batch_size", "lr", "noise_draws", "patience")]
            train_loss, val_loss, held_out = fit_decoder(decoder, data_obs, data_actions.clamp(-3.0, 3.0), *fit)
            if not np.isfinite(val_loss):
                sys.exit(f"error: decoder refit diverged (train loss {train_loss}) at step {global_step}; stopping the run")

            # Stage transition by relabelling: every stored transition keeps its pre-squash action x0 and gets the new
            # decoder's inverse at x0 as its latent (the critics and the buffer spoke the old decoder's), so no warm-up is
            # repeated; the critics are then refreshed on it (policy evaluation of the reset actor) before the next stage.
            stored_obs = torch.from_numpy(rb.obs[: rb.count]).to(device)
            stored_x0 = torch.from_numpy(rb.pre_squash_actions[: rb.count]).to(device).clamp(-3.0, 3.0)
            latents = invert_decoder(decoder, stored_obs, stored_x0)
            rb.actions[: rb.count] = latents.cpu().numpy()
            check = slice(0, rb.count, max(1, rb.count // 4096))  # round trip on ~4096 transitions: decoding gives back x0?
            with torch.no_grad():
                round_trip = (decoder(stored_obs[check], latents[check]) - stored_x0[check]).abs()

            # the next stage starts from pi_theta = N(0, I): the composed policy is the distribution just learned
            actor.reset_to_prior()
            report = refit_report(old_policy, (actor, decoder), data_obs[held_out[:1024]], eval_envs, args.seed + 10_000)
            losses = dict(decoder_train=train_loss, decoder_val=val_loss, relabel_error=round_trip.mean().item())
            for prefix, scalars in (("losses", losses), ("refit", report)):
                for name, value in scalars.items():
                    writer.add_scalar(f"{prefix}/{name}", value, global_step)
            actor_optimizer = optim.Adam(actor.parameters(), lr=args.policy_lr, fused=True)
            for _ in range(args.critic_refresh_steps):
                batch = rb.sample(args.batch_size)
                q_values, qf_losses, qf_loss = update_critics(qf, qf_target, q_optimizer, actor, batch, alpha, args.gamma)
                soft_update(q_target_params, q_params, args.tau)
            print(
                f"stage {stage} done: decoder refit on {len(data_obs):,} (s, a) pairs, train loss {train_loss:.4f}, val loss "
                f"{val_loss:.4f}; {rb.count:,} transitions relabelled (round-trip error mean {round_trip.mean():.4f}, max "
                f"{round_trip.max():.4f}), {args.critic_refresh_steps:,} critic refreshes, {time.time() - refit_start:.0f} s"
            )
            print(f"refit check: {refit_summary(report)}", flush=True)
            stage += 1

    training_seconds = time.time() - start_time
    writer.add_scalar("charts/SPS", int(global_step / training_seconds), global_step)
    last_eval = evaluate(actor, decoder, eval_envs, seed=args.seed + 10_000, video=f"step-{global_step}").mean()
    writer.add_scalar("eval/episodic_return", last_eval, global_step)
    log_video(writer, video_folder, global_step, args.track)
    print(f"final deterministic eval return {last_eval:.2f} after {global_step:,} steps, {training_seconds:.0f} s of training")
    if args.save_model:
        model_path = f"{run_dir}/{args.exp_name}.pt"
        save_checkpoint(model_path, args, {"actor": actor, "qf": qf, "decoder": decoder})
        print(f"model saved; evaluate it with: python {os.path.basename(__file__)} --eval-checkpoint {model_path}")
    if os.path.exists(f"{run_dir}/training_state.pt"):  # the run is complete: nothing is left to resume
        os.remove(f"{run_dir}/training_state.pt")

    envs.close()
    eval_envs.close()
    writer.close()

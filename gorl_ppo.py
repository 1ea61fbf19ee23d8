# docs and experiment results: README.md
"""GoRL-PPO: generative online RL (Zhang et al., arXiv 2512.02581) with a PPO latent optimiser, in CleanRL style.

The policy (paper Sec. 4) is a latent Gaussian pi_theta(z|s) and a generative decoder g_phi(s, z) (flow matching, or
diffusion: GoRL-Diff) of z into the pre-squash action x_0; the env action is rescale(tanh(x_0)). In each stage PPO trains
the latent policy, pulled toward the N(0, I) prior, with the decoder frozen; then the decoder is refit on fresh rollouts
to map the FIXED prior to the policy's actions, and the latent policy restarts at N(0, I). Stage 0 is Gaussian PPO.
The defaults are the paper's PPO settings with CleanRL's networks; `paper` or `cleanrl` as the first argument name others.
`diff gaussian_ppo.py gorl_ppo.py` shows what GoRL adds.
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
from dataclasses import dataclass, replace
from typing import Literal, Optional

os.environ.setdefault("MUJOCO_GL", "egl")  # dm_control renders headless; without it it warns about a missing DISPLAY

import cloudpickle
import gymnasium as gym
import mujoco
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import tyro
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from torch.distributions.normal import Normal
from torch.utils.tensorboard import SummaryWriter


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment: same seed, same machine, same result"""
    torch_threads: int = 1
    """CPU threads for torch; one is fastest for these small networks and lets a sweep run one job per core"""
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
    """save a checkpoint (weights, observation statistics, args) to runs/{run_name}/{exp_name}.pt"""
    eval_checkpoint: Optional[str] = None
    """path of a saved checkpoint: evaluate it deterministically for --eval-episodes episodes instead of training"""
    checkpoint_every: int = 0
    """env steps between training-state checkpoints (0: none); with them on, Ctrl-C, SIGTERM and SIGUSR1 save one and stop"""
    resume: Optional[str] = None
    """a training-state checkpoint (runs/{run_name}/training_state.pt): continue that run exactly, with its own flags"""

    # Algorithm specific arguments
    env_id: str = "HopperStand"
    """a DM Control task as the paper names it (HopperStand, ...), or a gymnasium Box-action id (Hopper-v5, module:Env-v0)"""
    total_timesteps: int = 10_000_000
    """total environment steps of training"""
    learning_rate: float = 1e-3
    """the learning rate of the Adam optimizer"""
    # the paper's PPO (MuJoCo Playground's Brax PPO for DM Control: ../shared/paper-notes.md) takes 16 epochs of 32
    # minibatches of 30,720 transitions per 983,040 steps of 2048 envs; 32 CPU envs keep the minibatch size and the gradient
    # steps per env step: a 32 x 960 rollout is one minibatch, 16 epochs of it
    num_envs: int = 32
    """the number of parallel environments (stepped in one process unless --async-envs)"""
    async_envs: bool = False
    """step the environments in subprocesses (gains nothing on 2 cores, helps on a workstation)"""
    num_steps: int = 960
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = False
    """anneal the learning rate linearly to zero"""
    gamma: float = 0.995
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 1
    """the number of mini-batches"""
    update_epochs: int = 16
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """advantages normalization"""
    clip_coef: float = 0.15
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """use a clipped loss for the value function, as per the paper"""
    ent_coef: float = 0.01
    """coefficient of the entropy bonus"""
    vf_coef: float = 0.25
    """coefficient of the value function loss"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: Optional[float] = None
    """the target KL divergence threshold (early stop of the epochs)"""
    actor_hidden: tuple[int, ...] = (64, 64)
    """hidden layer widths of the policy network (CleanRL's; `paper`: 4 x 32)"""
    critic_hidden: tuple[int, ...] = (64, 64)
    """hidden layer widths of the value network (CleanRL's; `paper`: 5 x 256)"""
    activation: Literal["tanh", "silu"] = "tanh"
    """activation of both networks' hidden layers"""
    eval_every: int = 250_000
    """environment steps between deterministic evaluations (mean action)"""
    eval_episodes: int = 10
    """episodes per deterministic evaluation (run in parallel envs)"""

    # to be filled in runtime
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    minibatch_size: int = 0
    """the mini-batch size (computed in runtime)"""
    num_iterations: int = 0
    """the number of iterations (computed in runtime)"""

    # GoRL arguments
    num_stages: int = 4
    """stages of latent-policy training; the budget splits like the paper's 60M/60M/30M/30M (1/3, 1/3, 1/6, 1/6)"""
    latent_kl_coef: float = 1e-3
    """coefficient of KL(pi_theta(.|s) || N(0, I)), which keeps z where the decoder was trained"""
    decoder: Literal["flow", "diffusion"] = "flow"
    """the generative decoder: flow matching (GoRL-FM) or diffusion sampled by DDIM (GoRL-Diff)"""
    flow_steps: int = 10
    """sampling steps of the decoder from t=1 (x=z) to t=0 (x=pre-squash action)"""
    decoder_data_fraction: float = 0.01
    """share of --total-timesteps spent on fresh rollouts to refit the decoder at each stage end (counted in the budget)"""
    decoder_epochs: int = 50
    """maximum epochs of each decoder refit"""
    decoder_batch_size: int = 1024
    """minibatch size of the decoder refit (the paper's 8192 and 3e-4 suit its 100x larger refit data sets)"""
    decoder_lr: float = 1e-3
    """learning rate of the decoder refit"""
    decoder_noise_draws: int = 8
    """(eps, t) draws per (s, a) pair in the flow-matching loss"""
    decoder_patience: int = 10
    """stop a decoder refit after this many epochs without a better validation loss"""
    later_clip_coef: Optional[float] = 0.3
    """surrogate clipping coefficient of the stages after the first (the paper's code: 0.3 after 0.15); None: --clip-coef"""
    later_max_grad_norm: Optional[float] = 1.0
    """gradient-norm clip of the stages after the first (the paper's code: 1.0, against 0.5); None: --max-grad-norm"""
    fresh_decoder: bool = True
    """refit a freshly initialised decoder at each stage end (both official releases) instead of warm-starting it"""


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


def make_env(env_id: str, seed: int, video_folder: Optional[str] = None):
    def thunk():
        env = recorded_env(env_id, video_folder) if video_folder else gym.make(env_id)
        if isinstance(env.observation_space, gym.spaces.Dict):  # dm_control observations: a Dict of float64 arrays
            env = gym.wrappers.FlattenObservation(env)
        space = env.observation_space
        if space.dtype != np.float32:  # cast bounds first: a float64 Box cast by gymnasium warns about precision
            float32_space = gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32)
            env = gym.wrappers.TransformObservation(env, lambda obs: obs.astype(np.float32), float32_space)
        env.action_space.seed(seed)
        return env

    return thunk


def make_vector_env(env_id: str, num_envs: int, seed: int, asynchronous: bool = False, video_folder=None, videos=1):
    """num_envs copies of env_id, recording raw episode returns; the first `videos` can record video."""
    env_fns = [make_env(env_id, seed + i, video_folder if i < videos else None) for i in range(num_envs)]
    vector_env_class = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
    # SAME_STEP autoreset: a finished env resets within the step; its true last observation is in infos["final_obs"]
    envs = vector_env_class(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Box) or not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        envs.close()
        raise ValueError(f"{env_id} has action space {space}; valid: a gymnasium Box with finite bounds (e.g. HopperStand)")
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def squash_to_bounds(z: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Env action rescale(tanh(z)): maps the pre-squash action onto [low, high], which need not be symmetric."""
    return low + 0.5 * (np.tanh(z) + 1.0) * (high - low)


class RunningMeanStd(nn.Module):
    """Running mean and variance of observations, kept as buffers so that they are saved with the model."""

    def __init__(self, shape: int, clip: float = 10.0):
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor):
        """Merge the statistics of a batch (parallel algorithm of Chan et al.)."""
        batch_mean, batch_var, batch_count = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * (batch_count / total).float()
        m2 = self.var * self.count.float() + batch_var * batch_count + delta**2 * (self.count * batch_count / total).float()
        self.var.copy_(m2 / total.float())
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + 1e-8), -self.clip, self.clip)


def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class FlowDecoder(nn.Module):
    """Conditional flow-matching decoder g_phi(s, z) (paper Sec. 4.2): a velocity field v(s, x_t, t) integrated from t=1
    (x = z) to t=0 (the pre-squash action) by the midpoint rule (Euler's narrow a refit: benchmark/integrator_check.py)."""

    def __init__(self, obs_dim: int, action_dim: int, flow_steps: int, hidden: int = 64, time_dim: int = 8):
        super().__init__()
        self.flow_steps, self.obs_rms = flow_steps, RunningMeanStd(obs_dim)
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


class DiffusionDecoder(FlowDecoder):
    """GoRL-Diff's decoder: deterministic DDIM from x = z at t = 1 to the pre-squash action at t = 0, alpha_bar on improved
    DDPM's cosine schedule from 0.024 at t = 1 (the first release's: benchmark/results/diffusion_schedule.md) to 1 at t = 0.
    DDIM's step x_{k+1} = r_k x_k + c_k eps_hat, r_k = sqrt(ab_{k+1} / ab_k), c_k = sqrt(1 - ab_{k+1}) - r_k sqrt(1 - ab_k),
    is x_k + c_k delta for the delta = eps_hat + (r_k - 1) x_k / c_k that the network predicts: a zero output is a = z."""

    def __init__(self, obs_dim: int, action_dim: int, flow_steps: int, hidden: int = 64, time_dim: int = 8):
        super().__init__(obs_dim, action_dim, flow_steps, hidden, time_dim)
        t = 1.0 - torch.arange(flow_steps, dtype=torch.float64) / flow_steps

        def cosine(t):  # alpha_bar at noise level tau = 0.9 t: 1 at t = 0, 0.024 at t = 1
            return (torch.cos((0.9 * t + 0.008) / 1.008 * torch.pi / 2) / np.cos(0.008 / 1.008 * np.pi / 2)) ** 2

        alpha_bar, alpha_bar_next = cosine(t), cosine((t - 1.0 / flow_steps).clamp(min=0.0))
        r = torch.sqrt(alpha_bar_next / alpha_bar)
        c = torch.sqrt((1 - alpha_bar_next).clamp(min=0.0)) - r * torch.sqrt(1 - alpha_bar)
        self.step_sizes = c.float()
        self.register_buffer("alpha_bars", alpha_bar.float(), persistent=False)
        self.register_buffer("drifts", ((r - 1) / c).float(), persistent=False)

    def step(self, obs_normalized: torch.Tensor, x: torch.Tensor, t: float, step_size: float) -> torch.Tensor:
        """DDIM's step from t to t - 1 / flow_steps, in the epsilon-delta form (step_size = c_k)."""
        return x + step_size * self.velocity_at(obs_normalized, x, torch.full_like(x[:, :1], t))

    def loss(self, obs, actions, eps, t) -> torch.Tensor:
        """DDPM's noise prediction (as delta) at the step k that t ~ U(0, 1) picks: x_k = sqrt(ab_k) a + sqrt(1 - ab_k) eps."""
        k = (t.squeeze(-1) * self.flow_steps).long().clamp(max=self.flow_steps - 1)
        alpha_bar = self.alpha_bars[k].unsqueeze(-1)
        x_k = alpha_bar.sqrt() * actions + (1 - alpha_bar).sqrt() * eps
        target = eps + self.drifts[k].unsqueeze(-1) * x_k
        return ((self.velocity_at(self.obs_rms(obs), x_k, self.step_times[k].unsqueeze(-1)) - target) ** 2).mean()


DECODERS = {"flow": FlowDecoder, "diffusion": DiffusionDecoder}


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


def mlp(in_dim: int, hidden: tuple, out_dim: int, activation: str, out_std: float) -> nn.Sequential:
    """Orthogonally initialised MLP (CleanRL's layer_init), out_std scaling its output layer."""
    layers = []
    for width in hidden:
        layers += [layer_init(nn.Linear(in_dim, width)), nn.Tanh() if activation == "tanh" else nn.SiLU()]
        in_dim = width
    return nn.Sequential(*layers, layer_init(nn.Linear(in_dim, out_dim), std=out_std))


class Agent(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, actor_hidden=(64, 64), critic_hidden=(64, 64), activation="tanh"):
        super().__init__()
        self.obs_rms = RunningMeanStd(obs_dim)
        self.critic = mlp(obs_dim, critic_hidden, 1, activation, out_std=1.0)
        self.actor_mean = mlp(obs_dim, actor_hidden, action_dim, activation, out_std=0.01)
        self.actor_logstd = nn.Parameter(torch.zeros(1, action_dim))  # state-independent, as CleanRL's (Brax: softplus head)

    def reset_to_prior(self):
        """Make pi_theta(z|s) exactly N(0, I) for every s, so the composed policy starts the stage as the decoder's fit."""
        for param in (self.actor_mean[-1].weight, self.actor_mean[-1].bias, self.actor_logstd):
            nn.init.zeros_(param)

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.obs_rms(obs))

    def get_mean(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor_mean(self.obs_rms(obs))

    def get_action_and_value(self, obs: torch.Tensor, z: Optional[torch.Tensor] = None):
        x = self.obs_rms(obs)
        mean = self.actor_mean(x)
        probs = Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if z is None:
            z = probs.sample()
        # KL(pi_theta(.|s) || N(0, I)) = 0.5 (mean^2 + std^2 - 1) - log std per dimension, summed
        kl = (0.5 * (mean**2 + torch.exp(2 * self.actor_logstd) - 1) - self.actor_logstd).sum(-1)
        return z, probs.log_prob(z).sum(1), probs.entropy().sum(1), self.critic(x), kl


def compute_gae(rewards, values, episode_ends, next_value, gamma: float, gae_lambda: float) -> torch.Tensor:
    """Generalised advantage estimates of a (num_steps, num_envs) rollout; episode_ends[t] = 1 cuts the bootstrap from the
    NEXT episode's first state (a truncated step's reward already holds gamma * V(final observation))."""
    advantages = torch.zeros_like(rewards)
    lastgaelam = 0.0
    for t in reversed(range(rewards.shape[0])):
        nextvalues = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        nonterminal = 1.0 - episode_ends[t]
        delta = rewards[t] + gamma * nextvalues * nonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * nonterminal * lastgaelam
    return advantages


@torch.no_grad()
def evaluate(agent: Agent, decoder: FlowDecoder, envs: gym.vector.VectorEnv, seed: int, stochastic=False, video: str = ""):
    """Deterministic evaluation (z = latent mean; stochastic: z sampled): the return of the first episode of each env."""
    low, high, device = envs.single_action_space.low, envs.single_action_space.high, next(agent.parameters()).device
    obs, _ = envs.reset(seed=seed)
    for i, env in enumerate(envs.unwrapped.envs if video else []):  # the envs with a RecordVideo (--capture-video) record
        if env.has_wrapper_attr("start_recording"):  # this episode, a frame per env step; the autoreset at its end writes it
            env.get_wrapper_attr("start_recording")(f"{video}-episode-{i}")
    returns, running = np.zeros(envs.num_envs), np.ones(envs.num_envs, dtype=bool)
    while running.any():
        obs_tensor = torch.from_numpy(obs).to(device)
        action = decoder(obs_tensor, agent.get_action_and_value(obs_tensor)[0] if stochastic else agent.get_mean(obs_tensor))
        obs, reward, terminations, truncations, _ = envs.step(squash_to_bounds(action.cpu().numpy(), low, high))
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
            mean = agent.get_mean(obs)
            samples = decoder(obs.repeat(draws, 1), (mean + agent.actor_logstd.exp() * noise).flatten(0, 1))
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


def decoder_data_envs(data_steps: int, longest_episode: int, num_envs: int) -> int:
    """How many envs collect a refit's data, each from reset: as many as can each run a whole episode (the longest seen in
    training; one while none has ended), at most num_envs, and a divisor of data_steps so that the budget stays exact."""
    most = min(num_envs, data_steps // longest_episode) if longest_episode else 1
    return max(count for count in range(1, max(most, 1) + 1) if data_steps % count == 0)


@torch.no_grad()
def collect_decoder_data(agent: Agent, decoder: FlowDecoder, envs: gym.vector.VectorEnv, steps_per_env: int, seed: int):
    """Fresh rollouts of the composed policy from reset: (obs, pre-squash actions, returns of the episodes that ended).
    From reset: DM Control's episodes all last 1000 steps, so the training envs, in lockstep, would show one window of it."""
    low, high, device = envs.single_action_space.low, envs.single_action_space.high, next(agent.parameters()).device
    obs, _ = envs.reset(seed=seed)
    data_obs, data_actions, returns = [], [], []
    for _ in range(steps_per_env):
        obs_tensor = torch.from_numpy(obs).to(device)
        action = decoder(obs_tensor, agent.get_action_and_value(obs_tensor)[0])
        data_obs.append(obs_tensor)
        data_actions.append(action)
        obs, _, _, _, infos = envs.step(squash_to_bounds(action.cpu().numpy(), low, high))
        returns += infos["episode"]["r"][infos["_episode"]].tolist() if "episode" in infos else []
    return torch.cat(data_obs), torch.cat(data_actions), returns


def plan_stages(total_timesteps: int, args: Args) -> tuple:
    """(PPO iterations of each stage, env steps of decoder data per refit) for a budget: the first half of the stages weigh
    twice the rest (paper: 60M/60M/30M/30M), and each refit's data comes out of its stage's share."""
    decoder_data_steps = max(10, int(args.decoder_data_fraction * total_timesteps) // args.num_envs) * args.num_envs
    weights = np.where(np.arange(args.num_stages) < args.num_stages // 2, 2.0, 1.0)
    stage_budgets = (total_timesteps * (weights / weights.sum())).astype(int)
    stage_budgets[:-1] -= decoder_data_steps
    return stage_budgets // (args.num_envs * args.num_steps), decoder_data_steps


def min_total_timesteps(args: Args) -> int:
    """The smallest budget that gives every stage at least one PPO iteration (for the error message)."""
    low, high = 0, args.num_envs * args.num_steps
    while plan_stages(high, args)[0].min() < 1:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if plan_stages(middle, args)[0].min() >= 1 else (middle, high)
    return high


def log_video(writer: SummaryWriter, video_folder: Optional[str], global_step: int, track: bool):
    """--capture-video: log the path of the episode evaluate() recorded at global_step; --track: the video itself to W&B."""
    if video_folder:
        path = f"{video_folder}/step-{global_step}-episode-0.mp4"
        writer.add_text("eval/video", path, global_step)
        if track:
            import wandb  # imported by --track

            wandb.log({"eval/video": wandb.Video(path)})


POSITIVE_FLAGS = ("num_envs", "num_steps", "num_minibatches", "update_epochs", "eval_every", "eval_episodes", "torch_threads")
POSITIVE_FLAGS += ("num_stages", "flow_steps", "decoder_epochs", "decoder_batch_size", "decoder_noise_draws")

# float flags: the interval of valid values, as the error states it (every value must be finite; None, unset, passes)
FLOAT_RANGES = {"learning_rate": "(0, inf)", "gamma": "[0, 1]", "gae_lambda": "[0, 1]", "clip_coef": "(0, inf)"}
FLOAT_RANGES |= {"ent_coef": "[0, inf)", "vf_coef": "[0, inf)", "max_grad_norm": "(0, inf)", "target_kl": "(0, inf)"}
FLOAT_RANGES |= {"later_clip_coef": "(0, inf)", "later_max_grad_norm": "(0, inf)", "latent_kl_coef": "[0, inf)"}
FLOAT_RANGES |= {"decoder_lr": "(0, inf)"}
INTERVALS = {"(0, inf)": lambda x: 0 < x, "[0, inf)": lambda x: 0 <= x, "[0, 1]": lambda x: 0 <= x <= 1}


def check_args(args: Args):
    """One-line errors for flag values that no run can use (the budget is checked once the batch size is known)."""
    for name in POSITIVE_FLAGS:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name, interval in FLOAT_RANGES.items():
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and INTERVALS[interval](value)):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number in {interval}, got {value}")
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be 0 (no checkpoints) or a count of env steps, got {args.checkpoint_every}")
    if args.checkpoint_every and args.async_envs:
        raise ValueError("--checkpoint-every pickles the envs mid-episode, which needs them in-process: drop --async-envs")
    if (args.num_envs * args.num_steps) % args.num_minibatches:
        raise ValueError(f"--num-minibatches {args.num_minibatches} must divide --num-envs x --num-steps, the rollout batch")
    shortest = 1 / (args.num_stages + args.num_stages // 2)  # each refit's data comes out of a stage's share of the budget
    if args.num_stages > 1 and not 0 <= args.decoder_data_fraction < shortest:
        stages = f"[0, {shortest:.3f}), the shortest stage's share of the budget with {args.num_stages} stages"
        raise ValueError(f"--decoder-data-fraction {args.decoder_data_fraction} must be in {stages}")


# The defaults are the paper's PPO settings with CleanRL's tanh 64 x 64 networks: faster to 800 on WalkerWalk (21 and 34
# training minutes, Gaussian and GoRL) than `paper` with the paper's networks (~69 and 45); CleanRL's own defaults,
# `cleanrl`, never got there in 10M steps (benchmark/results/ppo_defaults.md)
PAPER = replace(Args(), activation="silu", actor_hidden=(32, 32, 32, 32), critic_hidden=(256, 256, 256, 256, 256))
CLEANRL = replace(Args(), learning_rate=3e-4, anneal_lr=True, num_steps=64, num_minibatches=4, update_epochs=10, gamma=0.99)
CLEANRL = replace(CLEANRL, ent_coef=0.0, vf_coef=0.5)
CLEANRL = replace(CLEANRL, clip_coef=0.2, fresh_decoder=False)  # and GoRL as it ran then: stage 0 clipped at 0.2, warm refits
CONFIGS = {"defaults": Args(), "paper": PAPER, "cleanrl": CLEANRL}  # the configurations that the first argument may name


def parse_args() -> Args:
    """The flags on top of the configuration named as the first argument (CONFIGS), or of the defaults."""
    named = [arg for arg in sys.argv[1:2] if arg in CONFIGS]
    config, prog = (named or ["defaults"])[0], " ".join([os.path.basename(sys.argv[0]), *named])
    description = f"runs the {config} configuration; name one first: paper (the paper's settings and networks) or cleanrl"
    return tyro.cli(Args, default=CONFIGS[config], args=sys.argv[1 + len(named) :], prog=prog, description=description)


def save_checkpoint(path: str, args: Args, networks: dict):
    """Everything needed to act again: args (env id, architecture), weights and observation statistics."""
    weights = {name: network.state_dict() for name, network in networks.items()}
    torch.save({"script": os.path.basename(__file__), "args": vars(args), **weights}, path)


# flags dropped since a checkpoint may have been written, each with the behaviour the script now always has
DROPPED_FLAGS = {"reset_critic": False, "stage_lr_restart": True, "decoder_data_policy": "best"}


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
    envs = make_vector_env(env_id, num_episodes, seed, False, video_folder, num_episodes)
    obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    agent = Agent(obs_dim, action_dim, saved_args.actor_hidden, saved_args.critic_hidden, saved_args.activation)
    agent.load_state_dict(checkpoint["agent"])
    decoder = DECODERS[saved_args.decoder](obs_dim, action_dim, saved_args.flow_steps)
    decoder.load_state_dict(checkpoint["decoder"])
    return saved_args, agent, decoder, envs


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
    # the flags given on top of the configuration named first (`cleanrl --resume X` names no flag)
    differing = (
        [n for n in vars(args) if n != "resume" and getattr(args, n) != getattr(base, n)] for base in CONFIGS.values()
    )
    given = [f"--{name.replace('_', '-')}" for name in min(differing, key=len)]
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
    args = parse_args()
    try:
        check_args(args)
        if args.eval_checkpoint:  # --capture-video: every episode, to videos/{the checkpoint's run name}/
            torch.set_num_threads(args.torch_threads)  # as training does: more threads only spin on these small nets
            video_folder = f"videos/{os.path.abspath(args.eval_checkpoint).split(os.sep)[-2]}" if args.capture_video else None
            saved_args, agent, decoder, eval_envs = load_checkpoint(args.eval_checkpoint, args.eval_episodes, video_folder)
            returns = evaluate(agent, decoder, eval_envs, seed=saved_args.seed + 10_000, video="checkpoint")
            stats = f"{returns.mean():.2f} +- {returns.std():.2f} over {len(returns)} episodes"
            videos = f"; videos: {video_folder}/checkpoint-episode-*.mp4" if video_folder else ""
            print(f"{saved_args.env_id}: deterministic return {stats}{videos}")
            sys.exit(0)
        args, resumed = load_training_state(args) if args.resume else (args, None)
        gym_id = resolve_env_id(args.env_id)
        args.batch_size = int(args.num_envs * args.num_steps)
        args.minibatch_size = int(args.batch_size // args.num_minibatches)
        stage_iterations, decoder_data_steps = plan_stages(args.total_timesteps, args)
        args.num_iterations = int(stage_iterations.sum())
        if stage_iterations.min() < 1:  # each stage needs a rollout batch beside its refit's decoder data
            needed = f"{min_total_timesteps(args)}, a rollout batch ({args.batch_size}) for each of {args.num_stages} stages"
            raise ValueError(f"--total-timesteps {args.total_timesteps} must be at least {needed}")
        planned_steps = args.num_iterations * args.batch_size + (args.num_stages - 1) * decoder_data_steps
        envs = make_vector_env(gym_id, args.num_envs, args.seed, args.async_envs)
        run_name = resumed["run_name"] if resumed else f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
        video_folder = f"videos/{run_name}" if args.capture_video else None
        eval_envs = make_vector_env(gym_id, args.eval_episodes, args.seed + 10_000, False, video_folder)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    if planned_steps < args.total_timesteps:
        print(f"note: {planned_steps:,} of the {args.total_timesteps:,} --total-timesteps run (whole rollout batches)")
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
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    torch.use_deterministic_algorithms(device.type == "cpu")  # on a GPU some kernels have no deterministic version

    # rewards scaled by a running estimate of the discounted return's std as in CleanRL (Brax: x10); episode statistics raw
    envs = gym.wrappers.vector.NormalizeReward(envs, gamma=args.gamma)
    obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    low, high = envs.single_action_space.low, envs.single_action_space.high

    agent = Agent(obs_dim, action_dim, args.actor_hidden, args.critic_hidden, args.activation).to(device)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    clip_coef, max_grad_norm = args.clip_coef, args.max_grad_norm
    with torch.random.fork_rng():  # the decoder's init leaves the RNG stream as in Gaussian PPO: stage 0 is identical
        decoder = DECODERS[args.decoder](obs_dim, action_dim, args.flow_steps).to(device)
    stage, stage_ends, stage_best_eval, stage_best_state = 0, np.cumsum(stage_iterations), -np.inf, None

    # ALGO Logic: Storage setup
    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim), device=device)
    zs = torch.zeros((args.num_steps, args.num_envs, action_dim), device=device)
    logprobs, rewards, episode_ends, values = torch.zeros((4, args.num_steps, args.num_envs), device=device)

    # TRY NOT TO MODIFY: start the game
    global_step = next_eval = 0
    last_eval, last_eval_step, recent_returns = float("nan"), 0, []
    longest_episode = 0
    next_checkpoint, start_iteration, training_seconds = args.checkpoint_every, 1, 0.0
    next_obs, _ = envs.reset(seed=args.seed)
    # the training state: every variable of the loop that outlives an iteration (--checkpoint-every, --resume)
    LOOP_STATE = "agent optimizer envs next_obs global_step next_eval last_eval last_eval_step recent_returns".split()
    LOOP_STATE += "next_checkpoint start_iteration training_seconds".split()
    LOOP_STATE += "decoder stage clip_coef max_grad_norm stage_best_eval stage_best_state longest_episode".split()
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
            last_eval = evaluate(agent, decoder, eval_envs, seed=args.seed + 10_000, video=f"step-{global_step}").mean()
            last_eval_step = global_step
            writer.add_scalar("eval/episodic_return", last_eval, global_step)
            log_video(writer, video_folder, global_step, args.track)
            if last_eval > stage_best_eval:  # the stage's best policy collects the refit data (the paper's pipeline)
                stage_best_eval, stage_best_state = last_eval, copy.deepcopy(agent.state_dict())
            next_eval += args.eval_every
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

        # Annealing the rate if instructed to do so.
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            if stage > 0:  # a later stage restarts at --learning-rate with its fresh Adam and anneals within itself
                frac = 1.0 - (iteration - 1.0 - stage_ends[stage - 1]) / stage_iterations[stage]
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = torch.from_numpy(next_obs).to(device)

            # ALGO LOGIC: action logic
            with torch.no_grad():
                z, logprob, _, value, _ = agent.get_action_and_value(obs[step])
                action = decoder(obs[step], z)
            zs[step], logprobs[step], values[step] = z, logprob, value.flatten()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, reward, terminations, truncations, infos = envs.step(squash_to_bounds(action.cpu().numpy(), low, high))
            truncated_only = truncations & ~terminations
            if truncated_only.any():  # a time limit is not a terminal state: bootstrap from the true last observation
                final_obs = torch.from_numpy(np.stack(infos["final_obs"][truncated_only])).to(device)
                with torch.no_grad():
                    reward[truncated_only] += args.gamma * agent.get_value(final_obs).flatten().cpu().numpy()
            rewards[step] = torch.from_numpy(reward).to(device)
            episode_ends[step] = torch.from_numpy(terminations | truncations).to(device)
            for i in np.flatnonzero(infos["_episode"]) if "episode" in infos else []:  # ended episodes: raw return, length
                writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
                writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)
                recent_returns.append(float(infos["episode"]["r"][i]))
                longest_episode = max(longest_episode, int(infos["episode"]["l"][i]))  # sizes the decoder data collection

        # bootstrap value if not done
        with torch.no_grad():
            next_value = agent.get_value(torch.from_numpy(next_obs).to(device)).flatten()
        advantages = compute_gae(rewards, values, episode_ends, next_value, args.gamma, args.gae_lambda)
        returns = advantages + values

        # flatten the batch
        b_obs = obs.reshape((-1, obs_dim))
        b_logprobs = logprobs.reshape(-1)
        b_zs = zs.reshape((-1, action_dim))
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        # Optimizing the policy and value network
        clipfracs = []
        for epoch in range(args.update_epochs):
            b_inds = torch.randperm(args.batch_size)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = b_inds[start : start + args.minibatch_size]

                _, newlogprob, entropy, newvalue, kl = agent.get_action_and_value(b_obs[mb_inds], b_zs[mb_inds])
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()

                with torch.no_grad():
                    # calculate approx_kl http://joschu.net/blog/kl-approx.html
                    old_approx_kl = (-logratio).mean()
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs += [((ratio - 1.0).abs() > clip_coef).float().mean().item()]

                mb_advantages = b_advantages[mb_inds]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

                # Policy loss
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # Value loss
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                    v_clipped = b_values[mb_inds] + torch.clamp(newvalue - b_values[mb_inds], -clip_coef, clip_coef)
                    v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                    v_loss_max = torch.max(v_loss_unclipped, v_loss_clipped)
                    v_loss = 0.5 * v_loss_max.mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

                entropy_loss = entropy.mean()
                kl_loss = kl.mean()  # pull toward the prior the decoder was trained on
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef + args.latent_kl_coef * kl_loss

                if not torch.isfinite(loss):  # stop before a NaN reaches the weights
                    sys.exit(f"error: non-finite loss ({loss:g}) at step {global_step}")
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
                optimizer.step()

            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        # the policy acts with the statistics it was trained with; new observations enter after the update
        agent.obs_rms.update(b_obs)

        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        sps = int(global_step / (time.time() - start_time))
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        losses = dict(value_loss=v_loss, policy_loss=pg_loss, entropy=entropy_loss, old_approx_kl=old_approx_kl)
        losses |= dict(approx_kl=approx_kl, clipfrac=np.mean(clipfracs), explained_variance=explained_var)
        losses["latent_kl"] = kl_loss
        for name, value in losses.items():
            writer.add_scalar(f"losses/{name}", value, global_step)
        writer.add_scalar("charts/stage", stage, global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        if time.time() - last_print > 5 or iteration == args.num_iterations:
            last_print = time.time()
            recent = f"{np.mean(recent_returns):8.1f}" if recent_returns else "     n/a"
            print(
                f"step {global_step:>10,}/{planned_steps:,} | stage {stage} | SPS {sps:5d} | episodic return {recent} | "
                f"eval {last_eval:8.1f} (step {last_eval_step:,}) | value loss {v_loss.item():.3g}",
                flush=True,
            )
            recent_returns = []

        if iteration in stage_ends[:-1]:
            # Decoder refinement (paper Sec. 4.2): fresh rollouts of the composed policy, counted in the budget
            refit_start, data_seed = time.time(), args.seed + 20_000 + 1_000 * stage
            if stage_best_state is not None:  # the stage's best-evaluated policy collects the data and goes on
                agent.load_state_dict(stage_best_state)
                print(f"stage {stage}: the policy evaluated at {stage_best_eval:.1f} collects the decoder data", flush=True)
            num_data_envs = decoder_data_envs(decoder_data_steps, longest_episode, args.num_envs)
            steps_per_env, data_envs = decoder_data_steps // num_data_envs, make_vector_env(gym_id, num_data_envs, data_seed)
            data_obs, data_actions, data_returns = collect_decoder_data(agent, decoder, data_envs, steps_per_env, data_seed)
            data_envs.close()
            global_step += decoder_data_steps
            recent_returns += data_returns
            old_policy = copy.deepcopy(agent), copy.deepcopy(decoder)
            if args.fresh_decoder:  # only now: the data above must come from the composed policy, old decoder included
                decoder = DECODERS[args.decoder](obs_dim, action_dim, args.flow_steps).to(device)
            # targets are pre-squash actions, clipped as in the paper's code: tanh(3) is already 0.995 of the bound
            fit = [getattr(args, f"decoder_{name}") for name in ("epochs", "batch_size", "lr", "noise_draws", "patience")]
            train_loss, val_loss, held_out = fit_decoder(decoder, data_obs, data_actions.clamp(-3.0, 3.0), *fit)
            if not np.isfinite(val_loss):
                sys.exit(f"error: decoder refit diverged (train loss {train_loss}) at step {global_step}; stopping the run")
            # the next stage starts from pi_theta = N(0, I): the composed policy is the distribution just learned, so the
            # critic, which was evaluating that policy, stays (re-initialising it measured worse: ppo_stage_lr.md)
            agent.reset_to_prior()
            report = refit_report(old_policy, (agent, decoder), data_obs[held_out[:1024]], eval_envs, args.seed + 10_000)
            for prefix, scalars in (("losses", dict(decoder_train=train_loss, decoder_val=val_loss)), ("refit", report)):
                for name, value in scalars.items():
                    writer.add_scalar(f"{prefix}/{name}", value, global_step)
            pairs = f"{len(data_obs):,} (s, a) pairs ({num_data_envs} x {steps_per_env} env steps from reset)"
            fit_losses = f"train loss {train_loss:.4f}, val loss {val_loss:.4f}, {time.time() - refit_start:.0f} s"
            print(f"stage {stage} done: decoder refit on {pairs}, {fit_losses}")
            print(f"refit check: {refit_summary(report)}", flush=True)
            optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
            clip_coef, max_grad_norm = args.later_clip_coef or args.clip_coef, args.later_max_grad_norm or args.max_grad_norm
            stage, stage_best_eval, stage_best_state = stage + 1, -np.inf, None

    training_seconds = time.time() - start_time
    last_eval = evaluate(agent, decoder, eval_envs, seed=args.seed + 10_000, video=f"step-{global_step}").mean()
    writer.add_scalar("eval/episodic_return", last_eval, global_step)
    log_video(writer, video_folder, global_step, args.track)
    print(f"final deterministic eval return {last_eval:.2f} after {global_step:,} steps, {training_seconds:.0f} s of training")
    if args.save_model:
        model_path = f"{run_dir}/{args.exp_name}.pt"
        save_checkpoint(model_path, args, {"agent": agent, "decoder": decoder})
        print(f"model saved; evaluate it with: python {os.path.basename(__file__)} --eval-checkpoint {model_path}")
    if os.path.exists(f"{run_dir}/training_state.pt"):  # the run is complete: nothing is left to resume
        os.remove(f"{run_dir}/training_state.pt")

    envs.close()
    eval_envs.close()
    writer.close()

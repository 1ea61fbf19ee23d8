"""Extra gymnasium environments of this project; importing the module registers them (safe to import twice).

BimodalBandit-v0: a one-step continuous bandit whose best actions form two modes, for the paper's emergent
multimodality experiment (benchmark/multimodality.py). One constant observation (0), one action in [-1, 1],
reward exp(-(|a| - 0.6)^2 / (2 * 0.1^2)): 1 at a = -0.6 and at a = +0.6, 1.5e-8 at a = 0; every episode lasts one step.
"""

import gymnasium as gym
import numpy as np


class BimodalBandit(gym.Env):
    """One step, one constant observation; the reward is a Gaussian bump in |a|: 1 at a = -mode and at a = +mode."""

    metadata = {"render_modes": []}

    def __init__(self, mode: float = 0.6, width: float = 0.1):
        self.mode, self.width = mode, width
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def reward(self, action) -> np.ndarray:
        """Reward of each action (any shape)."""
        return np.exp(-((np.abs(np.clip(action, -1.0, 1.0)) - self.mode) ** 2) / (2 * self.width**2))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        reward = float(self.reward(float(np.asarray(action, dtype=np.float64).reshape(-1)[0])))
        return np.zeros(1, dtype=np.float32), reward, True, False, {}


if "BimodalBandit-v0" not in gym.registry:
    gym.register(id="BimodalBandit-v0", entry_point="gorl_envs:BimodalBandit", max_episode_steps=1)

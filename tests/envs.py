"""Environments for the tests only; importing the module registers them, so a script reaches them by an id of the
form tests.envs:Name-v0.

NanRewardPendulum-v0: a Pendulum whose rewards are NaN. The scripts must stop with one line at their first
non-finite loss rather than train on garbage.
Clock-v0: episodes of exactly 40 steps whose observation is the step's index in the episode, so that a test can read
off which phases of an episode some data covers.
Target-v0: 20 steps of random observations in [-1, 1]^3; the reward is minus the squared distance of the 2-d action
from TARGET, so a policy's return says how close its actions are to that point.
Bandit-v0: one step, one constant observation, one action in [-1, 1]; the reward is 1 at |a| = 0.6 (both signs).
"""

import gymnasium as gym
import numpy as np
import shimmy  # registers the dm_control/<domain>-<task>-v0 ids
from gymnasium.envs.classic_control.pendulum import PendulumEnv


class NanRewardPendulum(PendulumEnv):
    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan"), terminated, truncated, info


class Clock(gym.Env):
    """Observation [t], t = 0, 1, ... the step in the episode; the time limit ends every episode after 40 steps."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1000.0, (1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(1, self.t, dtype=np.float32), 0.0, False, False, {}


class Target(gym.Env):
    TARGET = np.tanh([0.5, -0.3])

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 3).astype(np.float32), {}

    def step(self, action):
        reward = -float(np.sum((np.asarray(action) - self.TARGET) ** 2))
        return self.np_random.uniform(-1, 1, 3).astype(np.float32), reward, False, False, {}


class Bandit(gym.Env):
    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        reward = float(np.exp(-((abs(float(np.asarray(action).reshape(-1)[0])) - 0.6) ** 2) / 0.02))
        return np.zeros(1, dtype=np.float32), reward, True, False, {}


# no env checker: its warning about the NaN reward would come before the script's own line
for name, max_episode_steps in [("NanRewardPendulum", 200), ("Clock", 40), ("Target", 20), ("Bandit", 1)]:
    if f"{name}-v0" not in gym.registry:
        gym.register(f"{name}-v0", f"tests.envs:{name}", max_episode_steps=max_episode_steps, disable_env_checker=True)
if "dm_control/hopper-short-v0" not in gym.registry:
    gym.register("dm_control/hopper-short-v0", gym.spec("dm_control/hopper-stand-v0").entry_point, max_episode_steps=25)

"""A Pendulum whose rewards are NaN, registered on import as tests.nan_env:NanRewardPendulum-v0: the scripts must stop
with one line at their first non-finite loss rather than train on garbage."""

import gymnasium as gym
from gymnasium.envs.classic_control.pendulum import PendulumEnv


class NanRewardPendulum(PendulumEnv):
    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan"), terminated, truncated, info


if "NanRewardPendulum-v0" not in gym.registry:
    gym.register(  # no env checker: its warning about the NaN reward would come before the script's own line
        id="NanRewardPendulum-v0",
        entry_point="tests.nan_env:NanRewardPendulum",
        max_episode_steps=200,
        disable_env_checker=True,
    )

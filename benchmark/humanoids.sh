#!/usr/bin/env bash
# Table 2 of the paper: GoRL-PPO (flow: gorl_ppo, diffusion: gorl_ppo_diff) vs Gaussian PPO on the DM Control
# humanoids, 3 seeds, 180M env steps (paper preset).
# Every flag of benchmark/sweep.py works here (--preset quick, --workers, --dry-run, --launcher slurm, ...).
exec "${PYTHON:-python}" "$(dirname "$0")/sweep.py" --table humanoids \
    --tasks HumanoidStand HumanoidRun --methods gorl_ppo gaussian_ppo --variant "gorl_ppo_diff=gorl_ppo --decoder diffusion" \
    --seeds 1 2 3 "$@"

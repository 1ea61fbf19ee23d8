#!/usr/bin/env bash
# Table 1 of the paper (the main comparison), all five of its methods on six DM Control tasks, seeds 1-5: Gaussian PPO
# (gaussian_ppo, the paper's PPO), FPO (fpo) and DPPO (dppo), the generative baselines of benchmark/baselines/, and
# GoRL-PPO with its flow decoder (gorl_ppo, GoRL-FM) and its diffusion decoder (gorl_ppo_diff, GoRL-Diff).
#   benchmark/run_all.sh --dry-run                  # print the 150 commands of the paper preset (180M env steps each)
#   benchmark/run_all.sh --preset quick --workers 1 # the smoke preset: 60 runs of 150k steps
# Every flag of benchmark/sweep.py works here (--workers, --launcher slurm, --tasks to override the task list, ...).
exec "${PYTHON:-python}" "$(dirname "$0")/sweep.py" --table main \
    --tasks CheetahRun FingerSpin FingerTurnHard FishSwim HopperStand WalkerWalk \
    --methods gaussian_ppo fpo dppo gorl_ppo --variant "gorl_ppo_diff=gorl_ppo --decoder diffusion" --seeds 1 2 3 4 5 "$@"

#!/usr/bin/env bash
# Table 1 of the paper (the main comparison): GoRL-PPO vs Gaussian PPO on six DM Control tasks, seeds 1-5.
#   benchmark/run_all.sh --dry-run                  # print the 60 commands of the paper preset (180M env steps each)
#   benchmark/run_all.sh --preset quick --workers 1 # the laptop preset: 24 runs of 150k steps, about 25 min
# Every flag of benchmark/sweep.py works here (--workers, --launcher slurm, --tasks to override the task list, ...).
exec "${PYTHON:-python}" "$(dirname "$0")/sweep.py" --table main \
    --tasks CheetahRun FingerSpin FingerTurnHard FishSwim HopperStand WalkerWalk \
    --methods gorl_ppo gaussian_ppo --seeds 1 2 3 4 5 "$@"

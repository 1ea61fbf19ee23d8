#!/usr/bin/env bash
# Table 2 of the paper: the five methods of Table 1 (gaussian_ppo, fpo, dppo, gorl_ppo, gorl_ppo_diff; see run_all.sh)
# on the DM Control humanoids, 3 seeds, 180M env steps (paper preset).
# Every flag of benchmark/sweep.py works here (--preset quick, --workers, --dry-run, --launcher slurm, ...).
exec "${PYTHON:-python}" "$(dirname "$0")/sweep.py" --table humanoids \
    --tasks HumanoidStand HumanoidRun --methods gaussian_ppo fpo dppo gorl_ppo \
    --variant "gorl_ppo_diff=gorl_ppo --decoder diffusion" --seeds 1 2 3 "$@"

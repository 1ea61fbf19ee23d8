#!/usr/bin/env bash
# The paper's SAC variant (Appendix F.2, reported as a figure): GoRL-SAC vs Gaussian SAC on Gym MuJoCo, 4M env steps,
# 5 seeds (paper preset). Every flag of benchmark/sweep.py works here (--preset quick, --workers, --dry-run, ...).
exec "${PYTHON:-python}" "$(dirname "$0")/sweep.py" --table sac \
    --tasks Hopper-v5 Walker2d-v5 HalfCheetah-v5 --methods gorl_sac gaussian_sac --seeds 1 2 3 4 5 "$@"

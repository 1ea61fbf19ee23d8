#!/usr/bin/env bash
# Ablations of GoRL-PPO on HopperStand, one knob at a time around the defaults (4 stages, KL 1e-3, 10 flow steps,
# which is the plain gorl_ppo column shared by the three groups): stages 1/2/4, latent KL 0/1e-3/1e-2, flow steps
# 1/5/10. 3 seeds. Every flag of benchmark/sweep.py works here (--preset quick, --workers, --dry-run, ...).
exec "${PYTHON:-python}" "$(dirname "$0")/sweep.py" --table ablations --tasks HopperStand --seeds 1 2 3 \
    --methods gorl_ppo \
    --variant "gorl_ppo-stages1=gorl_ppo --num-stages 1" --variant "gorl_ppo-stages2=gorl_ppo --num-stages 2" \
    --variant "gorl_ppo-kl0=gorl_ppo --latent-kl-coef 0" --variant "gorl_ppo-kl1e-2=gorl_ppo --latent-kl-coef 1e-2" \
    --variant "gorl_ppo-flow1=gorl_ppo --flow-steps 1" --variant "gorl_ppo-flow5=gorl_ppo --flow-steps 5" "$@"

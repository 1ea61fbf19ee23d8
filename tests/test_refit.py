"""Tests of the refit report of both GoRL scripts: does a refit hand the next stage the policy it was fit on?"""

import copy
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import gorl_ppo
import gorl_sac
import tests.envs  # noqa: F401  (registers Target-v0)


def known_policy(module):
    """A latent policy z ~ N((0.5, -0.3) + a little of s, 0.4^2) on 3-d states, decoded by the identity: it acts near
    Target-v0's best action tanh(0.5, -0.3). Returns (latent policy, decoder, a function that samples its z)."""
    torch.manual_seed(0)
    if module is gorl_ppo:
        agent = gorl_ppo.Agent(obs_dim=3, action_dim=2)
        with torch.no_grad():
            agent.actor_mean[-1].bias.copy_(torch.tensor([0.5, -0.3]))
            agent.actor_logstd.fill_(np.log(0.4))
        sample = lambda obs: agent.get_action_and_value(obs)[0]  # noqa: E731
    else:
        agent = gorl_sac.Actor(obs_dim=3, action_dim=2, hidden=16)
        with torch.no_grad():
            agent.fc_mean.weight.mul_(0.01)
            agent.fc_mean.bias.copy_(torch.tensor([0.5, -0.3]))
            agent.fc_logstd.weight.zero_()
            agent.fc_logstd.bias.fill_(np.log(0.4))
        sample = lambda obs: agent.get_action(obs)[0]  # noqa: E731
    return agent, module.FlowDecoder(obs_dim=3, action_dim=2, flow_steps=10), sample


@pytest.mark.parametrize("module", [gorl_ppo, gorl_sac])
def test_refit_report_reads_zero_where_nothing_changed_and_sees_a_refit_that_loses_the_policy(module):
    agent, identity, sample = known_policy(module)
    old_policy = (agent, identity)
    obs = torch.rand(4000, 3) * 2 - 1
    envs = module.make_vector_env(module.resolve_env_id("tests.envs:Target-v0"), 2, seed=0)

    unchanged = module.refit_report(old_policy, copy.deepcopy(old_policy), obs[:256], envs, seed=0)
    actions_unchanged = dict(
        deterministic_error=0.0, std_ratio_min=1.0, std_ratio_mean=1.0, std_ratio_max=1.0, sliced_wasserstein=0.0
    )
    assert {name: unchanged[name] for name in actions_unchanged} == actions_unchanged
    for mode in ("deterministic", "stochastic"):
        assert unchanged[f"new_return_{mode}"] == unchanged[f"old_return_{mode}"] < 0

    reset = copy.deepcopy(agent)
    reset.reset_to_prior()
    with torch.no_grad():
        actions = sample(obs)
    decoder = module.FlowDecoder(obs_dim=3, action_dim=2, flow_steps=10)
    module.fit_decoder(decoder, obs, actions, epochs=30, batch_size=512, lr=1e-3, noise_draws=8, patience=10)
    faithful = module.refit_report(old_policy, (reset, decoder), obs[:256], envs, seed=0)
    assert faithful["deterministic_error"] < 0.05 and faithful["sliced_wasserstein"] < 0.06, faithful
    assert 0.8 < faithful["std_ratio_min"] <= faithful["std_ratio_max"] < 1.1, faithful
    assert faithful["new_return_deterministic"] == pytest.approx(faithful["old_return_deterministic"], abs=0.2)

    # the latent reset without a refit: a = z ~ N(0, I), neither the old mean nor the old spread
    lost = module.refit_report(old_policy, (reset, identity), obs[:256], envs, seed=0)
    envs.close()
    assert lost["deterministic_error"] > 0.3 and lost["std_ratio_min"] > 1.5 and lost["sliced_wasserstein"] > 0.2, lost
    assert lost["new_return_deterministic"] < lost["old_return_deterministic"] - 2  # 20 steps of ~0.15 further away


def test_refit_check_refits_a_ppo_training_state_offline(tmp_path):
    from tests.helpers import ROOT
    from tests.test_resume import RUNS, interrupt_after_first_checkpoint

    flags = [*RUNS["gorl_ppo.py"], "--checkpoint-every", "1024"]
    code, _, stderr, state = interrupt_after_first_checkpoint("gorl_ppo.py", flags, tmp_path, signal.SIGINT)
    assert code == 128 + signal.SIGINT, stderr
    check = [sys.executable, os.path.join(ROOT, "benchmark", "refit_check.py"), state, "--episodes", "2"]
    check += ["--collect", "composed", "latent", "--pairs", "400", "--epochs", "2"]
    proc = subprocess.run(check, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    number = r"(-?[\d.]+)"
    rows = re.findall(
        rf"^  (composed|latent) data, fresh 4x64 decoder, lr 0.001: val loss {number} \(\d+ s\); deterministic action error "
        rf"{number}, action std ratio {number}-{number}, sliced W1 {number}; return before -> after: deterministic "
        rf"{number} -> {number}, stochastic {number} -> {number}$",
        proc.stdout,
        re.M,
    )
    assert [row[0] for row in rows] == ["composed", "latent"], proc.stdout
    # stage 0's decoder is the identity: both collect with the same policy, so the same data and the same refit
    assert rows[0][1:] == rows[1][1:]
    assert float(rows[0][2]) > 0  # a 2-epoch refit does not reproduce the policy exactly

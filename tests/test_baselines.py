"""Tests of the paper's generative baselines, benchmark/baselines/fpo_ppo.py (FPO) and dppo.py (DPPO): FPO's ratio and
update, DPPO's chain likelihood and ratio, and short runs of both scripts (checkpoint, resume, reload, bad input)."""

import glob
import os
import signal
import sys

import numpy as np
import pytest
import torch

from benchmark.baselines import dppo, fpo_ppo
from benchmark.events import read_scalars
from tests.helpers import check_one_line_error, check_reload, only_run_dir, run_script
from tests.test_resume import interrupt_after_first_checkpoint

SCRIPTS = {fpo_ppo: "benchmark/baselines/fpo_ppo.py", dppo: "benchmark/baselines/dppo.py"}
GRID = [round(1.0 - k / 10, 6) for k in range(10)]  # the Euler grid's start times, FPO's t values


def surrogate(ratio, advantages, clip_coef):
    """PPO's clipped surrogate, one term per ratio element (pair or step) with its action's advantage, as the scripts."""
    advantages = advantages[:, None]
    return torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)).mean()


def observed_agent(module, obs_dim=5, action_dim=3):
    """An untrained agent whose observation statistics are not the identity (so normalisation is exercised)."""
    agent = module.Agent(obs_dim, action_dim)
    agent.obs_rms.update(torch.randn(200, obs_dim) * 3 + 1)
    return agent


# ---------------------------------------------------------------- FPO


def test_fpo_ratio_is_exactly_one_before_the_first_update():
    torch.manual_seed(0)
    agent, obs = observed_agent(fpo_ppo), torch.randn(64, 5)
    with torch.no_grad():  # the rollout: 8 envs at a time
        steps = [agent.get_action_and_value(obs[i : i + 8]) for i in range(0, 64, 8)]
    z, eps, t, old = (torch.cat([step[i] for step in steps]) for i in range(4))
    assert eps.shape == (64, 8, 3) and t.shape == (64, 8, 1) and old.shape == (64, 8)
    assert {round(value, 6) for value in t.unique().tolist()} == set(GRID)  # t on the Euler grid {1.0, ..., 0.1}
    assert torch.equal(old[t[..., 0] == 1.0], torch.zeros_like(old[t[..., 0] == 1.0]))  # weight (1 - t)^2 is 0 at t = 1

    _, _, _, new, _ = agent.get_action_and_value(obs, z, eps, t)  # the same pairs again: the update's first minibatch
    ratio = fpo_ppo.fpo_logratio(old, new).exp()
    assert torch.equal(ratio, torch.ones_like(ratio))
    order = torch.randperm(64)[:40]  # a shuffled minibatch of another size: the same numbers
    _, _, _, shuffled, _ = agent.get_action_and_value(obs[order], z[order], eps[order], t[order])
    torch.testing.assert_close(shuffled, old[order], rtol=0, atol=1e-6)


def test_fpo_update_lowers_its_surrogate_and_moves_the_flow_toward_good_actions():
    """On a fixed batch whose advantage is the sign of the first action coordinate, FPO's clipped surrogate falls, the
    CFM losses of the good actions fall and those of the bad ones rise, and the flow's actions move toward the good
    side (same x_1 before and after, so no sampling noise)."""
    torch.manual_seed(0)
    agent, obs = fpo_ppo.Agent(3, 2), torch.randn(512, 3)
    with torch.no_grad():
        z, eps, t, old, _ = agent.get_action_and_value(obs)
        x_1 = torch.randn(512, 2)
        before = agent.integrate(agent.obs_rms(obs), x_1)
    advantages = torch.where(z[:, 0] > 0, 1.0, -1.0)
    advantages = (advantages - advantages.mean()) / advantages.std()
    optimizer = torch.optim.Adam(agent.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        _, _, _, new, _ = agent.get_action_and_value(obs, z, eps, t)
        loss = surrogate(fpo_ppo.fpo_logratio(old, new).exp(), advantages, fpo_ppo.Args().clip_coef)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        _, _, _, new, _ = agent.get_action_and_value(obs, z, eps, t)
        after = agent.integrate(agent.obs_rms(obs), x_1)
    assert abs(losses[0]) < 1e-6 and losses[-1] < -0.005, losses  # ratio 1: the surrogate starts at -mean(adv) = 0
    change = new - old
    assert change[advantages > 0].mean() < -0.01 and change[advantages < 0].mean() > 0.01
    shift = (after - before).mean(0)
    assert shift[0] > 0.1 and abs(shift[1]) < 0.05, shift


def test_fpo_logratio_is_clipped_to_three_in_log():
    old, new = torch.tensor([[10.0, 0.5, 0.0]]), torch.tensor([[0.0, 0.25, 7.0]])
    torch.testing.assert_close(fpo_ppo.fpo_logratio(old, new), torch.tensor([[3.0, 0.25, -3.0]]))


# ---------------------------------------------------------------- DPPO


def direct_chain_logprob(agent, obs, chain, sigma):
    """Each step's log N(x_{k+1}; x_k - 0.1 v(x_k, t_k), sigma^2 I), written out from the paper's description."""
    x = torch.clamp((obs - agent.obs_rms.mean) / torch.sqrt(agent.obs_rms.var + 1e-8), -10, 10)
    logps, residuals = [], []
    for k in range(10):
        t = torch.full((len(obs), 1), 1.0 - k / 10)
        embedding = torch.cat([torch.cos(t * 2.0 ** torch.arange(4)), torch.sin(t * 2.0 ** torch.arange(4))], 1)
        mean = chain[:, k] - 0.1 * 0.25 * agent.velocity(torch.cat([x, chain[:, k], embedding], 1))
        residual = (chain[:, k + 1] - mean) / sigma
        logps.append((-0.5 * residual**2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)).sum(1))
        residuals.append(residual)
    return torch.stack(logps, 1), torch.stack(residuals, 1)


def test_dppo_chain_logprob_and_ratio_match_a_direct_computation():
    torch.manual_seed(0)
    agent, obs = observed_agent(dppo), torch.randn(2000, 5)
    with torch.no_grad():
        chain, old, _ = agent.get_action_and_value(obs)
        direct_old, residuals = direct_chain_logprob(agent, obs, chain, 0.05)
    assert chain.shape == (2000, 11, 3) and old.shape == (2000, 10)
    torch.testing.assert_close(old, direct_old, rtol=1e-5, atol=1e-4)
    assert 0.97 < residuals.std().item() < 1.03 and abs(residuals.mean().item()) < 0.01  # each step adds 0.05 N(0, I)

    with torch.no_grad():  # a parameter change: the ratio of every step follows the direct computation
        for parameter in agent.velocity.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        _, new, _ = agent.get_action_and_value(obs, chain)
        direct_new, _ = direct_chain_logprob(agent, obs, chain, 0.05)
    ratio = (new - old).exp()
    torch.testing.assert_close(ratio, (direct_new - direct_old).exp(), rtol=1e-4, atol=1e-5)
    assert (ratio - 1).abs().mean() > 0.01  # the change did move the ratios


@pytest.mark.parametrize("module", [fpo_ppo, dppo])
def test_deterministic_action_is_the_noise_free_flow_from_zero_and_draws_nothing(module):
    torch.manual_seed(0)
    agent, obs = observed_agent(module), torch.randn(16, 5)
    rng = torch.get_rng_state()
    with torch.no_grad():
        action = agent.get_deterministic(obs)
        assert torch.equal(action, agent.get_deterministic(obs)) and torch.equal(rng, torch.get_rng_state())
        x, z = agent.obs_rms(obs), torch.zeros(16, 3)
        for k in range(10):  # Euler from x_1 = 0, no noise
            z = z - 0.1 * agent.velocity_at(x, z, torch.full((16, 1), 1.0 - k / 10))
    torch.testing.assert_close(action, z)


# ---------------------------------------------------------------- flags and runs


@pytest.mark.parametrize("module", [fpo_ppo, dppo])
def test_flags_are_checked_and_default_to_the_papers_ppo_shell(module, monkeypatch):
    monkeypatch.setattr(sys, "argv", [module.__file__, "paper", "--seed", "3"])  # `paper`, as the twins take it: the defaults
    assert module.parse_args() == module.Args(seed=3)
    args = module.Args()
    assert (args.learning_rate, args.anneal_lr, args.update_epochs, args.gamma, args.max_grad_norm) == (
        3e-4,
        False,
        16,
        0.995,
        None,
    )
    assert (args.actor_hidden, args.activation, args.flow_steps) == ((32,) * 4, "silu", 10)
    assert args.clip_coef == {fpo_ppo: 0.05, dppo: 0.2}[module] and not hasattr(args, "ent_coef")
    module.check_args(args)
    for name in module.FLOAT_RANGES:
        for bad in [float("nan"), -1.0]:
            with pytest.raises(ValueError, match=f"^--{name.replace('_', '-')} must be a finite number in "):
                module.check_args(module.Args(**{name: bad}))
    with pytest.raises(ValueError, match="^--flow-steps must be at least 1, got 0"):
        module.check_args(module.Args(flow_steps=0))


@pytest.mark.parametrize("module", [fpo_ppo, dppo])
def test_run_resumes_exactly_and_its_checkpoint_reloads(module, tmp_path):
    """A short Pendulum run, interrupted at its first training-state checkpoint and resumed, ends as the same run
    uninterrupted (weights, final eval, curves); its saved model evaluates to the run's last evaluation."""
    script = SCRIPTS[module]
    flags = ["--env-id", "Pendulum-v1", "--num-envs", "4", "--num-steps", "64", "--update-epochs", "2", "--total-timesteps"]
    flags += ["2560", "--eval-every", "1024", "--eval-episodes", "2", "--checkpoint-every", "512", "--save-model"]
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    whole = run_script(script, *flags, cwd=tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    code, stdout, stderr, checkpoint = interrupt_after_first_checkpoint(script, flags, tmp_path / "cut", signal.SIGUSR1)
    assert code == 128 + signal.SIGUSR1, stderr
    assert "final deterministic eval return" not in stdout
    resumed = run_script(script, "--resume", checkpoint, cwd=tmp_path / "cut")
    assert resumed.returncode == 0 and "resumed " in resumed.stdout, resumed.stderr

    final = whole.stdout.split("final deterministic eval return ")[1].split()[0]
    assert resumed.stdout.split("final deterministic eval return ")[1].split()[0] == final
    name = os.path.basename(script).replace(".py", ".pt")
    expected, got = (torch.load(os.path.join(only_run_dir(tmp_path / d), name), weights_only=False) for d in ["whole", "cut"])
    for key, tensor in expected["agent"].items():
        assert torch.equal(tensor, got["agent"][key]), key
    expected_scalars, got_scalars = (read_scalars(only_run_dir(tmp_path / d)) for d in ["whole", "cut"])
    assert set(got_scalars) == set(expected_scalars) and len(expected_scalars["eval/episodic_return"]) == 4
    for tag in set(expected_scalars) - {"charts/SPS"}:
        assert got_scalars[tag] == expected_scalars[tag], tag
    check_reload(script, tmp_path / "cut", float(final), eval_episodes=2)


@pytest.mark.parametrize("module", [fpo_ppo, dppo])
def test_bad_env_id_stops_with_one_line(module, tmp_path):
    result = run_script(SCRIPTS[module], "--env-id", "HopperStnd", cwd=tmp_path)
    check_one_line_error(result, "error: unknown env id 'HopperStnd'; did you mean HopperStand or ")
    assert not glob.glob(os.path.join(tmp_path, "runs", "*"))

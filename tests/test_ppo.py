"""Tests of gaussian_ppo.py and gorl_ppo.py: their building blocks, their CLI, and short real runs."""

import dataclasses
import glob
import os
import sys

import numpy as np
import pytest
import torch

import gaussian_ppo
import gaussian_sac
import gorl_ppo
import gorl_sac
from benchmark.events import read_scalars
from tests.helpers import (
    check_one_line_error,
    check_reload,
    check_two_stage_run,
    only_run_dir,
    run_script,
    two_mode_dataset,
    values,
)

# end-to-end runs at the defaults, small only in the rollout and the evaluation
FAST_PPO = ["--num-envs", "8", "--num-steps", "128", "--eval-episodes", "4"]


# ---------------------------------------------------------------- decoder


@pytest.mark.parametrize("kind", ["flow", "diffusion"])
def test_identity_decoder_returns_z_exactly(kind):
    torch.manual_seed(0)
    decoder = gorl_ppo.DECODERS[kind](obs_dim=5, action_dim=3, flow_steps=10)
    obs, z = torch.randn(64, 5) * 3, torch.randn(64, 3) * 2
    assert torch.equal(decoder(obs, z), z)


@pytest.mark.parametrize("kind", ["flow", "diffusion"])
def test_decoder_learns_a_bimodal_conditional_distribution_that_a_gaussian_cannot(kind):
    torch.manual_seed(0)
    obs, actions = two_mode_dataset(4000, noise=0.02)
    decoder = gorl_ppo.DECODERS[kind](obs_dim=2, action_dim=1, flow_steps=10)
    _, val_loss, _ = gorl_ppo.fit_decoder(
        decoder, obs, actions, epochs=60, batch_size=1024, lr=3e-3, noise_draws=8, patience=60
    )
    assert np.isfinite(val_loss)

    state = torch.tensor([[0.5, -0.2]])
    with torch.no_grad():
        samples = decoder(state.expand(5000, 2), torch.randn(5000, 1)).squeeze(1)
    centre = 0.3 * 0.5
    near_low = ((samples - (centre - 0.6)).abs() < 0.2).float().mean().item()
    near_high = ((samples - (centre + 0.6)).abs() < 0.2).float().mean().item()
    between = ((samples - centre).abs() < 0.3).float().mean().item()
    assert near_low > 0.3 and near_high > 0.3, (near_low, near_high)
    assert between < 0.1, between

    # the best single Gaussian (moment matched at this state) puts far more mass between the modes
    gaussian = torch.distributions.Normal(centre, 0.6)
    gaussian_between = (gaussian.cdf(torch.tensor(centre + 0.3)) - gaussian.cdf(torch.tensor(centre - 0.3))).item()
    assert gaussian_between > 0.3 > between


def test_decoder_data_covers_every_phase_of_a_fixed_length_episode():
    """Each refit's data comes from envs run from reset, each for at least a whole episode, so the decoder sees every
    phase of a fixed-length episode (training envs stepped in lockstep would show it one window)."""
    num_envs = gorl_ppo.decoder_data_envs(data_steps=120, longest_episode=40, num_envs=8)
    assert num_envs == 3
    envs = gorl_ppo.make_vector_env(gorl_ppo.resolve_env_id("tests.envs:Clock-v0"), num_envs, seed=0)
    torch.manual_seed(0)
    agent, decoder = gorl_ppo.Agent(1, 1), gorl_ppo.FlowDecoder(1, 1, flow_steps=10)
    obs, actions, returns = gorl_ppo.collect_decoder_data(agent, decoder, envs, steps_per_env=40, seed=0)
    envs.close()
    assert obs.shape == actions.shape == (120, 1) and len(returns) == 3
    assert sorted(set(obs[:, 0].int().tolist())) == list(range(40))


def test_decoder_data_envs_each_run_a_whole_episode_and_divide_the_data():
    assert gorl_ppo.decoder_data_envs(9_984, longest_episode=1000, num_envs=32) == 8  # 1M budget: 8 x 1,248 steps
    assert gorl_ppo.decoder_data_envs(99_968, longest_episode=1000, num_envs=32) == 32  # 10M budget
    assert gorl_ppo.decoder_data_envs(320, longest_episode=0, num_envs=32) == 1  # no episode has ended yet


def test_decoder_fit_on_gaussian_actions_at_one_state_is_affine():
    """Why GoRL stays unimodal on a one-state task (benchmark/results/multimodality_bandit.md): refit on the actions of a
    Gaussian policy, the flow from N(0, 1) is the affine map m + s z, so the next stage's Gaussian latent decodes to a
    Gaussian."""
    torch.manual_seed(0)
    obs, actions = torch.zeros(3000, 1), 0.7 + 0.3 * torch.randn(3000, 1)
    decoder = gorl_ppo.FlowDecoder(obs_dim=1, action_dim=1, flow_steps=10)
    gorl_ppo.fit_decoder(decoder, obs, actions, epochs=60, batch_size=512, lr=1e-3, noise_draws=8, patience=20)
    z = torch.linspace(-2.5, 2.5, 101)
    with torch.no_grad():
        decoded = decoder(torch.zeros(101, 1), z.unsqueeze(1)).squeeze(1).numpy()
    slope, intercept = np.polyfit(z.numpy(), decoded, 1)
    # the midpoint rule keeps s (the paper's 10 Euler steps shrank it to 0.25 here: README, refit fidelity)
    assert abs(intercept - 0.7) < 0.03 and 0.27 < slope < 0.32, (intercept, slope)
    # straight: the worst deviation from the line is a small fraction of the decoded range (5 std wide)
    assert np.abs(decoded - (intercept + slope * z.numpy())).max() < 0.05 * 5 * slope


# ---------------------------------------------------------------- PPO pieces


def test_latent_kl_matches_torch_distributions():
    torch.manual_seed(0)
    agent, obs = gorl_ppo.Agent(obs_dim=6, action_dim=4), torch.randn(16, 6)
    torch.nn.init.normal_(agent.actor_logstd, std=0.5)
    torch.nn.init.normal_(agent.actor_mean[-1].weight)  # a mean away from 0
    mean, std = agent.get_mean(obs), agent.actor_logstd.exp().expand(16, 4)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, std), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    torch.testing.assert_close(agent.get_action_and_value(obs)[4], expected)


def test_reset_to_prior_gives_exactly_standard_normal():
    agent = gorl_ppo.Agent(obs_dim=6, action_dim=3)
    agent.obs_rms.update(torch.randn(100, 6) * 5 + 2)
    agent.reset_to_prior()
    obs = torch.randn(32, 6) * 4
    _, _, entropy, _, kl = agent.get_action_and_value(obs)
    assert torch.equal(agent.get_mean(obs), torch.zeros(32, 3))
    assert torch.equal(kl, torch.zeros(32))
    torch.testing.assert_close(entropy, torch.full((32,), 3 * 0.5 * np.log(2 * np.pi * np.e)))


def reference_gae(rewards, values, ends, next_value, gamma, lam):
    """Plain per-env loop: sum over future TD errors, cut at episode ends."""
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for env in range(envs):
        for t in range(steps):
            total, discount = 0.0, 1.0
            for k in range(t, steps):
                following = next_value[env] if k == steps - 1 else values[k + 1, env]
                delta = rewards[k, env] + gamma * following * (1 - ends[k, env]) - values[k, env]
                total += discount * delta
                if ends[k, env]:
                    break
                discount *= gamma * lam
            advantages[t, env] = total
    return advantages


@pytest.mark.parametrize("module", [gaussian_ppo, gorl_ppo])
def test_gae_matches_reference_loop(module):
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(12, 3)), rng.normal(size=(12, 3))
    ends = (rng.random((12, 3)) < 0.2).astype(np.float64)
    next_value = rng.normal(size=3)
    got = module.compute_gae(*(torch.tensor(x) for x in (rewards, values, ends, next_value)), 0.97, 0.9)
    np.testing.assert_allclose(got.numpy(), reference_gae(rewards, values, ends, next_value, 0.97, 0.9), atol=1e-10)


def test_running_mean_std_matches_numpy_over_batches():
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 4)).astype(np.float32)
    rms = gaussian_ppo.RunningMeanStd(4)
    for chunk in np.array_split(data, 7):  # unequal batches
        rms.update(torch.from_numpy(chunk))
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-3)


def test_actions_rescale_to_asymmetric_bounds():
    envs = gaussian_ppo.make_vector_env(gaussian_ppo.resolve_env_id("QuadrupedRun"), 1, 0)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    envs.close()
    assert not np.allclose(low, -high)  # quadruped's bounds really are asymmetric
    np.testing.assert_allclose(gaussian_ppo.squash_to_bounds(np.full(low.shape, -50.0), low, high), low)
    np.testing.assert_allclose(gaussian_ppo.squash_to_bounds(np.full(low.shape, 50.0), low, high), high)
    np.testing.assert_allclose(gaussian_ppo.squash_to_bounds(np.zeros(low.shape), low, high), (low + high) / 2)
    inside = gaussian_ppo.squash_to_bounds(np.random.default_rng(0).normal(size=(100, *low.shape)) * 3, low, high)
    assert np.all(inside >= low) and np.all(inside <= high)


# ---------------------------------------------------------------- environments and errors


def test_env_ids_resolve():
    assert gaussian_ppo.resolve_env_id("HopperStand") == "dm_control/hopper-stand-v0"
    assert gaussian_ppo.resolve_env_id("BallInCup") == "dm_control/ball_in_cup-catch-v0"
    assert gaussian_ppo.resolve_env_id("FingerTurnHard") == "dm_control/finger-turn_hard-v0"
    assert gaussian_ppo.resolve_env_id("dm_control/walker-walk-v0") == "dm_control/walker-walk-v0"
    assert gaussian_ppo.resolve_env_id("Pendulum-v1") == "Pendulum-v1"
    assert gaussian_ppo.resolve_env_id("tests.envs:Bandit-v0") == "Bandit-v0"
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        gaussian_ppo.resolve_env_id("no_such_module:Env-v0")
    with pytest.raises(ValueError, match="did you mean HopperStand"):
        gaussian_ppo.resolve_env_id("HopperStnd")


def test_dm_control_observations_are_flat_float32():
    envs = gaussian_ppo.make_vector_env(gaussian_ppo.resolve_env_id("HopperStand"), 2, 0)
    obs, _ = envs.reset(seed=0)
    envs.close()
    assert obs.shape == (2, 15) and obs.dtype == np.float32


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--env-id", "NoSuchTask"], "error: unknown env id 'NoSuchTask'"),
        (["--env-id", "CartPole-v1"], "error: CartPole-v1 has action space Discrete(2)"),
        (
            ["--env-id", "Pendulum-v1", "--total-timesteps", "100"],
            "error: --total-timesteps 100 must be at least 196032, a rollout batch (30720) for each of 4 stages",
        ),
        (["--num-envs", "4", "--num-steps", "64", "--num-minibatches", "3"], "error: --num-minibatches 3 must divide"),
        (["--num-envs", "0"], "error: --num-envs must be at least 1, got 0"),
        (["--decoder-data-fraction", "0.2"], "error: --decoder-data-fraction 0.2 must be in [0, 0.167), the shortest stage's"),
        (["--eval-checkpoint", "."], "error: --eval-checkpoint . cannot be read as a checkpoint"),
        (
            ["--env-id", "tests.envs:Nope-v0"],
            "error: importing 'tests.envs' registers no 'Nope-v0'; it registers: NanRewardPendulum-v0, Clock-v0, Target-v0, "
            "Bandit-v0",
        ),
    ],
)
def test_bad_input_stops_with_one_line(flags, message, tmp_path):
    result = run_script("gorl_ppo.py", *flags, cwd=tmp_path)
    check_one_line_error(result, message)


@pytest.mark.parametrize("script", ["gaussian_ppo.py", "gorl_ppo.py"])
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--learning-rate", "nan"], "error: --learning-rate must be a finite number in (0, inf), got nan"),
        (["--learning-rate", "-1"], "error: --learning-rate must be a finite number in (0, inf), got -1.0"),
        (["--gamma", "1.5"], "error: --gamma must be a finite number in [0, 1], got 1.5"),
    ],
)
def test_float_flag_out_of_range_stops_with_one_line(script, flags, message, tmp_path):
    check_one_line_error(run_script(script, *flags, cwd=tmp_path), message)


@pytest.mark.parametrize("module", [gaussian_ppo, gorl_ppo, gaussian_sac, gorl_sac])
def test_every_ranged_float_flag_is_checked(module):
    """Every float flag with a valid range (all four scripts) refuses NaN, infinity and -1 in one line's words."""
    for name in module.FLOAT_RANGES:
        for bad in [float("nan"), float("inf"), -1.0]:
            with pytest.raises(ValueError, match=f"^--{name.replace('_', '-')} must be a finite number in "):
                module.check_args(module.Args(**{name: bad}))
    module.check_args(module.Args())  # the defaults pass


def test_min_total_timesteps_is_the_smallest_budget_that_fits():
    args = gorl_ppo.Args(num_envs=4, num_steps=64, decoder_data_fraction=0.05)
    smallest = gorl_ppo.min_total_timesteps(args)
    assert gorl_ppo.plan_stages(smallest, args)[0].min() == 1 and gorl_ppo.plan_stages(smallest - 1, args)[0].min() == 0


@pytest.mark.parametrize("script", ["gaussian_ppo.py", "gorl_ppo.py"])
def test_non_finite_loss_stops_the_run_before_the_update(script, tmp_path):
    """NaN rewards make the first minibatch's loss NaN: the run must stop with one line, not crash later on NaN
    weights."""
    flags = ["--env-id", "tests.envs:NanRewardPendulum-v0", "--total-timesteps", "8192", *FAST_PPO]
    result = run_script(script, *flags, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: non-finite loss (nan) at step 1024"


def test_checkpoints_from_before_a_flag_was_dropped_still_load(tmp_path):
    """gorl_ppo.py dropped flags whose measured default it now always runs: a checkpoint that carries them at that
    value loads as before; one that ran otherwise is refused in one line."""
    saved = {**vars(dataclasses.replace(gorl_ppo.CLEANRL, env_id="Pendulum-v1")), **gorl_ppo.DROPPED_FLAGS}  # 64 x 64 nets
    agent, decoder, path = gorl_ppo.Agent(obs_dim=3, action_dim=1), gorl_ppo.FlowDecoder(3, 1, 10), str(tmp_path / "model.pt")
    torch.save({"script": "gorl_ppo.py", "args": saved, "agent": agent.state_dict(), "decoder": decoder.state_dict()}, path)
    loaded_args, loaded_agent, _, envs = gorl_ppo.load_checkpoint(path, 1)
    envs.close()
    assert loaded_args.env_id == "Pendulum-v1"
    torch.testing.assert_close(loaded_agent.state_dict(), agent.state_dict())
    torch.save({"script": "gorl_ppo.py", "args": {**saved, "reset_critic": True}}, path)
    with pytest.raises(ValueError, match=f"^--eval-checkpoint {path} comes from a run with --reset-critic True, which"):
        gorl_ppo.load_checkpoint(path, 1)


# ---------------------------------------------------------------- end-to-end runs


def test_gorl_with_identity_decoder_is_gaussian_ppo(tmp_path):
    """One stage, no KL: GoRL's decoder stays the identity, so the run must be Gaussian PPO's, number for number. Both
    run their defaults (only the rollout, budget and evaluation are small); Gaussian PPO clips at GoRL's stage-0 0.15."""
    flags = ["--env-id", "Pendulum-v1", "--total-timesteps", "6144", "--eval-every", "2048", "--save-model", *FAST_PPO]
    runs = {}
    gaussian, gorl = ["--clip-coef", "0.15"], ["--num-stages", "1", "--latent-kl-coef", "0"]
    for script, extra in [("gaussian_ppo.py", gaussian), ("gorl_ppo.py", gorl)]:
        cwd = tmp_path / script
        cwd.mkdir()
        assert run_script(script, *flags, *extra, cwd=cwd).returncode == 0
        run_dir = only_run_dir(cwd)
        runs[script] = (read_scalars(run_dir), torch.load(glob.glob(os.path.join(run_dir, "*.pt"))[0], weights_only=False))
    (gaussian_scalars, gaussian_ckpt), (gorl_scalars, gorl_ckpt) = runs["gaussian_ppo.py"], runs["gorl_ppo.py"]
    for tag in ["charts/episodic_return", "eval/episodic_return", "losses/value_loss", "losses/policy_loss"]:
        assert gaussian_scalars[tag] == gorl_scalars[tag], tag
    assert len(gaussian_scalars["charts/episodic_return"]) >= 8
    for name, tensor in gaussian_ckpt["agent"].items():
        assert torch.equal(tensor, gorl_ckpt["agent"][name]), name


def test_gorl_ppo_runs_two_stages_on_dm_control_and_reloads(tmp_path):
    flags = ["--env-id", "CartpoleBalance", "--total-timesteps", "12000", "--num-stages", "2", "--eval-every", "4000"]
    flags += ["--decoder-epochs", "3", "--save-model", *FAST_PPO]
    result = run_script("gorl_ppo.py", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stage 0 done: decoder refit" in result.stdout
    final_step, final_eval = check_two_stage_run(tmp_path)["eval/episodic_return"][-1]
    assert final_step <= 12000
    checkpoint = check_reload("gorl_ppo.py", tmp_path, final_eval, eval_episodes=4)
    # and the other PPO script refuses it by name instead of failing on its args
    wrong_script = run_script("gaussian_ppo.py", "--eval-checkpoint", checkpoint, cwd=tmp_path)
    assert wrong_script.returncode == 1
    assert (
        wrong_script.stderr.strip()
        == f"error: --eval-checkpoint {checkpoint} was saved by gorl_ppo.py, not gaussian_ppo.py: evaluate it with that script"
    )


def test_later_stages_restart_the_rate_and_continue_from_the_best_policy(tmp_path):
    flags = ["--env-id", "Pendulum-v1", "--total-timesteps", "12288", "--num-stages", "2", "--eval-every", "1024"]
    flags += ["--anneal-lr", "--decoder-epochs", "3", *FAST_PPO]  # the defaults keep the rate constant
    result = run_script("gorl_ppo.py", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scalars = check_two_stage_run(tmp_path)
    best = max(value for step, value in scalars["eval/episodic_return"] if step < 8192)  # the evals within stage 0
    assert f"stage 0: the policy evaluated at {best:.1f} collects the decoder data" in result.stdout
    stages, rates = values(scalars, "charts/stage"), values(scalars, "charts/learning_rate")
    stage0 = [rate for stage, rate in zip(stages, rates) if stage == 0]
    stage1 = [rate for stage, rate in zip(stages, rates) if stage == 1]
    # stage 0 (7 batches) keeps the run-wide schedule over all 11 batches; stage 1 anneals over its own 4
    assert stage0 == pytest.approx([1e-3 * (1 - i / 11) for i in range(7)], rel=1e-6)
    assert stage1 == pytest.approx([1e-3 * (1 - i / 4) for i in range(4)], rel=1e-6)


@pytest.mark.parametrize("module", [gaussian_ppo, gorl_ppo])
def test_defaults_are_the_papers_settings_with_cleanrls_networks_and_configs_name_the_others(module, monkeypatch):
    """The defaults are the paper's PPO settings with CleanRL's tanh 64 x 64 networks; `paper` adds the paper's networks,
    `cleanrl` gives CleanRL's PPO defaults, exactly the defaults until 2026-12-03 (gorl_ppo's with its stage-0 clip and
    warm refits of then); flags go on top of any."""
    settings = dict(learning_rate=1e-3, anneal_lr=False, num_steps=960, num_minibatches=1, update_epochs=16, gamma=0.995)
    settings |= dict(ent_coef=0.01, vf_coef=0.25, actor_hidden=(64, 64), critic_hidden=(64, 64), activation="tanh")
    paper = dict(actor_hidden=(32,) * 4, critic_hidden=(256,) * 5, activation="silu")
    cleanrl = dict(learning_rate=3e-4, anneal_lr=True, num_steps=64, num_minibatches=4, update_epochs=10, gamma=0.99)
    cleanrl |= dict(ent_coef=0.0, vf_coef=0.5)
    if module is gorl_ppo:  # the paper's code: stage 0 clipped at 0.15, a fresh decoder at each refit
        settings, cleanrl = settings | dict(clip_coef=0.15, fresh_decoder=True), cleanrl | dict(
            clip_coef=0.2, fresh_decoder=False
        )
    defaults = module.Args()
    assert {name: getattr(defaults, name) for name in settings} == settings
    for first, changed in [([], {}), (["defaults"], {}), (["paper"], paper), (["cleanrl"], cleanrl)]:
        monkeypatch.setattr(sys, "argv", [module.__file__, *first, "--seed", "3"])
        assert module.parse_args() == dataclasses.replace(defaults, **changed, seed=3), first


def test_gorl_ppo_paper_configuration_runs_two_stages(tmp_path):
    flags = ["paper", "--env-id", "Pendulum-v1", "--num-envs", "4", "--num-steps", "256", "--num-stages", "2"]
    flags += ["--total-timesteps", "6144", "--eval-every", "2048", "--eval-episodes", "2", "--decoder-epochs", "3"]
    result = run_script("gorl_ppo.py", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stage 0: the policy evaluated at" in result.stdout  # the paper's pipeline: the best policy's data
    scalars = check_two_stage_run(tmp_path)
    rates = values(scalars, "charts/learning_rate")
    assert rates == pytest.approx([1e-3] * len(rates))  # constant, a fresh Adam each stage


def test_gaussian_ppo_runs_on_dm_control(tmp_path):
    flags = ["--env-id", "CartpoleBalance", "--total-timesteps", "8192", "--eval-every", "4096", *FAST_PPO]
    result = run_script("gaussian_ppo.py", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scalars = read_scalars(only_run_dir(tmp_path))
    assert len(scalars["eval/episodic_return"]) == 3 and "charts/SPS" in scalars


@pytest.mark.parametrize(
    "script, extra", [("gaussian_ppo.py", []), ("gorl_ppo.py", ["--num-stages", "2", "--decoder-data-fraction", "0.05"])]
)
def test_learns_pendulum(script, extra, tmp_path):
    """A random policy scores about -1200 on Pendulum-v1; both scripts must clearly beat it in 80k steps."""
    flags = ["--env-id", "Pendulum-v1", "--total-timesteps", "80000", "--eval-every", "20000", "--gamma", "0.95"]
    result = run_script(script, *flags, *FAST_PPO, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    evals = values(read_scalars(only_run_dir(tmp_path)), "eval/episodic_return")
    assert evals[0] < -900, evals  # the untrained policy is no better than random
    assert evals[-1] > -500, evals

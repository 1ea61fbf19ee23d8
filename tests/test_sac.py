"""Tests of gaussian_sac.py and gorl_sac.py: their building blocks, their CLI, and short real runs."""

import glob
import gzip
import pickle
import re
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import gaussian_sac
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

# small, fast settings for end-to-end runs (a batch of 64 keeps an update at a few ms on a laptop CPU)
FAST_SAC = ["--batch-size", "64", "--log-every", "250"]
FAST_GORL = ["--decoder-epochs", "5", "--critic-refresh-steps", "100"]


# ---------------------------------------------------------------- soft targets and the actors


def test_entropy_soft_target_matches_hand_computation():
    rewards, terminations = torch.tensor([1.0, 2.0, -0.5]), torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([[3.0, 5.0, -1.0], [4.0, 1.0, -2.0]])  # (critics, batch)
    next_log_pi = torch.tensor([-1.0, 0.5, 2.0])
    got = gaussian_sac.soft_q_target(rewards, terminations, next_q, next_log_pi, alpha=0.2, gamma=0.9)
    # r + gamma (1 - term) (min_k Q_k - alpha log pi); a termination keeps only r
    expected = torch.tensor([1.0 + 0.9 * (3.0 + 0.2), 2.0, -0.5 + 0.9 * (-2.0 - 0.4)])
    torch.testing.assert_close(got, expected)


def test_kl_soft_target_matches_hand_computation():
    rewards, terminations = torch.tensor([1.0, 2.0, -0.5]), torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([[3.0, 5.0, -1.0], [4.0, 1.0, -2.0]])
    # KL(N(mu, sigma) || N(0, 1)) = 0.5 (mu^2 + sigma^2 - 1) - log sigma per dimension, summed (the actor's KL is checked
    # against torch.distributions below), at mu = (1, 0), (0, 0), (2, -1) and sigma = (1, 0.5), (1, 1), (2, 1)
    kl_hand = [0.5 + (0.5 * (0.25 - 1) - np.log(0.5)), 0.0, (0.5 * (4 + 4 - 1) - np.log(2.0)) + 0.5]
    next_kl = torch.tensor(kl_hand, dtype=torch.float32)
    got = gorl_sac.soft_q_target(rewards, terminations, next_q, next_kl, alpha=0.2, gamma=0.9)
    expected = torch.tensor(
        [1.0 + 0.9 * (3.0 - 0.2 * kl_hand[0]), 2.0, -0.5 + 0.9 * (-2.0 - 0.2 * kl_hand[2])], dtype=torch.float32
    )
    torch.testing.assert_close(got, expected)


def test_gaussian_actor_log_prob_is_the_squashed_gaussian_density():
    torch.manual_seed(0)
    actor = gaussian_sac.Actor(obs_dim=5, action_dim=3)
    obs = torch.randn(64, 5)
    torch.manual_seed(1)
    z, action, log_prob = actor.get_action(obs)
    mean, log_std = actor(obs)
    base = torch.distributions.Normal(mean, log_std.exp())
    squashed = torch.distributions.TransformedDistribution(base, [torch.distributions.TanhTransform()])
    torch.testing.assert_close(action, torch.tanh(z))
    torch.testing.assert_close(log_prob, squashed.log_prob(action).sum(-1), atol=2e-3, rtol=1e-4)


def test_gorl_actor_is_unsquashed_and_returns_the_kl_to_the_prior():
    torch.manual_seed(0)
    actor = gorl_sac.Actor(obs_dim=5, action_dim=3)
    obs = torch.randn(64, 5)
    eps, kl = actor.get_action(obs)
    mean, log_std = actor(obs)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, log_std.exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    torch.testing.assert_close(kl, expected)
    eps.sum().backward()  # a reparameterised sample: gradients reach the actor
    assert actor.fc_mean.weight.grad.abs().sum() > 0


def test_reset_to_prior_gives_exactly_standard_normal():
    torch.manual_seed(0)
    actor = gorl_sac.Actor(obs_dim=6, action_dim=3)
    torch.nn.init.normal_(actor.fc_logstd.bias, 0.0, 1.0)  # a trained actor is far from the prior
    actor.reset_to_prior()
    obs = torch.randn(4096, 6) * 4
    mean, log_std = actor(obs)
    assert torch.equal(mean, torch.zeros(4096, 3)) and torch.equal(log_std, torch.zeros(4096, 3))
    eps, kl = actor.get_action(obs)
    assert torch.equal(kl, torch.zeros(4096))
    assert abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1.0) < 0.05


def test_twin_critics_are_independent_networks_in_one_call():
    torch.manual_seed(0)
    qf = gaussian_sac.SoftQNetwork(obs_dim=4, action_dim=2)
    obs, actions = torch.randn(8, 4), torch.randn(8, 2)
    q = qf(obs, actions)
    assert q.shape == (2, 8)
    assert not torch.allclose(q[0], q[1])  # different initialisations
    # critic 0 by hand: relu(relu(x W0 + b0) W1 + b1) W2 + b2
    x = torch.cat([obs, actions], -1)
    for i, (w, b) in enumerate(zip(qf.weights, qf.biases)):
        x = x @ w[0] + b[0]
        x = torch.relu(x) if i < 2 else x
    torch.testing.assert_close(q[0], x.squeeze(-1))
    # the actor's view (detach_params) passes gradients to the actions only
    actions.requires_grad_(True)
    qf(obs, actions, detach_params=True).sum().backward()
    assert actions.grad.abs().sum() > 0 and all(p.grad is None for p in qf.parameters())


def test_gorl_critic_sees_latents_through_tanh():
    """The root cause of GoRL-SAC's stage-0 divergence on HopperStand: on raw latents the critic extrapolates past
    tanh's saturation, where every eps decodes to the same action, and the actor follows that slope outward. Through
    tanh the value there is flat and hands the actor no gradient; and in stage 0 (identity decoder) the critic is
    Gaussian SAC's critic of the squashed action exactly."""
    torch.manual_seed(0)
    qf = gorl_sac.SoftQNetwork(obs_dim=4, action_dim=2)
    obs = torch.randn(64, 4)
    far = torch.full((64, 2), 40.0, requires_grad=True)  # decodes (stage 0) to the same action as eps = 5
    torch.testing.assert_close(qf(obs, far), qf(obs, torch.full((64, 2), 5.0)), atol=1e-3, rtol=0.0)
    qf(obs, far, detach_params=True).sum().backward()
    assert far.grad.abs().max() < 1e-6
    gaussian_qf = gaussian_sac.SoftQNetwork(obs_dim=4, action_dim=2)
    gaussian_qf.load_state_dict(qf.state_dict())
    eps = torch.randn(64, 2) * 2
    torch.testing.assert_close(qf(obs, eps), gaussian_qf(obs, torch.tanh(eps)))


@pytest.mark.parametrize("module", [gaussian_sac, gorl_sac])
def test_q_range_warning_names_a_critic_outside_what_rewards_allow(module):
    rewards = np.array([0.0, 0.4, 1.0], dtype=np.float32)  # gamma 0.99: values in [0, 100], margin 0.1 (100 + 100)
    q_values = lambda means: torch.tensor(means)[:, None] + torch.tensor([-1.0, 1.0])  # noqa: E731 (critics, batch)
    assert module.q_range_warning(q_values([55.0, 119.0]), rewards, soft_bonus=0.0, gamma=0.99) is None
    warning = module.q_range_warning(q_values([55.0, 367.0]), rewards, soft_bonus=0.0, gamma=0.99)
    assert warning.startswith("a critic's mean Q, 367.0, is outside [0.0, 100.0]"), warning
    assert module.q_range_warning(q_values([-21.0, 5.0]), rewards, soft_bonus=0.0, gamma=0.99) is not None
    # a soft bonus widens the range on its side: +0.5 a step (an entropy bonus) allows values up to 149.5
    assert module.q_range_warning(q_values([140.0, 140.0]), rewards, soft_bonus=0.5, gamma=0.99) is None
    assert module.q_range_warning(q_values([-60.0, -60.0]), rewards, soft_bonus=-0.5, gamma=0.99) is None


@pytest.mark.parametrize("module", [gaussian_sac, gorl_sac])
def test_action_repeat_holds_the_action_and_sums_rewards_until_the_episode_ends(module):
    env_id = short_pendulum_env_id(max_episode_steps=3)
    repeated, single = module.ActionRepeat(gym.make(env_id), repeat=2), gym.make(env_id)
    repeated.reset(seed=0)
    single.reset(seed=0)
    action = np.array([0.7], dtype=np.float32)
    rewards = [single.step(action)[1] for _ in range(3)]
    obs, reward, terminated, truncated, _ = repeated.step(action)
    assert reward == pytest.approx(rewards[0] + rewards[1]) and not truncated
    obs, reward, terminated, truncated, _ = repeated.step(action)  # the time limit cuts the second repeat short
    assert reward == pytest.approx(rewards[2]) and truncated


# ---------------------------------------------------------------- replay buffer and transitions


def test_replay_buffer_shapes_and_wraparound():
    rb = gorl_sac.ReplayBuffer(size=5, obs_dim=3, action_dim=2, seed=0)
    for step in range(4):  # 4 vector steps of 2 envs into 5 slots: the ring wraps and keeps the 5 newest
        ids = np.array([2 * step, 2 * step + 1], dtype=np.float32)
        rb.add(
            np.repeat(ids[:, None], 3, 1),
            np.repeat(ids[:, None], 3, 1) + 0.5,
            np.repeat(ids[:, None], 2, 1),
            ids,
            np.zeros(2),
            -np.repeat(ids[:, None], 2, 1),
        )
    assert rb.count == 5 and rb.pos == 3
    assert sorted(rb.rewards.tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    np.testing.assert_array_equal(rb.obs[:, 0], [5.0, 6.0, 7.0, 3.0, 4.0])
    np.testing.assert_array_equal(rb.pre_squash_actions[:, 0], -rb.obs[:, 0])
    obs, next_obs, actions, rewards, terminations = rb.sample(64)
    assert obs.shape == next_obs.shape == (64, 3) and actions.shape == (64, 2) and rewards.shape == terminations.shape == (64,)
    assert all(t.dtype == torch.float32 for t in (obs, next_obs, actions, rewards, terminations))
    torch.testing.assert_close(next_obs, obs + 0.5)  # rows stay together
    torch.testing.assert_close(rewards, obs[:, 0])
    assert set(rewards.tolist()) <= {3.0, 4.0, 5.0, 6.0, 7.0}


def test_gaussian_replay_buffer_partial_fill_samples_only_stored_rows():
    rb = gaussian_sac.ReplayBuffer(size=100, obs_dim=1, action_dim=1, seed=0)
    rb.add(np.ones((3, 1)), np.ones((3, 1)), np.ones((3, 1)), np.array([1.0, 2.0, 3.0]), np.zeros(3))
    assert set(rb.sample(200)[3].tolist()) == {1.0, 2.0, 3.0}


def short_pendulum_env_id(max_episode_steps):
    env_id = f"PendulumShort{max_episode_steps}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, "gymnasium.envs.classic_control.pendulum:PendulumEnv", max_episode_steps=max_episode_steps)
    return env_id


def short_pendulum_vector_env(module, max_episode_steps):
    return module.make_vector_env(short_pendulum_env_id(max_episode_steps), 2, seed=0)


@pytest.mark.parametrize("module", [gaussian_sac, gorl_sac])
def test_truncation_stores_true_last_observation_and_keeps_bootstrapping(module):
    """A time limit ends the episode (SAME_STEP autoreset hands back the next episode's first observation), but the
    stored transition must lead to the true last observation and must not be marked done."""
    envs = short_pendulum_vector_env(module, max_episode_steps=3)
    obs, _ = envs.reset(seed=0)
    for _ in range(3):
        action = np.full((2, 1), 0.5, dtype=np.float32)
        next_obs, rewards, terminations, truncations, infos = envs.step(action)
        stored_next = module.real_next_obs(next_obs, terminations, truncations, infos)
        last_obs, obs = obs, next_obs
    envs.close()
    assert truncations.all() and not terminations.any()
    final = np.stack(infos["final_obs"])
    np.testing.assert_array_equal(stored_next, final)
    assert not np.allclose(next_obs, final)  # the reset observation is something else
    # the true last observation continues the trajectory: theta moved by a small step from the previous one
    cos_sin_distance = np.abs(final[:, :2] - last_obs[:, :2]).max()
    assert cos_sin_distance < 0.5

    rb = module.ReplayBuffer(size=4, obs_dim=3, action_dim=1, seed=0)
    extra = [action] if module is gorl_sac else []
    rb.add(last_obs, stored_next, action, rewards, terminations, *extra)
    np.testing.assert_array_equal(rb.next_obs[:2], final)
    assert (rb.terminations[:2] == 0).all()
    # so the soft target bootstraps through the time limit
    target = module.soft_q_target(
        torch.from_numpy(rb.rewards[:2]), torch.from_numpy(rb.terminations[:2]), torch.ones(2, 2), torch.zeros(2), 0.1, 0.9
    )
    torch.testing.assert_close(target, torch.from_numpy(rb.rewards[:2]) + 0.9)


def test_termination_is_stored_as_done_with_its_final_observation():
    envs = gaussian_sac.make_vector_env(gaussian_sac.resolve_env_id("tests.envs:Bandit-v0"), 2, seed=0)
    envs.reset(seed=0)
    next_obs, rewards, terminations, truncations, infos = envs.step(np.full((2, 1), 0.6, dtype=np.float32))
    envs.close()
    assert terminations.all()
    stored_next = gaussian_sac.real_next_obs(next_obs, terminations, truncations, infos)
    np.testing.assert_array_equal(stored_next, np.stack(infos["final_obs"]))
    target = gaussian_sac.soft_q_target(
        torch.from_numpy(rewards).float(),
        torch.from_numpy(terminations).float(),
        torch.full((2, 2), 100.0),
        torch.zeros(2),
        0.1,
        0.9,
    )
    torch.testing.assert_close(target, torch.from_numpy(rewards).float())  # no bootstrap from a terminal state


def test_no_episode_end_passes_observations_through():
    next_obs = np.arange(6, dtype=np.float32).reshape(2, 3)
    no = np.zeros(2, dtype=bool)
    assert gaussian_sac.real_next_obs(next_obs, no, no, {}) is next_obs


# ---------------------------------------------------------------- stage transition


def test_identity_decoder_inverts_exactly():
    decoder = gorl_sac.FlowDecoder(obs_dim=4, action_dim=2, flow_steps=10)
    obs, x0 = torch.randn(32, 4), torch.randn(32, 2) * 2
    eps = gorl_sac.invert_decoder(decoder, obs, x0)
    assert torch.equal(eps, x0) and torch.equal(decoder(obs, eps), x0)


def test_relabelled_latents_decode_back_to_the_stored_actions():
    """The buffer relabelling at a stage change: the new decoder's inverse of each stored pre-squash action decodes
    back to that action, for a decoder fit on a state-dependent two-mode distribution."""
    torch.manual_seed(0)
    obs, actions = two_mode_dataset(2000, noise=0.05)
    decoder = gorl_sac.FlowDecoder(obs_dim=2, action_dim=1, flow_steps=10)
    _, val_loss, _ = gorl_sac.fit_decoder(
        decoder, obs, actions, epochs=20, batch_size=1024, lr=3e-3, noise_draws=8, patience=20
    )
    assert np.isfinite(val_loss)
    with torch.no_grad():
        assert (decoder(obs, torch.zeros_like(actions)) - 0.0).abs().max() > 0.05  # far from the identity now

        eps = gorl_sac.invert_decoder(decoder, obs, actions, chunk=512)  # chunked like a large buffer
        round_trip = (decoder(obs, eps) - actions).abs()
        assert round_trip.max() < 1e-3, round_trip.max()
        # the explicit backward step alone (one iteration) is visibly worse
        explicit = (decoder(obs, gorl_sac.invert_decoder(decoder, obs, actions, iterations=1)) - actions).abs()
        assert explicit.max() > 10 * round_trip.max() and explicit.max() < 0.1, explicit.max()
        # the relabelled latents of the data look roughly like draws from the prior the decoder was fit on (median |eps|:
        # N(0, 1) has 0.674; 0.50 measured, as this short fit decodes the modes ~0.04 further apart than the data)
        assert abs(eps.mean().item()) < 0.3 and 0.4 < eps.abs().median().item() < 0.85, (eps.mean(), eps.abs().median())


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "script, flags, message",
    [
        ("gaussian_sac.py", ["--env-id", "NoSuchTask"], "error: unknown env id 'NoSuchTask'"),
        (
            "gaussian_sac.py",
            ["--env-id", "Pendulum-v1", "--total-timesteps", "100"],
            "error: --total-timesteps 100 must be at least 5001, past --learning-starts",
        ),
        ("gorl_sac.py", ["--env-id", "CartPole-v1"], "error: CartPole-v1 has action space Discrete(2)"),
        (
            "gorl_sac.py",
            ["--env-id", "Pendulum-v1", "--total-timesteps", "9000"],
            "error: --total-timesteps 9000 leaves stages of [3500, 1250, 2250] env steps after 1000 decoder-data steps per "
            "refit: every stage needs a step and stage 0 more than --learning-starts 5000",
        ),
        ("gaussian_sac.py", ["--policy-frequency", "0"], "error: --policy-frequency must be at least 1, got 0"),
        ("gorl_sac.py", ["--decoder-data-steps", "5"], "error: --decoder-data-steps must be at least 10 (10 transitions"),
        ("gorl_sac.py", ["--num-stages", "14"], "error: --num-stages 14 must be at most 13 with default --decoder-data-steps"),
        ("gaussian_sac.py", ["--q-lr", "nan"], "error: --q-lr must be a finite number in (0, inf), got nan"),
        ("gorl_sac.py", ["--policy-lr", "-1"], "error: --policy-lr must be a finite number in (0, inf), got -1.0"),
        ("gorl_sac.py", ["--gamma", "1"], "error: --gamma must be a finite number in [0, 1), got 1.0"),
        ("gaussian_sac.py", ["--tau", "0"], "error: --tau must be a finite number in (0, 1], got 0.0"),
    ],
)
def test_bad_input_stops_with_one_line(script, flags, message, tmp_path):
    result = run_script(script, *flags, cwd=tmp_path)
    check_one_line_error(result, message)


@pytest.mark.parametrize("script", ["gaussian_sac.py", "gorl_sac.py"])
def test_non_finite_loss_stops_the_run_with_one_line(script, tmp_path):
    """NaN rewards poison the soft target: the run must stop at its next log, not write garbage."""
    flags = ["--env-id", "tests.envs:NanRewardPendulum-v0", "--total-timesteps", "600", "--learning-starts", "200"]
    flags += ["--eval-episodes", "1", *FAST_SAC] + (["--num-stages", "1"] if script == "gorl_sac.py" else [])
    result = run_script(script, *flags, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: non-finite loss (critic nan"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- end-to-end runs

CARTPOLE = ["--env-id", "CartpoleBalance", "--total-timesteps", "1500", "--learning-starts", "200", "--eval-every", "500"]
CARTPOLE += ["--eval-episodes", "1", "--save-model", "--action-repeat", "2", *FAST_SAC]


def test_gorl_sac_runs_two_stages_on_dm_control_and_reloads(tmp_path):
    flags = [*CARTPOLE, "--num-stages", "2", "--decoder-data-steps", "200", *FAST_GORL]
    result = run_script("gorl_sac.py", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stage 0 done: decoder refit on 100 (s, a) pairs" in result.stdout  # 200 env steps, each action held for 2 of them
    scalars = check_two_stage_run(tmp_path)
    assert values(scalars, "losses/relabel_error")[0] < 0.05
    for tag in ["losses/qf1_loss", "losses/actor_loss", "losses/alpha", "losses/latent_kl", "charts/SPS"]:
        assert np.isfinite(values(scalars, tag)).all(), tag
    final_step, final_eval = scalars["eval/episodic_return"][-1]
    assert final_step == 1500
    check_reload("gorl_sac.py", tmp_path, final_eval)


def test_gorl_sac_with_identity_decoder_is_gaussian_sac(tmp_path):
    """One stage, KL off (alpha 0, not tuned): the decoder stays the identity and the critics see tanh(eps) = a, so the
    run must be Gaussian SAC's, number for number."""
    flags = ["--env-id", "Pendulum-v1", "--total-timesteps", "1000", "--learning-starts", "300", "--eval-every", "500"]
    flags += ["--eval-episodes", "1", "--alpha", "0", "--no-autotune", "--save-model", *FAST_SAC]
    runs = []
    for script, extra in [("gaussian_sac.py", []), ("gorl_sac.py", ["--num-stages", "1"])]:
        (tmp_path / script).mkdir()
        assert run_script(script, *flags, *extra, cwd=tmp_path / script).returncode == 0
        run_dir = only_run_dir(tmp_path / script)
        runs.append((read_scalars(run_dir), torch.load(glob.glob(f"{run_dir}/*.pt")[0], weights_only=False)))
    (gaussian, gaussian_model), (gorl, gorl_model) = runs
    assert len(gaussian["charts/episodic_return"]) == 5 and len(gaussian["losses/actor_loss"]) == 4
    for tag in set(gaussian) - {"charts/SPS"}:
        assert gaussian[tag] == gorl[tag], tag
    for network in ("actor", "qf"):
        for name, tensor in gaussian_model[network].items():
            assert torch.equal(tensor, gorl_model[network][name]), f"{network}.{name}"


def test_gaussian_sac_runs_on_dm_control_and_reloads(tmp_path):
    result = run_script("gaussian_sac.py", *CARTPOLE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scalars = read_scalars(only_run_dir(tmp_path))
    assert [step for step, _ in scalars["eval/episodic_return"]] == [0, 500, 1000, 1500]
    assert values(scalars, "charts/episodic_length") == [500.0]  # 1000 env steps, each action held for 2
    for tag in ["losses/qf1_values", "losses/qf_loss", "losses/actor_loss", "losses/alpha", "losses/alpha_loss", "charts/SPS"]:
        assert np.isfinite(values(scalars, tag)).all(), tag
    check_reload("gaussian_sac.py", tmp_path, scalars["eval/episodic_return"][-1][1])


@pytest.mark.parametrize(
    "script, extra",
    [("gaussian_sac.py", []), ("gorl_sac.py", ["--num-stages", "2", "--decoder-data-steps", "200", *FAST_GORL])],
)
def test_hidden_size_runs_and_the_model_keeps_its_width(script, extra, tmp_path):
    """--hidden-size through a whole run: the saved model carries the width of the run (so it acts again as in its last
    evaluation), and the run's logs stay finite."""
    flags = ["--hidden-size", "64"]
    result = run_script(script, *CARTPOLE, *extra, *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scalars = read_scalars(only_run_dir(tmp_path))
    assert np.isfinite(values(scalars, "losses/qf1_values")).all()
    checkpoint = torch.load(check_reload(script, tmp_path, scalars["eval/episodic_return"][-1][1]), weights_only=False)
    assert checkpoint["args"]["hidden_size"] == 64
    assert checkpoint["actor"]["trunk.0.weight"].shape == (64, 5) and checkpoint["qf"]["weights.1"].shape == (2, 64, 64)


@pytest.mark.parametrize("module", [gaussian_sac, gorl_sac])
def test_checkpoints_from_before_a_flag_was_dropped_still_load(module, tmp_path):
    """A checkpoint saved before a flag was dropped carries it in its args: at the behaviour the script now always has, it
    is ignored, and the model is evaluated or the run resumed as before; otherwise the script refuses it in one line, as
    the run cannot go on without it."""
    saved = {**vars(module.Args(env_id="Pendulum-v1")), **module.DROPPED_FLAGS}
    networks = {"actor": module.Actor(obs_dim=3, action_dim=1), "qf": module.SoftQNetwork(obs_dim=3, action_dim=1)}
    networks |= {"decoder": gorl_sac.FlowDecoder(3, 1, 10)} if module is gorl_sac else {}
    model, state = str(tmp_path / "model.pt"), str(tmp_path / "training_state.pt")

    def save(run_args):  # a model checkpoint, and a training state of which only the args matter here
        module.save_checkpoint(model, SimpleNamespace(**run_args), networks)
        with gzip.open(state, "wb") as f:
            pickle.dump({"script": f"{module.__name__}.py", "args": run_args}, f)

    save(saved)
    loaded_args, loaded_actor, *_, envs = module.load_checkpoint(model, 1)
    envs.close()
    assert loaded_args.env_id == "Pendulum-v1"
    torch.testing.assert_close(loaded_actor.state_dict(), networks["actor"].state_dict())
    resumed, _ = module.load_training_state(module.Args(resume=state))
    assert resumed.env_id == "Pendulum-v1" and resumed.resume == state
    for name in module.DROPPED_FLAGS:
        save({**saved, name: True})
        flag = f"--{name.replace('_', '-')} True"
        with pytest.raises(
            ValueError, match=f"^{re.escape(f'--eval-checkpoint {model} comes from a run with {flag}, which')}"
        ):
            module.load_checkpoint(model, 1)
        with pytest.raises(ValueError, match=f"^{re.escape(f'--resume {state} comes from a run with {flag}, which')}"):
            module.load_training_state(module.Args(resume=state))


def test_same_seed_same_run(tmp_path):
    """Determinism through a stage change: two runs with one seed log identical numbers."""
    flags = ["--env-id", "Pendulum-v1", "--total-timesteps", "1000", "--learning-starts", "200", "--eval-every", "500"]
    flags += ["--eval-episodes", "1", "--num-stages", "2", "--decoder-data-steps", "200", *FAST_SAC, *FAST_GORL]
    runs = []
    for name in ["a", "b"]:
        (tmp_path / name).mkdir()
        assert run_script("gorl_sac.py", *flags, cwd=tmp_path / name).returncode == 0
        runs.append(read_scalars(only_run_dir(tmp_path / name)))
    for tag in [
        "eval/episodic_return",
        "charts/episodic_return",
        "losses/qf1_loss",
        "losses/actor_loss",
        "losses/decoder_val",
    ]:
        assert runs[0][tag] == runs[1][tag], tag


@pytest.mark.parametrize(
    "script, extra",
    [
        ("gaussian_sac.py", []),
        ("gorl_sac.py", ["--num-stages", "2", "--decoder-data-steps", "1000", "--critic-refresh-steps", "500"]),
    ],
)
def test_learns_pendulum(script, extra, tmp_path):
    """A random policy scores about -1200 on Pendulum-v1; SAC swings it up within a few thousand steps."""
    flags = ["--env-id", "Pendulum-v1", "--total-timesteps", "6000", "--learning-starts", "1000", "--eval-every", "1000"]
    flags += ["--eval-episodes", "5", *FAST_SAC]
    result = run_script(script, *flags, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    evals = values(read_scalars(only_run_dir(tmp_path)), "eval/episodic_return")
    assert evals[0] < -900, evals  # the untrained policy is no better than random
    assert max(evals[-2:]) > -400, evals

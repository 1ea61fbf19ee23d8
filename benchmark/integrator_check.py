"""How much a flow decoder's sampler narrows what it decodes: fit gorl_ppo's FlowDecoder on state-dependent Gaussian
actions a = 0.5 + 0.3 s + sd * noise (sd per row), then decode N(0, I) latents with the same weights by 10 Euler steps
(the paper's sampler), 100 Euler steps (close to the exact flow), and 10 midpoint steps (the scripts' sampler since
2026-12-03); prints each one's std over the data's, per action dimension.

    python benchmark/integrator_check.py
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gorl_ppo  # noqa: E402


def euler(decoder, obs, z, steps):
    obs_normalized, x = decoder.obs_rms(obs), z.clone()
    for k in range(steps):
        x = x - decoder.velocity_at(obs_normalized, x, torch.full_like(x[:, :1], 1 - k / steps)) / steps
    return x


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    obs = torch.rand(20000, 3) * 2 - 1
    for sd in (0.2, 0.4, 1.0, 2.0):
        actions = 0.5 + 0.3 * obs[:, :2] + sd * torch.randn(20000, 2)
        decoder = gorl_ppo.FlowDecoder(3, 2, flow_steps=10)
        gorl_ppo.fit_decoder(decoder, obs, actions, epochs=50, batch_size=1024, lr=1e-3, noise_draws=8, patience=10)
        states = obs[:512].repeat(64, 1)
        z, mean = torch.randn(len(states), 2), 0.5 + 0.3 * states[:, :2]
        with torch.no_grad():
            decoded = {
                "10 Euler steps": euler(decoder, states, z, 10),
                "100 Euler steps": euler(decoder, states, z, 100),
                "10 midpoint steps": decoder(states, z),
            }
        ratios = ", ".join(
            f"{name} {' '.join(f'{r:.3f}' for r in ((x - mean).std(0) / sd).tolist())}" for name, x in decoded.items()
        )
        print(f"data sd {sd}: std ratio per dimension: {ratios}", flush=True)


if __name__ == "__main__":
    main()

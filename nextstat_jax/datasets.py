"""Bundled workspaces, built in code: the seed notebook's model and the
50-channel benchmark model. Each function returns a fresh pyhf workspace dict.
"""

from __future__ import annotations

import numpy as np

__all__ = ["seed_workspace", "benchmark_workspace"]


def seed_workspace(n_bins: int = 8) -> dict:
    """The seed notebook's workspace: one channel "SR" with a Gaussian
    "signal" (normfactor "mu") over an exponential "background" (normsys
    "bkg_norm" 1.08/0.92), observed data = signal + background."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centers = 0.5 * (edges[:-1] + edges[1:])
    width = edges[1] - edges[0]
    signal = 40.0 * np.exp(-0.5 * ((centers - 0.5) / 0.12) ** 2) * width
    background = 200.0 * np.exp(-2.0 * centers) * width
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {"name": "signal", "data": signal.tolist(),
                     "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {"name": "background", "data": background.tolist(),
                     "modifiers": [{"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.08, "lo": 0.92}}]},
                ],
            }
        ],
        "observations": [{"name": "SR", "data": (signal + background).tolist()}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


def benchmark_workspace(n_channels: int = 50, n_bins: int = 4, seed: int = 20240601) -> dict:
    """``n_channels`` channels of ``n_bins`` bins: a "signal" with the shared
    POI "mu" and a "background" with a per-channel staterror, so the model has
    ``1 + n_channels * n_bins`` parameters (201 by default). Observations are
    a Poisson draw of signal + background (fixed ``seed``)."""
    rng = np.random.default_rng(seed)
    x = np.arange(n_bins)
    channels, observations = [], []
    for i in range(n_channels):
        sig = 2.0 + 3.0 * np.exp(-0.5 * ((x - 1.5 - 0.02 * i) / 1.2) ** 2)
        bkg = (60.0 + i) * np.exp(-0.3 * x)
        unc = 0.05 * bkg + 0.5
        name = f"ch{i:02d}"
        channels.append({
            "name": name,
            "samples": [
                {"name": "signal", "data": np.round(sig, 6).tolist(),
                 "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                {"name": "background", "data": np.round(bkg, 6).tolist(),
                 "modifiers": [{"name": f"staterror_{name}", "type": "staterror",
                                "data": np.round(unc, 6).tolist()}]},
            ],
        })
        observations.append({"name": name, "data": rng.poisson(sig + bkg).astype(float).tolist()})
    return {
        "channels": channels,
        "observations": observations,
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }

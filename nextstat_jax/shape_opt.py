"""Gradient-based optimisation of a sample's shape under a fixed total yield.

The yields are ``budget * softmax(logits)`` (so the budget holds exactly); the
objective is the expected discovery significance Z0 on Asimov data (expected
data of the current yields at mu = 1 and nominal nuisance parameters), whose
gradient flows through the profile fits by the envelope theorem.  Several
restarts run at once with ``vmap`` (the landscape is not concave: from the
nominal shape Adam can stall in a local optimum), each as one jitted
``lax.scan`` of optax Adam steps.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import numpy as np
import optax

from ._x64 import f64, public, x64
from .fits import make_problem
from .model import Model
from .solver import SolverOptions
from .teststats import safe_sqrt, statistic

__all__ = ["asimov_q0", "ShapeOptResult", "optimise_shape"]


@public
def asimov_q0(model: Model, channel: str, sample: str, yields, options: SolverOptions = SolverOptions()):
    """q0 of the model with ``yields`` for ``sample`` on its own Asimov data
    (mu = 1, nominal nuisance parameters). Differentiable w.r.t. ``yields``."""
    m = model.with_yields(channel, sample, yields)
    pars = m.init.at[m.poi_index].set(1.0)
    prob = make_problem(m, m.expected_data(pars))
    return statistic(prob, 0.0, "q0", m.poi_index, options).value


class ShapeOptResult(NamedTuple):
    """``yields`` (n,) best shape; ``q0``/``z0`` its value; ``restart_q0``
    (R,) final q0 of each restart; ``history`` (R, steps) q0 along each run;
    ``init_names`` labels of the restarts; ``seconds`` compute time after
    compilation; ``evaluations`` q0+gradient evaluations."""

    yields: np.ndarray
    q0: float
    z0: float
    restart_q0: np.ndarray
    restart_yields: np.ndarray
    history: np.ndarray
    init_names: list
    seconds: float
    evaluations: int


@functools.partial(jax.jit, static_argnames=("channel", "sample", "steps", "lr"))
def _run(model, logits0, budget, *, channel, sample, steps, lr):
    opt = optax.adam(lr)

    def objective(z):
        y = budget * jax.nn.softmax(z)
        return -safe_sqrt(asimov_q0(model, channel, sample, y))

    def one(z0):
        def step(carry, _):
            z, state = carry
            loss, g = jax.value_and_grad(objective)(z)
            upd, state = opt.update(g, state, z)
            return (optax.apply_updates(z, upd), state), loss**2

        (z, _), hist = jax.lax.scan(step, (z0, opt.init(z0)), None, length=steps)
        y = budget * jax.nn.softmax(z)
        return y, asimov_q0(model, channel, sample, y), hist

    return jax.vmap(one)(logits0)


@x64
def optimise_shape(model: Model, channel: str, sample: str, *, budget=None, steps: int = 300,
                   lr: float = 0.1, n_random: int = 6, key=None) -> ShapeOptResult:
    """Maximise Asimov Z0 over the shape of ``sample`` in ``channel`` with the
    total yield fixed to ``budget`` (default: the nominal total).

    Restarts: the nominal shape, an equal split, and ``n_random`` random
    logits; all optimised together (vmap) with Adam for ``steps`` steps."""
    nominal = np.asarray(model.sample_yields(channel, sample))
    n = nominal.size
    budget = float(nominal.sum()) if budget is None else float(budget)
    key = jax.random.key(0) if key is None else key
    inits = [np.log(np.clip(nominal / nominal.sum(), 1e-12, None)), np.zeros(n)]
    names = ["nominal shape", "equal split"]
    rnd = np.asarray(jax.random.normal(key, (n_random, n)))
    inits += list(rnd)
    names += [f"random {i}" for i in range(n_random)]
    logits0 = f64(np.stack(inits))
    args = (model, logits0, f64(budget))
    kw = dict(channel=channel, sample=sample, steps=int(steps), lr=float(lr))
    jax.block_until_ready(_run(*args, **kw))  # compile
    t0 = time.perf_counter()
    ys, q0s, hist = jax.block_until_ready(_run(*args, **kw))
    seconds = time.perf_counter() - t0
    ys, q0s, hist = np.asarray(ys), np.asarray(q0s), np.asarray(hist)
    best = int(np.argmax(q0s))
    return ShapeOptResult(ys[best], float(q0s[best]), float(np.sqrt(max(q0s[best], 0.0))), q0s, ys, hist,
                          names, seconds, len(names) * int(steps))

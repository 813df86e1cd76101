"""Where the seed model's batched time goes: a diagnostic, not a table.

Times, in turns (so the machine's drift reaches all alike; p10 and median of
``--rounds`` x 5 calls, ms):

* a toy hypotest of 2 x N toys, its toy chunk, the sampling alone and the
  test statistics alone on pre-drawn toys, and q0 for 2N yield vectors
  (the same number of fits as the statistics);
* the pieces of one unrolled Newton iteration over 2N toy fits: the
  derivatives (value, gradient, Hessian-vector products), the NLL alone (what
  each line-search trial costs), the Newton direction and the whole iteration;

and prints the Newton steps the toys' free and fixed-POI fits need from the
init and from their predicted optima (``toy_starts.py``, what toy chunks use;
the unrolled loop runs on the whole batch until at most 1/``TAIL`` of it goes
on).

    python benchmarks/profile_seed.py [--n 2048] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import nextstat_jax as nsj  # noqa: E402
from nextstat_jax import solver, toys  # noqa: E402
from nextstat_jax.datasets import seed_workspace  # noqa: E402
from nextstat_jax.fits import _derivatives, _objective_fns, _solve, fix_poi, make_problem  # noqa: E402
from nextstat_jax.structure import hessian_structure  # noqa: E402
from nextstat_jax.teststats import profile_inits, statistic  # noqa: E402
from nextstat_jax.toy_starts import predicted_starts  # noqa: E402
from nextstat_jax.unrolled import unrolled_vmap  # noqa: E402

from _common import runs_interleaved  # noqa: E402


def in_turns(fns: dict, rounds: int) -> dict:
    """name -> (p10, median) ms of each zero-argument blocking callable,
    5 calls of each per round (``_common.runs_interleaved``)."""
    runs = runs_interleaved(list(fns.values()), repeat=rounds, warmup=3, calls=5)
    return {k: (1e3 * float(np.percentile(v, 10)), 1e3 * statistics.median(v)) for k, v in zip(fns, runs)}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2048, help="toys per hypothesis")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    n = args.n
    model = nsj.from_pyhf(seed_workspace())
    opts = nsj.SolverOptions()
    prob = make_problem(model)
    poi, mu, key = model.poi_index, jnp.asarray(1.0), jax.random.PRNGKey(0)
    _, thetas = toys._setup(prob, mu, "qtilde", poi, opts)
    keys, idx = jax.random.split(key), jnp.arange(n, dtype=jnp.uint32)
    sample = jax.jit(lambda th, ks, ix: jnp.stack(
        [jax.vmap(lambda i: toys.sample_toys(ks[h], model, th[h], i))(ix) for h in range(2)]))
    data = sample(thetas, keys, idx)
    stats = jax.jit(lambda p, d, m, s: jax.vmap(jax.vmap(  # from the predicted optima, as in the chunk
        lambda x, t: statistic(p._replace(data=x), m, "qtilde", poi, opts, starts=t, trust_starts=True)))(d, s).value)
    nominal = np.asarray(model.sample_yields("SR", "signal"))
    ys = jnp.asarray(nominal * np.exp(0.3 * np.random.default_rng(0).standard_normal((2 * n, nominal.size))))
    q0 = jax.jit(jax.vmap(lambda y: nsj.q0(model.with_yields("SR", "signal", y))))

    # the Newton steps of the toys' fits, from the init and from their predicted optima (as toy chunks do)
    inits, fixeds = profile_inits(prob, poi, (mu,))
    starts = predicted_starts(prob, thetas, inits, fixeds, data)  # (2, n, 2, P)

    def steps(fixed_poi, predicted):
        def one(d, s):
            p = fix_poi(prob._replace(data=d), poi, mu) if fixed_poi else prob._replace(data=d)
            return _solve(p._replace(start=s[int(fixed_poi)] if predicted else None), opts).n_iter
        return np.asarray(jax.jit(jax.vmap(jax.vmap(one)))(data, starts)).ravel()

    for label, fixed_poi in (("free", False), ("fixed-POI", True)):
        for start, predicted in (("init", False), ("predicted optimum", True)):
            counts = np.bincount(steps(fixed_poi, predicted))
            print(f"toy {label} fits from the {start}, Newton steps: "
                  + ", ".join(f"{k}: {c}" for k, c in enumerate(counts) if c))

    # one unrolled iteration over the flat batch of 2n toys, from a common start
    flat = data.reshape(2 * n, -1)
    theta = jnp.tile(jnp.asarray([[0.8, 0.1]]), (2 * n, 1))
    st, prep = hessian_structure(model.layout), model.prepare()
    derivs = lambda th, d: _derivatives(model, d, prep)[0](th)
    g_y = jax.jit(unrolled_vmap(derivs))(theta, flat)[1:]
    free = jnp.ones(theta.shape, bool)
    lo, hi = prob.bounds[:, 0], prob.bounds[:, 1]

    def iteration(th, d):
        ctx = solver._Context((model, d, prep), lo, hi, prob.fixed)
        return solver._iteration(_objective_fns, st, opts, None, ctx, solver._start(th))

    pieces = {
        "derivatives": (derivs, (theta, flat)),
        "NLL (one line-search trial)": (lambda th, d: _derivatives(model, d, prep)[1](th), (theta, flat)),
        "Newton direction": (lambda g, y, f: solver.newton_direction(g, y, f, st), (*g_y, free)),
        "whole iteration": (iteration, (theta, flat)),
    }
    fns = {
        f"toy hypotest 2 x {n}": lambda: nsj.hypotest(model, 1.0, calculator="toybased", n_toys=n, key=key,
                                                      progress=False),
        "its toy chunk": lambda: jax.block_until_ready(
            toys._toy_chunk(prob, thetas, mu, "qtilde", poi, opts, keys, idx)),
        "sampling alone": lambda: sample(thetas, keys, idx).block_until_ready(),
        "statistics alone": lambda: stats(prob, data, mu, starts).block_until_ready(),
        f"q0 x {2 * n} (as many fits)": lambda: q0(ys).block_until_ready(),
    }
    for name, (fn, fargs) in pieces.items():
        compiled = jax.jit(unrolled_vmap(fn))
        fns[f"iteration piece: {name}"] = lambda c=compiled, a=fargs: jax.block_until_ready(c(*a))
    for name, (p10, med) in in_turns(fns, args.rounds).items():
        print(f"{name:45s} p10 {p10:7.2f} ms   median {med:7.2f} ms")


if __name__ == "__main__":
    main()

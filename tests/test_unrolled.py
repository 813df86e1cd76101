"""unrolled_vmap == jax.vmap, primitive by primitive and on the solver."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import nextstat_jax as nsj
from nextstat_jax import element_loop, unrolled
from nextstat_jax.datasets import seed_workspace
from nextstat_jax.solver import KINK_EPS
from nextstat_jax.unrolled import Unsupported, unrolled_vmap

pytestmark = pytest.mark.usefixtures("x64")

RNG = np.random.default_rng(7)
X = RNG.normal(size=(37, 3))
W = RNG.normal(size=(3, 4))


def _same(fun, *args, in_axes=0, rtol=1e-13):
    ref = jax.jit(jax.vmap(fun, in_axes=in_axes))(*args)
    out = jax.jit(unrolled_vmap(fun, in_axes=in_axes))(*args)
    ref_l, ref_t = jax.tree_util.tree_flatten(ref)
    out_l, out_t = jax.tree_util.tree_flatten(out)
    assert ref_t == out_t
    for r, o in zip(ref_l, out_l):
        r, o = np.asarray(r), np.asarray(o)
        assert r.shape == o.shape and r.dtype == o.dtype
        if np.issubdtype(r.dtype, np.floating):
            np.testing.assert_allclose(o, r, rtol=rtol, atol=1e-300, equal_nan=True)
        else:
            np.testing.assert_array_equal(o, r)


def test_elementwise_and_structure():
    def f(x, w):
        y = jnp.exp(x) @ w + jnp.sum(x ** 2)
        z = jnp.where(x > 0, x, -x)[::-1]
        t = jnp.concatenate([x, jnp.tanh(x[:2]), jnp.zeros(1)])
        p = jnp.pad(x, (2, 1), constant_values=3.0)
        r = jnp.reshape(jnp.outer(x, x), (9,))[jnp.array([0, 4, 8, 2])]
        return y, z, t, p, r, jnp.clip(x, -0.5, 0.5), x.astype(jnp.int32), jnp.stack([x, 2 * x], 1).T

    _same(f, X, W, in_axes=(0, None))


def test_reductions_and_contractions():
    def f(x):
        m = jnp.outer(x, jnp.arange(1.0, 4.0))
        return (jnp.max(x), jnp.min(m, axis=0), jnp.prod(x), jnp.any(x > 1), jnp.all(x < 2),
                jnp.cumsum(x), jnp.cumprod(x[::-1]), jnp.einsum("ij,jk->ik", m, m), m @ x)

    _same(f, X, rtol=1e-12)


def test_gathers_scatters_and_gradients():
    idx = jnp.array([0, 2, 2, 5])

    def f(x):
        g = jax.grad(lambda v: jnp.sum(jnp.log1p(v[jnp.array([0, 2, 2])] ** 2)))(x)
        fill = x.at[idx].get(mode="fill", fill_value=-7.0)
        upd = jnp.zeros(5).at[jnp.array([1, 1, 4])].add(x)
        put = jnp.zeros(5).at[jnp.array([0, 3])].set(x[:2])
        h = jax.hessian(lambda v: jnp.sum(jnp.exp(v) * v[::-1]))(x)
        return g, fill, upd, put, h, lax.dynamic_slice(x, (1,), (2,))

    _same(f, X)


def test_control_flow_per_element():
    def f(x):
        def body(c):
            a, k = c
            return a * 0.5, k + 1

        a, k = lax.while_loop(lambda c: c[0] > 0.1, body, (jnp.sum(jnp.abs(x)), 0))
        c = lax.cond(x[0] > 0, lambda v: v * 2, lambda v: v + 1, x)
        s = lax.fori_loop(0, 3, lambda i, acc: acc + x[i] * i, 0.0)
        sw = lax.switch(jnp.clip(jnp.int32(jnp.abs(x[1]) * 2), 0, 2),
                        [lambda v: v, lambda v: -v, lambda v: v ** 2], x)
        return a, k, c, s, sw, jax.nn.softplus(x), jax.nn.logsumexp(x)

    _same(f, X)


def test_while_with_a_batched_predicate():
    """A vmapped while_loop inside the element keeps a batched predicate
    (shape (3,) here, a prefix of its carries' shapes): each row stops on its
    own, and the loop runs while any row goes on. Such a loop crashed the
    interpreter with a NumPy error (met when the solver's derivatives were
    written with jax.linearize)."""

    def halve_until_small(row):  # row (4,): halve until its sum is below 0.1
        def body(c):
            v, k = c
            return v * 0.5, k + 1

        return lax.while_loop(lambda c: jnp.sum(jnp.abs(c[0])) > 0.1, body, (row, 0))

    def f(x):
        rows = jnp.outer(x, jnp.arange(1.0, 5.0))  # (3, 4): rows need different counts
        v, k = jax.vmap(halve_until_small)(rows)
        return v, k, jnp.sum(v * k[:, None])

    whiles = [e for e in jax.make_jaxpr(f)(X[0]).jaxpr.eqns if e.primitive.name == "while"]
    assert [e.params["cond_jaxpr"].out_avals[0].shape for e in whiles] == [(3,)]
    _same(f, X)


def test_in_axes_and_shared_traced_arguments():
    def f(a, w):
        return {"y": a["x"] @ w, "s": jnp.sum(a["x"]) * a["k"]}

    args = ({"x": X, "k": np.float64(2.0)}, jnp.asarray(W))
    _same(f, *args, in_axes=({"x": 0, "k": None}, None))
    # axis 1 and an argument traced by the outer jit but shared by the batch
    ref = jax.jit(lambda x, w: jax.vmap(lambda v: v @ w, in_axes=1)(x))(X.T, W)
    out = jax.jit(lambda x, w: unrolled_vmap(lambda v: v @ w, in_axes=(1,))(x))(X.T, W)
    np.testing.assert_allclose(out, ref, rtol=1e-13)


def test_constant_zeros_are_structural():
    """A trace-time constant 0 or 1 decides a product, quotient or sum without
    any work (JAX's symbolic-zero rule: x * 0 is 0 even for x = inf), and a
    constant selector picks its case."""
    x = jnp.array([[1.0, 2.0], [jnp.inf, 3.0]])

    def f(v):
        w = v * 0.0 + v[1] * 1.0 - 0.0
        return w, 0.0 / v, lax.select_n(True, v, -v), v / 1.0

    w, q, s, d = unrolled_vmap(f)(x)
    np.testing.assert_array_equal(w, [[2.0, 2.0], [3.0, 3.0]])
    np.testing.assert_array_equal(q, np.zeros((2, 2)))
    np.testing.assert_array_equal(s, -x)
    np.testing.assert_array_equal(d, x)
    # where nothing is constant the arithmetic is IEEE's, as under vmap
    np.testing.assert_array_equal(unrolled_vmap(lambda v: v * v[0])(x)[1], [jnp.inf, jnp.inf])


def test_unsupported_is_raised_at_trace_time():
    with pytest.raises(Unsupported):
        unrolled_vmap(lambda x: jnp.linalg.eigh(jnp.outer(x, x))[0])(X)
    with pytest.raises(Unsupported):  # an index that depends on the element
        unrolled_vmap(lambda x: x[jnp.argmax(x)])(X)
    with pytest.raises(Unsupported):  # a side effect would run once, at trace time
        unrolled_vmap(lambda x: jax.debug.print("{}", x[0]) or x)(X)
    with pytest.raises(Unsupported):  # too large to unroll
        unrolled_vmap(lambda x: jnp.sum(jnp.outer(jnp.tile(x, 40), jnp.tile(x, 40))))(X)


def _q0_batch(model, ys):
    return jax.jit(jax.vmap(lambda y: nsj.q0(model.with_yields("SR", "signal", y))))(ys)


def _unrolled_then_vmapped(monkeypatch, compute):
    """``compute()`` with the solver loop free to unroll, then with unrolling
    disabled: (first result, second result, loop bodies that ran unrolled in
    the first run); none may run unrolled in the second."""
    seen = []

    def spy(fun, in_axes=0, stop_at=0):  # records bodies that did unroll
        def run(*args):
            out = unrolled.unrolled_vmap(fun, in_axes, stop_at)(*args)
            seen.append(fun)
            return out
        return run

    monkeypatch.setattr(element_loop, "unrolled_vmap", spy)
    jax.clear_caches()  # the fits' inner jits would reuse programs traced before
    fast = compute()
    n_unrolled = len(seen)
    monkeypatch.setattr(element_loop, "UNROLL_WIDTH", -1)
    jax.clear_caches()
    plain = compute()
    assert len(seen) == n_unrolled, "the loop ran unrolled although disabled"
    return fast, plain, n_unrolled


def test_solver_iterations_unrolled_equal_vmapped(monkeypatch):
    """The seed model's batched fits run unrolled; forcing jax.vmap gives the
    same q0 (the loop is the same; only reductions may round differently)."""
    model = nsj.from_pyhf(seed_workspace())
    nominal = np.asarray(model.sample_yields("SR", "signal"))
    ys = jnp.asarray(nominal * np.exp(np.random.default_rng(3).normal(0, 0.5, (1024, nominal.size))))
    fast, plain, n_unrolled = _unrolled_then_vmapped(monkeypatch, lambda: np.asarray(_q0_batch(model, ys)))
    assert n_unrolled, "the batched solver loop did not run unrolled"
    np.testing.assert_allclose(fast, plain, rtol=1e-9, atol=1e-9)
    assert np.all(np.isfinite(fast)) and np.max(fast) > 1.0


# (workspace, whether its fits unroll): kinks (code0/code1, the body's
# one-sided gradients), zero-yield staterror bins and masked shapesys (fixed
# parameters), coupled shapefactors, and a 12-parameter model too large to
# unroll (MAX_ENTRIES: the loop falls back to jax.vmap)
MODELS = [("interp_code1_code0", True), ("edge_staterror_zero_yield_bins", True),
          ("xml_shapesys_masked", True), ("val_2bin_2channel_coupledshapefactor", True),
          ("spec_7_7", False)]


@pytest.mark.parametrize("name,unrolls", MODELS)
def test_fits_unrolled_equal_vmapped_on_corpus_models(name, unrolls, monkeypatch):
    """A vmapped batch of 256 fits to Poisson-fluctuated data: the unrolled
    loop reaches the same optima, flags and iteration counts as jax.vmap."""
    from corpus import get_case

    spec, options = get_case(name)
    model = nsj.from_pyhf(spec, **{k: v for k, v in options.items() if v is not None})
    expected = np.asarray(model.expected_data(model.suggested_init(), include_auxdata=False))
    data = np.random.default_rng(11).poisson(np.maximum(expected, 0.0), (256, expected.size)).astype(float)
    fits = lambda: jax.jit(jax.vmap(lambda d: nsj.fit(model, d, covariance=False)))(jnp.asarray(data))
    fast, plain, n_unrolled = _unrolled_then_vmapped(monkeypatch, fits)
    assert bool(n_unrolled) == unrolls
    np.testing.assert_array_equal(np.asarray(fast.converged), np.asarray(plain.converged))
    assert np.mean(np.asarray(plain.converged)) > 0.9
    np.testing.assert_array_equal(np.asarray(fast.n_iter), np.asarray(plain.n_iter))
    np.testing.assert_allclose(fast.twice_nll, plain.twice_nll, rtol=1e-12)
    # atol: a parameter at a code0/code1 kink (non-smooth at 0) stops anywhere
    # within KINK_EPS of it, on either side, as the last bits fall (the two
    # programs sum in different orders): over data seeds 11-14, +-9e-7 at the
    # kinked parameter and 4e-8 elsewhere, while twice_nll agrees to 1e-12
    np.testing.assert_allclose(fast.bestfit, plain.bestfit, rtol=1e-7, atol=2 * KINK_EPS)

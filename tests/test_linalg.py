"""The Newton step's linear algebra (``linalg.py``) and the rates' factor split.

The modified Cholesky must equal the Cholesky factor on positive-definite
blocks of every size (unrolled up to ``UNROLL_MAX``, a loop beyond), stay
finite and positive definite on indefinite ones, and vmap with no LAPACK call
in the program: jaxlib's batched CPU LAPACK kernels deadlocked a 2-core run
of 2048 vmapped fits on a one-channel model with 12 parameters."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nextstat_jax as nsj
from nextstat_jax import linalg
from nextstat_jax.model import _factor_split

from corpus import CORPUS, get_case


def _spd(rng, batch, m):
    X = rng.normal(size=(batch, m, m))
    return X @ np.swapaxes(X, -1, -2) + 0.1 * np.eye(m)


@pytest.mark.parametrize("m", [1, 3, linalg.UNROLL_MAX, linalg.UNROLL_MAX + 1, 12, 31])
def test_factor_and_solve_match_numpy_on_positive_definite(m):
    rng = np.random.default_rng(m)
    with jax.enable_x64(True):
        A = _spd(rng, 4, m)
        b = rng.normal(size=(4, m))
        B = rng.normal(size=(4, m, 3))
        L = linalg.factor(jnp.asarray(A))
        np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(linalg.solve(L, jnp.asarray(b)), np.linalg.solve(A, b[..., None])[..., 0],
                                   rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(linalg.solve(L, jnp.asarray(B)), np.linalg.solve(A, B), rtol=1e-9, atol=1e-11)


def test_indefinite_blocks():
    """Small blocks: the pivot rule (a pivot that is not safely positive
    becomes max(|pivot|, delta)), which the column loop applies identically and
    flags. Large blocks: the factor of V max(|w|, delta) V^T (negative
    curvature reflected). Either way a finite factor of a positive-definite
    matrix, equal to the input's Cholesky factor where that is fine."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        m = linalg.UNROLL_MAX
        X = rng.normal(size=(16, m, m))
        A = jnp.asarray(0.5 * (X + np.swapaxes(X, -1, -2)))  # indefinite
        Lu = linalg._factor_unrolled(A)
        Ll, ok = linalg._cholesky_loop(A)
        assert np.isfinite(Lu).all() and not np.asarray(ok).any()
        np.testing.assert_allclose(Ll, Lu, rtol=1e-9, atol=1e-9)
        assert (np.diagonal(np.asarray(Lu), axis1=-2, axis2=-1) > 0).all()

        m = linalg.UNROLL_MAX + 4
        X = rng.normal(size=(6, m, m))
        A = 0.5 * (X + np.swapaxes(X, -1, -2))
        A[:3] = _spd(rng, 3, m)  # three positive definite, three not
        L = np.asarray(linalg.factor(jnp.asarray(A)))
        np.testing.assert_allclose(L[:3], np.linalg.cholesky(A[:3]), rtol=1e-10, atol=1e-12)
        w, V = np.linalg.eigh(A[3:])
        reflected = (V * np.abs(w)[:, None, :]) @ np.swapaxes(V, -1, -2)
        np.testing.assert_allclose(L[3:] @ np.swapaxes(L[3:], -1, -2), reflected, rtol=1e-9, atol=1e-9)


def test_indefinite_small_blocks_are_shifted_for_the_newton_step():
    """``shift_indefinite`` (the Newton step's factor): where a small block is
    not safely positive definite, the factor of ``A + tau I`` with
    tau = 2 |lambda_min| + 1e-3 s, |lambda_min| from above within 5%
    of the estimate + 1e-4 s (bisection), s = min|A_ii| (at least 1e-12
    max|A_ii|); elsewhere the plain Cholesky factor.
    The same unrolled, vmapped, nested and under jit, and differentiable
    (the shift itself is held constant)."""
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        for m in (1, 2, 5, linalg.UNROLL_MAX):
            X = rng.normal(size=(12, m, m))
            A = 0.5 * (X + np.swapaxes(X, -1, -2))
            A[:4] = _spd(rng, 4, m)
            A[4] *= 1e-6  # a tiny scale
            A[5] = -np.eye(m) * 3.0  # negative definite
            A[6, 0, 0] = 0.0
            A[7] = np.outer(X[7, 0], X[7, 0])  # rank one: positive semidefinite, singular
            L = np.asarray(linalg.factor(jnp.asarray(A), shift_indefinite=True))
            ok = np.asarray(linalg._cholesky_entries(jnp.asarray(A))[1])
            assert ok[:4].all() and not ok[5] and not ok[6]
            np.testing.assert_allclose(L[ok], np.linalg.cholesky(A[ok]), rtol=1e-10, atol=1e-12)
            tau = (np.einsum("nij,nkj->nik", L, L) - A)[~ok]
            t = tau[:, 0, 0]
            np.testing.assert_allclose(tau, t[:, None, None] * np.eye(m), rtol=0, atol=1e-9 * np.abs(A[~ok]).max())
            lmin = np.minimum(np.linalg.eigvalsh(A[~ok])[:, 0], 0.0)
            diag = np.abs(np.diagonal(A[~ok], axis1=-2, axis2=-1))
            big = diag.max(-1)
            scale = np.maximum(diag.min(-1), 1e-12 * big)
            floor = 1e-3 * scale
            assert (t >= 2 * -lmin + floor - 1e-12 * big).all()
            assert (t <= 2 * (-lmin + 1e-4 * scale) / 0.95 + floor + 1e-12 * big + 1e-290).all()  # 0: pivot delta
            jitted = np.asarray(jax.jit(jax.vmap(lambda a: linalg.factor(a, shift_indefinite=True)))(jnp.asarray(A)))
            # the singular block's shift is ~1e-3 of its smallest diagonal entry: its factor's last
            # entries carry rounding x its condition, so it is compared as the matrix it factors
            regular = np.arange(len(A)) != 7
            np.testing.assert_allclose(jitted[regular], L[regular], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(jitted[7] @ jitted[7].T, L[7] @ L[7].T, rtol=1e-12, atol=1e-14)
            nested = jax.vmap(lambda a: linalg.factor(a, shift_indefinite=True))(jnp.asarray(A).reshape(3, 4, m, m))
            np.testing.assert_allclose(nested.reshape(L.shape), L, rtol=1e-12, atol=1e-14)
            unrolled = nsj.unrolled.unrolled_vmap(lambda a: linalg.factor(a, shift_indefinite=True))(jnp.asarray(A))
            np.testing.assert_allclose(unrolled, L, rtol=1e-12, atol=1e-14)
            # d/dA of a solve with the shifted factor: tau held, so (A + tau I)^-1 dA (A + tau I)^-1 b
            b = rng.normal(size=m)
            k = 5
            f = lambda a: linalg.solve(linalg.factor(a, shift_indefinite=True), jnp.asarray(b))[0]
            E = np.zeros((m, m))
            E[0, -1] = E[-1, 0] = 1.0
            g = float(jnp.vdot(jax.grad(f)(jnp.asarray(A[k])), E))
            M = A[k] + dict(zip(np.flatnonzero(~ok), t))[k] * np.eye(m)
            expected = -(np.linalg.solve(M, E @ np.linalg.solve(M, b)))[0]
            np.testing.assert_allclose(g, expected, rtol=1e-9, atol=1e-12)


def test_vmapped_equals_single_calls():
    """Nested vmaps over a mix of definite and indefinite blocks."""
    rng = np.random.default_rng(1)
    m = 13
    with jax.enable_x64(True):
        X = rng.normal(size=(5, m, m))
        A = _spd(rng, 5, m)
        A[1::2] = 0.5 * (X[1::2] + np.swapaxes(X[1::2], -1, -2))
        A = jnp.asarray(A)
        b = jnp.asarray(rng.normal(size=(5, m)))
        batched = jax.vmap(lambda a, v: linalg.solve(linalg.factor(a), v))(A, b)
        single = np.stack([linalg.solve(linalg.factor(A[i]), b[i]) for i in range(5)])
        np.testing.assert_allclose(batched, single, rtol=1e-10, atol=1e-12)
        nested = jax.vmap(jax.vmap(linalg.factor))(A.reshape(5, 1, m, m))[:, 0]
        np.testing.assert_allclose(nested, linalg.factor(A), rtol=1e-12, atol=1e-14)


def _lapack_operands(text):
    """Shapes of the tensors LAPACK custom calls take in a lowered program."""
    calls = [line for line in text.splitlines() if "lapack" in line and "custom_call" in line]
    return [re.findall(r"tensor<([0-9x]+)xf64>", line.split("->")[0].split(":")[-1]) for line in calls]


def _one_channel_model(n_normsys=11, n_bins=6):
    """Every parameter shares every bin: one dense 12x12 Hessian block."""
    bkg = {"name": "b", "data": [50.0] * n_bins, "modifiers": [
        {"name": f"s{i}", "type": "normsys", "data": {"hi": 1.0 + 0.02 * (i + 1), "lo": 1.0 - 0.015 * (i + 1)}}
        for i in range(n_normsys)]}
    sig = {"name": "s", "data": [3.0 + i for i in range(n_bins)],
           "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}
    return nsj.from_pyhf({
        "channels": [{"name": "c", "samples": [sig, bkg]}],
        "observations": [{"name": "c", "data": [52.0] * n_bins}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    })


def test_vmapped_fits_with_a_large_block_give_lapack_no_batch():
    """In the batched program of fits, covariance and implicit derivatives on
    a model whose Hessian block exceeds ``UNROLL_MAX``, LAPACK only ever sees
    one matrix (a batched kernel would split its batch over XLA's saturated
    thread pool: the deadlock)."""
    model = _one_channel_model()
    ys = np.asarray(model.sample_yields("c", "s"))[None] * np.linspace(0.5, 2.0, 4)[:, None]

    def stats(y):
        m = model.with_yields("c", "s", y)
        return nsj.fit(m).uncertainties, jax.grad(lambda v: nsj.q0(model.with_yields("c", "s", v)))(y)

    operands = _lapack_operands(jax.jit(jax.vmap(stats)).lower(ys).as_text())
    assert operands, "expected the (unbatched) eigendecomposition fallback in the program"
    assert all(shape.count("x") == 1 for shapes in operands for shape in shapes), operands
    unc, grad = jax.jit(jax.vmap(stats))(ys)
    assert np.isfinite(unc).all() and np.isfinite(grad).all()


def _multisets(idx, one, S, B):
    """Per (sample, bin): the sorted factor indices other than the constant."""
    return [[sorted(int(i) for i in idx[:, s, b] if i != one) for b in range(B)] for s in range(S)]


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_factor_split_reproduces_every_bins_factors(name):
    """Shared (per sample and channel) and per-bin factors together are, bin
    by bin, the same multiset of factors as the layout's table; the normsys
    factors are the shared ones."""
    spec, options = get_case(name)
    lay = nsj.from_pyhf(spec, measurement=options.get("measurement_name"),
                        modifier_settings=options.get("modifier_settings")).layout
    split = _factor_split(lay)
    _, S, B = lay.mult_idx.shape
    one = lay.n_params + lay.ns_par.shape[0]
    C = len(lay.channel_nbins)
    shared = _multisets(split.shared.reshape(-1, S * C, 1), one, S * C, 1)
    merged = _multisets(split.per_bin, one, S, B) if split.per_bin.shape[0] else [[[] for _ in range(B)] for _ in range(S)]
    channel_of_bin = [c + i // n for c, k, n in split.spread for i in range(k * n)]
    assert [channel_of_bin.count(c) for c in range(C)] == list(lay.channel_nbins)
    for s in range(S):
        for b in range(B):
            merged[s][b] = sorted(merged[s][b] + shared[s * C + channel_of_bin[b]][0])
    assert merged == _multisets(lay.mult_idx, one, S, B)
    per_bin = {int(i) for i in split.per_bin.ravel()} - {one}
    assert all(i < lay.n_params for i in per_bin)  # every normsys factor is shared
    assert all(i >= lay.n_params for i in split.shared.ravel())

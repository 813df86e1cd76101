"""The HistFactory model as an immutable JAX pytree.

``Model`` holds every number of the likelihood as a float64 leaf (nominal
yields, systematic templates, uncertainties, observed data, bounds, inits,
auxdata overrides) and its structure in a static, hashable :class:`Layout`.
All methods are pure functions of the leaves, so a model can be passed through
``jax.jit``, ``jax.vmap`` and ``jax.grad``; ``with_yields`` returns a new model
with the same treedef, so new yields never recompile.

Rates follow pyhf 0.7.6 (spec §3):
``nu[b] = sum_s (nominal[s,b] + sum_histosys delta) * prod_factors f``, and
``logpdf`` = Poisson main terms + Gaussian/Poisson constraint terms (spec §5),
normalisation constants included.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from . import interp
from ._layout import Layout
from ._pytree import pytree_dataclass, static_field
from ._x64 import f64, public
from .errors import InvalidInput

__all__ = ["Model", "Prepared"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def xlogy(x, y):
    """``x * log(y)`` with 0 * log(0) = 0 and a zero (not NaN) gradient there."""
    zero = x == 0
    return jnp.where(zero, 0.0, x * jnp.log(jnp.where(zero, 1.0, y)))


_ONEHOT_MAX = 1 << 11  # entries of a one-hot matrix worth a matmul instead of a gather
_MAX_RUNS = 48  # pieces of a gather worth building from slices and broadcasts


@functools.lru_cache(maxsize=1024)
def _runs_of(key: bytes, size: int) -> tuple:
    """A static index vector as runs ``(first, length, step)``: arithmetic
    progressions (step 0 is a broadcast, step 1 a slice, others a strided
    slice); empty when there are more than ``_MAX_RUNS`` of them."""
    flat = np.frombuffer(key, dtype=np.int64, count=size)
    runs, i = [], 0
    while i < size:
        j = i + 1
        step = int(flat[j] - flat[i]) if j < size else 1
        if step < 0:
            step, j = 1, i + 1  # a lone element (negative steps are not slices)
        else:
            while j < size and flat[j] - flat[j - 1] == step:
                j += 1
        runs.append((int(flat[i]), j - i, step if j - i > 1 else 1))
        i = j
        if len(runs) > _MAX_RUNS:
            return ()
    return tuple(runs)


def _index_runs(index: np.ndarray) -> tuple:
    flat = np.ascontiguousarray(np.asarray(index, dtype=np.int64).reshape(-1))
    return _runs_of(flat.tobytes(), flat.size) if flat.size else ()


def gather(values, index: np.ndarray):
    """``values[index]`` for a 1-d ``values`` and a static integer ``index``.

    Small cases become a matmul with a constant one-hot matrix: on CPU, and
    under ``vmap``, several times faster than a gather, and its derivative is
    another matmul rather than a scatter-add. Larger HistFactory indices are
    mostly runs (a normfactor repeated over a sample's bins, a staterror's
    parameters bin by bin, a Hessian diagonal): those are built from
    (strided) slices and broadcasts, whose derivatives are pads and sums;
    anything else is a gather."""
    n = values.shape[0]
    if index.size * n <= _ONEHOT_MAX:
        onehot = np.zeros((index.size, n), dtype=np.float64)
        onehot[np.arange(index.size), index.reshape(-1)] = 1.0
        return (jnp.asarray(onehot, values.dtype) @ values).reshape(index.shape)
    runs = _index_runs(index)
    if runs:
        pieces = [jnp.broadcast_to(values[a], (m,)) if step == 0 else values[a:a + step * (m - 1) + 1:step]
                  for a, m, step in runs]
        return (pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces)).reshape(index.shape)
    return values[index]


def scatter_add(shape: tuple, index: tuple, updates):
    """``zeros(shape).at[index].add(updates)`` for static index arrays (a
    matmul with a constant one-hot matrix when small, as :func:`gather`)."""
    flat = np.ravel_multi_index(index, shape)
    size = int(np.prod(shape))
    if flat.size * size <= _ONEHOT_MAX:
        onehot = np.zeros((size, flat.size), dtype=np.float64)
        onehot[flat, np.arange(flat.size)] = 1.0
        return (jnp.asarray(onehot, updates.dtype) @ updates).reshape(shape)
    return jnp.zeros(shape, updates.dtype).at[index].add(updates)


def _constraint_subsets(is_poisson: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Static indices of the Gaussian and of the Poisson auxdata components."""
    return np.flatnonzero(~is_poisson), np.flatnonzero(is_poisson)


def _subset(values, index: np.ndarray):
    """``values[index]``; a plain slice when ``index`` is a contiguous range."""
    n = index.size
    if n and index[-1] - index[0] == n - 1:
        return values[int(index[0]) : int(index[0]) + n]
    return gather(values, index)


def _take(values, index, fill):
    """``values[index]`` for a static index array that uses -1 for 'none';
    entries with -1 (and every entry, if ``values`` is empty) get ``fill``."""
    if values.shape[0] == 0:
        return jnp.full(index.shape, fill, values.dtype)
    return jnp.where(index >= 0, values[np.maximum(index, 0)], fill)


class _FactorSplit(NamedTuple):
    """``Layout.mult_idx`` split by where a factor varies (indices into
    ``f_ext``; padding points at its constant 1).

    shared (Kc, S, C): normsys factors common to every bin of a (sample,
    channel), multiplied once per channel rather than once per bin; spread:
    ``(first channel, channels, bins each)`` runs of consecutive channels with
    equal bin counts, and spread_index (S, B): the (S, C) entry each (sample,
    bin) takes (``_spread``);
    per_bin (Kb, S, B): the parameters' factors (normfactor, lumi, staterror,
    shapesys, shapefactor). Realistic models carry tens of normsys per sample:
    per bin they would make the rates, and their derivatives, tens of times
    larger."""

    shared: np.ndarray
    spread: tuple
    spread_index: np.ndarray
    per_bin: np.ndarray


@functools.lru_cache(maxsize=256)
def _factor_split(layout: Layout) -> _FactorSplit:
    idx = layout.mult_idx
    _, S, B = idx.shape
    one = layout.n_params + layout.ns_par.shape[0]
    C = len(layout.channel_nbins)
    bounds = np.cumsum((0,) + tuple(layout.channel_nbins))
    shared = [[[] for _ in range(C)] for _ in range(S)]
    rest = [[[] for _ in range(B)] for _ in range(S)]
    for s in range(S):
        for c in range(C):
            lists = [[int(i) for i in idx[:, s, b] if i != one] for b in range(bounds[c], bounds[c + 1])]
            # normsys factors common to all bins (a parameter factor costs no more per bin than
            # per channel, and XLA fuses a plain per-bin gather better than a spread product)
            common = [i for i in lists[0] if i >= layout.n_params]  # multiset intersection over the bins
            for lst in lists[1:]:
                left, kept = list(lst), []
                for i in common:
                    if i in left:
                        left.remove(i)
                        kept.append(i)
                common = kept
            shared[s][c] = common
            for b, lst in zip(range(bounds[c], bounds[c + 1]), lists):
                for i in common:
                    lst.remove(i)
                rest[s][b] = lst

    def padded(rows, width, shape):
        out = np.full((width,) + shape, one, np.int32)
        for pos in np.ndindex(*shape):
            entries = rows[pos[0]][pos[1]]
            out[(slice(0, len(entries)),) + pos] = entries
        return out

    kc = max(len(x) for row in shared for x in row)
    kb = max(len(x) for row in rest for x in row)
    spread = []
    for c, n in enumerate(layout.channel_nbins):
        if spread and spread[-1][2] == n:
            spread[-1] = (spread[-1][0], spread[-1][1] + 1, n)
        else:
            spread.append((c, 1, int(n)))
    channel_of_bin = np.repeat(np.arange(C), layout.channel_nbins)
    index = (np.arange(S)[:, None] * C + channel_of_bin[None, :]).astype(np.int32)
    return _FactorSplit(shared=padded(shared, kc, (S, C)), spread=tuple(spread), spread_index=index,
                        per_bin=padded(rest, kb, (S, B)))


def _spread(per_channel, split: _FactorSplit):
    """(S, C) per-channel values -> (S, B), each repeated over its channel's
    bins: a one-hot matmul or slices when ``gather`` makes one (XLA fuses those
    best with the sum over samples), else broadcasts channel run by channel run."""
    flat = per_channel.reshape(-1)
    if flat.size * split.spread_index.size <= _ONEHOT_MAX or _index_runs(split.spread_index):
        return gather(flat, split.spread_index)
    runs, S = split.spread, per_channel.shape[0]
    pieces = [jnp.broadcast_to(per_channel[:, c:c + k, None], (S, k, n)).reshape(S, k * n) for c, k, n in runs]
    return pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces, axis=1)


#: normsys factors on one (sample, bin) from which multiplying them per channel pays
_SPLIT_MIN = 2


@functools.lru_cache(maxsize=256)
def _rate_factors(layout: Layout) -> _FactorSplit:
    """The split the rates use: ``_factor_split``, or with fewer than
    ``_SPLIT_MIN`` shared normsys the plain per-bin table (cheaper then)."""
    split = _factor_split(layout)
    if split.shared.shape[0] >= _SPLIT_MIN:
        return split
    return split._replace(shared=np.zeros((0,) + split.shared.shape[1:], np.int32), per_bin=layout.mult_idx)


def _product(picked):
    """Product over the leading axis, unrolled (cheaper derivatives than prod)."""
    out = picked[0]
    for k in range(1, picked.shape[0]):
        out = out * picked[k]
    return out


class Prepared(NamedTuple):
    """Quantities derived from the model's numbers but not from the parameters,
    computed once per fit (not per step).

    ``fixed`` (P,) bool, ``aux`` (A,) observed auxdata of the workspace,
    ``width`` (A,) Gaussian sigma or Poisson factor tau per aux component,
    ``normsys`` the interpolation terms of every normsys instance.
    """

    fixed: jax.Array
    aux: jax.Array
    width: jax.Array
    normsys: interp.NormsysTerms


@pytree_dataclass
class Model:
    """A HistFactory probability model (pyhf semantics), immutable pytree.

    Build it with :func:`nextstat_jax.from_pyhf` or ``Workspace.model()``.
    Shapes: S samples, B main bins, P parameters, A auxiliary data.
    """

    nominal: jax.Array  # (S, B) nominal yield of each sample in each bin (0 if absent)
    obs_main: jax.Array  # (B,) observed main data
    ns_hi: jax.Array  # (N,) normsys factor at alpha = +1
    ns_lo: jax.Array  # (N,) normsys factor at alpha = -1
    hs_hi: jax.Array  # (E,) histosys template at alpha = +1 (absolute yield)
    hs_lo: jax.Array  # (E,) histosys template at alpha = -1
    st_unc: jax.Array  # (Est,) staterror absolute uncertainty per entry
    sh_unc: jax.Array  # (Jsh,) shapesys absolute uncertainty per component
    init: jax.Array  # (P,) suggested initial values
    bounds: jax.Array  # (P, 2) suggested bounds
    aux_base: jax.Array  # (A,) auxdata where not derived from yields
    width_base: jax.Array  # (A,) sigma (Gaussian) or tau (Poisson) where not derived
    layout: Layout = static_field()

    # ------------------------------------------------------------------ names
    @property
    def par_names(self) -> list[str]:
        """One name per scalar parameter, pyhf style (``staterror_SR[0]``)."""
        return list(self.layout.par_names)

    @property
    def par_order(self) -> list[str]:
        """Parameter-set names in vector order (pyhf's ``config.par_order``)."""
        return list(self.layout.par_order)

    def par_slice(self, name: str) -> slice:
        """Slice of the parameter vector that belongs to parameter set ``name``."""
        try:
            i = self.layout.par_order.index(name)
        except ValueError:
            raise InvalidInput(
                f"unknown parameter {name!r}; the model has {list(self.layout.par_order)}"
            ) from None
        return slice(*self.layout.par_slices[i])

    @property
    def poi_index(self) -> Optional[int]:
        """Index of the parameter of interest in the parameter vector (None if the model has no POI)."""
        return self.layout.poi_index

    @property
    def poi_name(self) -> Optional[str]:
        """Name of the parameter of interest (None if the model has no POI)."""
        return self.layout.poi_name

    @property
    def n_params(self) -> int:
        """Number of scalar parameters P."""
        return self.layout.n_params

    @property
    def channels(self) -> list[str]:
        """Channel names in data order (sorted, as pyhf)."""
        return list(self.layout.channels)

    @property
    def samples(self) -> list[str]:
        """Sample names (sorted union over channels, as pyhf)."""
        return list(self.layout.samples)

    @property
    def channel_nbins(self) -> dict[str, int]:
        """Number of bins of each channel."""
        return dict(zip(self.layout.channels, self.layout.channel_nbins))

    @property
    def channel_slices(self) -> dict[str, slice]:
        """Slice of the main data belonging to each channel."""
        return self.layout.channel_slices

    @property
    def nmaindata(self) -> int:
        """Number of main bins B."""
        return self.layout.n_main

    @property
    def nauxdata(self) -> int:
        """Number of auxiliary data A."""
        return self.layout.n_aux

    @property
    def auxdata_order(self) -> list[str]:
        """Constrained parameter sets in auxdata order (pyhf's ``config.auxdata_order``)."""
        return list(self.layout.auxdata_order)

    def __repr__(self) -> str:
        lay = self.layout
        return (
            f"Model(channels={list(lay.channels)}, samples={list(lay.samples)}, "
            f"n_params={lay.n_params}, poi={lay.poi_name!r}, "
            f"n_main={lay.n_main}, n_aux={lay.n_aux})"
        )

    # -------------------------------------------------------- derived numbers
    @public
    def prepare(self) -> Prepared:
        """Quantities that depend on yields but not on parameters (spec §3.5-3.6)."""
        lay = self.layout
        # staterror: sigma = sqrt(sum u^2) / sum nominal over carrying samples
        st_nom = self.nominal[lay.st_sample, lay.st_bin]
        tot = jax.ops.segment_sum(st_nom, lay.st_comp, num_segments=lay.n_st)
        u2 = jax.ops.segment_sum(self.st_unc**2, lay.st_comp, num_segments=lay.n_st)
        st_valid = (tot > 0) & (u2 > 0)
        st_sigma = jnp.where(
            st_valid, jnp.sqrt(jnp.where(st_valid, u2, 1.0)) / jnp.where(st_valid, tot, 1.0), 1.0
        )
        # shapesys: tau = (nominal / u)^2 on valid bins, 1 elsewhere
        sh_nom = self.nominal[lay.sh_sample, lay.sh_bin]
        sh_valid = (sh_nom > 0) & (self.sh_unc > 0)
        sh_tau = jnp.where(
            sh_valid, (sh_nom / jnp.where(sh_valid, self.sh_unc, 1.0)) ** 2, 1.0
        )

        dyn_fixed = jnp.where(
            lay.par_st_comp >= 0,
            ~_take(st_valid, lay.par_st_comp, True),
            ~_take(sh_valid, lay.par_sh_comp, True),
        )
        fixed = jnp.where(lay.fixed_dynamic, dyn_fixed, lay.fixed_base)
        aux = jnp.where(lay.aux_value_dynamic, _take(sh_tau, lay.aux_sh_comp, 1.0), self.aux_base)
        dyn_width = jnp.where(
            lay.aux_st_comp >= 0,
            _take(st_sigma, lay.aux_st_comp, 1.0),
            _take(sh_tau, lay.aux_sh_comp, 1.0),
        )
        width = jnp.where(lay.aux_width_dynamic, dyn_width, self.width_base)
        terms = interp.normsys_terms(self.ns_hi, self.ns_lo)
        return Prepared(fixed=fixed, aux=aux, width=width, normsys=terms)

    # ------------------------------------------------------------ suggestions
    @public
    def suggested_init(self) -> jax.Array:
        """(P,) float64 initial values (pyhf defaults + measurement config)."""
        return self.init

    @public
    def suggested_bounds(self) -> jax.Array:
        """(P, 2) float64 bounds (pyhf defaults + measurement config)."""
        return self.bounds

    @public
    def suggested_fixed(self) -> jax.Array:
        """(P,) bool: parameters held fixed in fits (config + masked bins)."""
        return self.prepare().fixed

    @property
    @public
    def auxdata(self) -> jax.Array:
        """(A,) observed auxiliary data in pyhf's auxdata order."""
        return self.prepare().aux

    @property
    @public
    def data(self) -> jax.Array:
        """(B + A,) observed main data followed by auxdata (``Workspace.data``)."""
        return jnp.concatenate([self.obs_main, self.prepare().aux])

    # ------------------------------------------------------------------ rates
    def _check_pars(self, pars) -> jax.Array:
        pars = f64(pars, "parameters")
        if pars.shape != (self.layout.n_params,):
            raise InvalidInput(
                f"parameters must have shape ({self.layout.n_params},) "
                f"(one per entry of model.par_names), got shape {tuple(pars.shape)}"
            )
        return pars

    def _check_data(self, data) -> jax.Array:
        if data is None:
            return self.data
        data = f64(data, "data")
        n = self.layout.n_main + self.layout.n_aux
        if data.shape != (n,):
            raise InvalidInput(
                f"data must have shape ({n},) = {self.layout.n_main} main bins + "
                f"{self.layout.n_aux} auxdata, got shape {tuple(data.shape)}"
            )
        return data

    def _rates_by_sample(self, pars, prep: Optional[Prepared] = None) -> jax.Array:
        """(S, B) expected yield of each sample in each bin."""
        lay = self.layout
        alpha_ns = gather(pars, lay.ns_par)
        terms = interp.normsys_terms(self.ns_hi, self.ns_lo) if prep is None else prep.normsys
        g = interp.normsys_from_terms(lay.normsys_code, alpha_ns, terms)
        f_ext = jnp.concatenate([pars, g, jnp.ones((1,), pars.dtype)])
        split = _rate_factors(lay)
        factors = None
        if split.shared.shape[0]:  # per (sample, channel), then spread over its bins
            per_channel = _product(gather(f_ext, split.shared))
            factors = _spread(per_channel, split)
        if split.per_bin.shape[0]:
            per_bin = _product(gather(f_ext, split.per_bin))
            factors = per_bin if factors is None else factors * per_bin
        base = self.nominal
        if lay.hs_par.shape[0]:
            nom = self.nominal[lay.hs_sample, lay.hs_bin]
            delta = interp.histosys(
                lay.histosys_code, gather(pars, lay.hs_par), self.hs_hi - nom, nom - self.hs_lo
            )
            base = base + scatter_add(base.shape, (lay.hs_sample, lay.hs_bin), delta)
        return base if factors is None else base * factors

    @public
    def expected_by_sample(self, pars) -> jax.Array:
        """(S, B) expected yield of each sample (``model.samples`` order) per bin."""
        return self._rates_by_sample(self._check_pars(pars))

    @public
    def expected_actualdata(self, pars) -> jax.Array:
        """(B,) expected main-bin yields."""
        return jnp.sum(self._rates_by_sample(self._check_pars(pars)), axis=0)

    def _expected_aux(self, pars, prep: Prepared) -> jax.Array:
        lay = self.layout
        theta = gather(pars, lay.aux_par)
        return jnp.where(lay.aux_poisson, theta * prep.width, theta)

    @public
    def expected_auxdata(self, pars) -> jax.Array:
        """(A,) expected auxdata: theta (Gaussian) or gamma * tau (Poisson)."""
        return self._expected_aux(self._check_pars(pars), self.prepare())

    @public
    def expected_data(self, pars, include_auxdata: bool = True) -> jax.Array:
        """(B + A,) expected main data followed by expected auxdata (or (B,))."""
        pars = self._check_pars(pars)
        main = jnp.sum(self._rates_by_sample(pars), axis=0)
        if not include_auxdata:
            return main
        return jnp.concatenate([main, self._expected_aux(pars, self.prepare())])

    # -------------------------------------------------------------- likelihood
    def _logpdf_varying(self, pars, data, prep: Prepared) -> jax.Array:
        """The parameter-dependent part of logpdf (what fits minimise)."""
        lay = self.layout
        n_main = lay.n_main
        nu = jnp.sum(self._rates_by_sample(pars, prep), axis=0)
        total = jnp.sum(xlogy(data[:n_main], nu) - nu)
        aux = data[n_main:]
        theta = gather(pars, lay.aux_par)
        gauss, pois = _constraint_subsets(lay.aux_poisson)
        if gauss.size:
            z = (_subset(aux, gauss) - _subset(theta, gauss)) / _subset(prep.width, gauss)
            total = total - 0.5 * jnp.sum(z**2)
        if pois.size:
            rate = _subset(theta, pois) * _subset(prep.width, pois)
            total = total + jnp.sum(xlogy(_subset(aux, pois), rate) - rate)
        return total

    def _logpdf_constant(self, data, prep: Prepared) -> jax.Array:
        """The parameter-independent normalisation terms of logpdf."""
        lay = self.layout
        n_main = lay.n_main
        aux = data[n_main:]
        total = -jnp.sum(gammaln(data[:n_main] + 1.0))
        gauss, pois = _constraint_subsets(lay.aux_poisson)
        if gauss.size:
            total = total - jnp.sum(jnp.log(_subset(prep.width, gauss))) - gauss.size * _LOG_SQRT_2PI
        if pois.size:
            total = total - jnp.sum(gammaln(_subset(aux, pois) + 1.0))
        return total

    def _logpdf(self, pars, data, prep: Prepared) -> jax.Array:
        """Unchecked log-likelihood; ``prep`` comes from :meth:`prepare`."""
        return self._logpdf_varying(pars, data, prep) + self._logpdf_constant(data, prep)

    @public
    def logpdf(self, pars, data=None) -> jax.Array:
        """Scalar log-likelihood of ``data`` (B + A,) at ``pars`` (P,), as pyhf's
        ``model.logpdf`` (which returns shape (1,)). ``data=None`` uses the
        model's observed data."""
        return self._logpdf(self._check_pars(pars), self._check_data(data), self.prepare())

    @public
    def nll(self, pars, data=None) -> jax.Array:
        """Negative log-likelihood, ``-logpdf``."""
        return -self.logpdf(pars, data)

    # ------------------------------------------------------------------ yields
    def _sample_location(self, channel: str, sample: str) -> tuple[int, slice]:
        lay = self.layout
        if channel not in lay.channels:
            raise InvalidInput(f"unknown channel {channel!r}; channels are {list(lay.channels)}")
        c = lay.channels.index(channel)
        if sample not in lay.samples or not lay.sample_in_channel[lay.samples.index(sample)][c]:
            present = [s for i, s in enumerate(lay.samples) if lay.sample_in_channel[i][c]]
            raise InvalidInput(
                f"channel {channel!r} has no sample {sample!r}; its samples are {present}"
            )
        return lay.samples.index(sample), lay.channel_slices[channel]

    @public
    def sample_yields(self, channel: str, sample: str) -> jax.Array:
        """(n_bins,) nominal yields of ``sample`` in ``channel``."""
        s, sl = self._sample_location(channel, sample)
        return self.nominal[s, sl]

    @public
    def with_yields(self, channel: str, sample: str, yields) -> "Model":
        """A new model with ``sample``'s nominal in ``channel`` replaced by ``yields``.

        Equivalent to building the model from the workspace with that sample's
        ``data`` replaced: modifier data (histosys templates, staterror/shapesys
        absolute uncertainties) stay as they are; staterror sigmas, shapesys tau
        and their masks are recomputed. Pure: works under jit, vmap and grad, and
        keeps the treedef (no recompilation)."""
        s, sl = self._sample_location(channel, sample)
        yields = f64(yields, "yields")
        n = sl.stop - sl.start
        if yields.shape != (n,):
            raise InvalidInput(
                f"yields for sample {sample!r} in channel {channel!r} must have shape "
                f"({n},), got shape {tuple(yields.shape)}"
            )
        return dataclasses.replace(self, nominal=self.nominal.at[s, sl].set(yields))

    @public
    def with_observed(self, main_data) -> "Model":
        """A new model whose observed main data (B,) is ``main_data``."""
        main_data = f64(main_data, "observed main data")
        if main_data.shape != (self.layout.n_main,):
            raise InvalidInput(
                f"observed main data must have shape ({self.layout.n_main},), "
                f"got shape {tuple(main_data.shape)}"
            )
        return dataclasses.replace(self, obs_main=main_data)

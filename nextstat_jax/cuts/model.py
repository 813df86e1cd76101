"""From (events, cut thresholds) to a HistFactory :class:`~nextstat_jax.Model`, in pure JAX.

:class:`CutModel` builds, once, a *template* model from a pyhf-like spec of
the :class:`~nextstat_jax.cuts.EventWorkspace` (one channel; per sample its
own modifiers, a ``histosys`` per variation, and ``staterror_<channel>`` on
the samples that ask for it), and precomputes each event's bin (static).
:meth:`CutModel.model_at` then replaces the model's numeric leaves with
``dataclasses.replace`` (the treedef is kept, so nothing recompiles):

* ``nominal``: per sample and bin, ``sum_i s_i w_i`` over the events in the bin;
* ``hs_hi`` / ``hs_lo``: the same sums with the variation weights;
* ``st_unc``: ``sqrt(sum_i (s_i w_i)^2)`` (the staterror sigma
  ``sqrt(sum u^2) / sum nominal`` then follows in ``Model.prepare``, as pyhf);
* ``obs_main``: the selected observed events, or (no observed events) the
  Asimov data, expected data at mu = 1 and nominal nuisance parameters.

Selection weights ``s_i = prod_c step(sign_c (x_ic - t_c))`` for hard cuts
(``temperature=None``; ``">"`` keeps ``x >= t``, ``"<"`` keeps ``x <= t``),
or ``prod_c sigmoid(sign_c (x_ic - t_c) / (T_c (high_c - low_c)))`` for relaxed
cuts: the temperature ``T`` (scalar or one per cut) is a *fraction of each
cut's range*, so one value suits features of any scale. As ``T -> 0`` the
relaxed model tends to the hard one (everywhere except on events lying exactly
at a threshold); at ``T > 0`` every statistic of the model (q0, Z0, CLs,
limits) is differentiable with respect to the thresholds, through the
engine's exact derivatives.

Empty selections. Selected yields and templates below ``yield_floor``
(default 1e-6) are raised to it, so a cut that selects nothing (or negative
weights summing below zero) gives a tiny but valid model: Z0 close to 0, no
NaN or infinity, finite gradients. :meth:`CutModel.yields` returns the raw
sums, without the floor. Whether enough MC events remain is a separate
question: :meth:`CutModel.n_selected` counts the selected MC events of each
sample (unweighted; a soft count for relaxed cuts) and the optimisers and the
environment apply a ``min_events`` requirement to the background samples
(those without the POI normfactor).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .._pytree import pytree_dataclass, static_field
from .._x64 import f64, public, x64
from ..asymptotics import expected_full
from ..errors import InvalidInput
from ..fits import make_problem
from ..model import Model
from ..solver import SolverOptions
from ..teststats import safe_sqrt, statistic
from ..workspace import Workspace
from .events import EventWorkspace

__all__ = ["CutModel", "CutLayout", "make_cut_model", "DATA_MODES"]

DATA_MODES = ("asimov", "observed")


@dataclasses.dataclass(frozen=True)
class CutLayout:
    """Static structure of a :class:`CutModel` (hashable; part of the treedef)."""

    channel: str
    sample_names: tuple  # input order
    variation_names: tuple  # per sample: tuple of names
    has_staterror: tuple  # per sample: bool
    background: tuple  # per sample: bool (no POI normfactor)
    n_bins: int
    cut_features: tuple
    cut_directions: tuple
    feature_names: tuple
    nominal_perm: tuple  # model sample s -> input sample index
    hs_flat: tuple  # per histosys entry: row * n_bins + bin in the stacked variation rows
    st_flat: tuple  # per staterror entry: input sample * n_bins + bin
    n_var_rows: int
    has_observed: bool
    poi_index: int

    @property
    def n_samples(self) -> int:
        return len(self.sample_names)

    @property
    def n_cuts(self) -> int:
        return len(self.cut_features)


@pytree_dataclass
class CutModel:
    """A HistFactory model as a pure function of cut thresholds (module doc).

    Build it with :func:`make_cut_model` (or ``CutModel.build``). Leaves: the
    template :class:`~nextstat_jax.Model`, per sample the cut features of its
    events ``x`` (N, C) and the weighted one-hot bin matrices, the observed
    events, the cut ranges and the yield floor; a ``CutModel`` can therefore
    live in jitted code and in environment parameters.
    """

    template: Model
    x: tuple  # per sample (N_s, C) cut-feature values
    lin: tuple  # per sample (N_s, B * (1 + 2 V_s)): w, w_up, w_down one-hot by bin
    sq: tuple  # per sample (N_s, B) w^2 one-hot by bin (zero columns without staterror)
    obs_x: jax.Array  # (M, C) cut features of observed events (M = 0 for Asimov)
    obs_bins: jax.Array  # (M, B) one-hot bins of observed events
    low: jax.Array  # (C,) threshold ranges
    high: jax.Array  # (C,)
    sign: jax.Array  # (C,) +1 for ">", -1 for "<"
    loosest: jax.Array  # (C,) thresholds selecting everything
    yield_floor: jax.Array  # ()
    layout: CutLayout = static_field()

    # ----------------------------------------------------------------- build
    @classmethod
    def build(cls, events: Any, *, yield_floor: float = 1e-6, modifier_settings: Optional[dict] = None) -> "CutModel":
        """See :func:`make_cut_model`."""
        return make_cut_model(events, yield_floor=yield_floor, modifier_settings=modifier_settings)

    # ----------------------------------------------------------------- views
    @property
    def sample_names(self) -> list:
        return list(self.layout.sample_names)

    @property
    def n_cuts(self) -> int:
        return self.layout.n_cuts

    @property
    def n_bins(self) -> int:
        return self.layout.n_bins

    @property
    def cut_names(self) -> list:
        """``"pt>"``-style labels of the cuts."""
        return [f"{f}{d}" for f, d in zip(self.layout.cut_features, self.layout.cut_directions)]

    @property
    def background_mask(self) -> np.ndarray:
        return np.asarray(self.layout.background, bool)

    def __repr__(self) -> str:
        lay = self.layout
        n = [int(x.shape[0]) for x in self.x]
        return (f"CutModel(channel={lay.channel!r}, samples={dict(zip(lay.sample_names, n))}, "
                f"cuts={self.cut_names}, n_bins={lay.n_bins})")

    # ------------------------------------------------------- pure internals
    def _selection(self, x, t, temperature):
        """(N,) selection weight of each event: hard (temperature None) or relaxed."""
        z = self.sign * (x - t)
        if temperature is None:
            return jnp.all(z >= 0, axis=1).astype(x.dtype)
        scale = temperature * (self.high - self.low)
        return jnp.prod(jax.nn.sigmoid(z / scale), axis=1)

    def _histograms(self, t, temperature):
        """Raw selected sums: nominal (S, B), up/down (R, B) stacked over
        (sample, variation), sumw2 (S, B), counts (S,) (input sample order)."""
        lay = self.layout
        B = lay.n_bins
        nom, up, down, sw2, counts = [], [], [], [], []
        for i in range(lay.n_samples):
            sel = self._selection(self.x[i], t, temperature)
            v = sel @ self.lin[i]
            nv = len(lay.variation_names[i])
            nom.append(v[:B])
            if nv:
                up.append(v[B : B + nv * B].reshape(nv, B))
                down.append(v[B + nv * B :].reshape(nv, B))
            sw2.append((sel * sel) @ self.sq[i])
            counts.append(jnp.sum(sel))
        dt = t.dtype
        up = jnp.concatenate(up) if up else jnp.zeros((0, B), dt)
        down = jnp.concatenate(down) if down else jnp.zeros((0, B), dt)
        return jnp.stack(nom), up, down, jnp.stack(sw2), jnp.stack(counts)

    def _observed(self, t, temperature):
        if self.obs_x.shape[0] == 0:
            return jnp.zeros((self.layout.n_bins,), t.dtype)
        return self._selection(self.obs_x, t, temperature) @ self.obs_bins

    def _model_from(self, hist, t, temperature) -> Model:
        """The model of the histograms ``hist`` (from :meth:`_histograms` at ``t``)."""
        lay = self.layout
        nom, up, down, sw2, _ = hist
        floor = self.yield_floor
        nominal = jnp.maximum(nom, floor)[np.asarray(lay.nominal_perm, np.int32)]
        repl = {"nominal": nominal}
        if len(lay.hs_flat):
            idx = np.asarray(lay.hs_flat, np.int32)
            repl["hs_hi"] = jnp.maximum(up, floor).reshape(-1)[idx]
            repl["hs_lo"] = jnp.maximum(down, floor).reshape(-1)[idx]
        if len(lay.st_flat):
            repl["st_unc"] = safe_sqrt(sw2.reshape(-1)[np.asarray(lay.st_flat, np.int32)])
        m = dataclasses.replace(self.template, **repl)
        if lay.has_observed:
            obs = self._observed(t, temperature)
        else:
            obs = self._asimov(m)[: lay.n_bins]
        return dataclasses.replace(m, obs_main=obs)

    def _model(self, t, temperature) -> Model:
        return self._model_from(self._histograms(t, temperature), t, temperature)

    def _asimov(self, m: Model):
        """(B + A,) expected data at mu = 1 and the suggested nuisance parameters."""
        pars = m.init.at[self.layout.poi_index].set(1.0)
        return expected_full(m, pars)

    def _stat_of(self, m: Model, data: str, options: SolverOptions):
        """(q0, converged) of model ``m`` on its Asimov or observed data."""
        d = self._asimov(m) if data == "asimov" else jnp.concatenate([m.obs_main, m.prepare().aux])
        out = statistic(make_problem(m, d), 0.0, "q0", self.layout.poi_index, options)
        return out.value, out.converged

    def _statistic(self, t, temperature, data: str = "asimov", options: SolverOptions = SolverOptions()):
        """(q0, converged) of the model at thresholds ``t`` on Asimov or observed data."""
        return self._stat_of(self._model(t, temperature), data, options)

    def _evaluate(self, t, temperature, data: str = "asimov", options: SolverOptions = SolverOptions()):
        """(q0, converged, raw nominal yields (S, B), background MC count) in one pass."""
        hist = self._histograms(t, temperature)
        q0, conv = self._stat_of(self._model_from(hist, t, temperature), data, options)
        return q0, conv, hist[0], self._n_background(hist)

    def _n_background(self, hist):
        return jnp.sum(hist[4][np.asarray(self.layout.background, bool)])

    def _s_over_sqrt_b(self, t, temperature, nom=None):
        nom = self._histograms(t, temperature)[0] if nom is None else nom
        bkg = np.asarray(self.layout.background, bool)
        s = jnp.sum(nom[~bkg], axis=0)
        b = jnp.maximum(jnp.sum(nom[bkg], axis=0), self.yield_floor)
        return safe_sqrt(jnp.sum(jnp.maximum(s, 0.0) ** 2 / b))

    # ----------------------------------------------------------- public API
    def _check(self, thresholds, temperature):
        t = f64(thresholds, "thresholds")
        C = self.layout.n_cuts
        if t.shape != (C,):
            raise InvalidInput(f"thresholds must have shape ({C},) (one per cut {self.cut_names}), "
                               f"got shape {tuple(t.shape)}")
        if not isinstance(t, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(t))):
            raise InvalidInput(f"thresholds must be finite, got {np.asarray(t).tolist()}")
        if temperature is not None:
            temperature = f64(temperature, "temperature")
            if temperature.shape not in ((), (C,)):
                raise InvalidInput(f"temperature must be a scalar or have shape ({C},), "
                                   f"got shape {tuple(temperature.shape)}")
            if not isinstance(temperature, jax.core.Tracer) and not bool(jnp.all(temperature > 0)):
                raise InvalidInput(f"temperature must be > 0 (None for hard cuts), got {temperature}")
        return t, temperature

    @public
    def model_at(self, thresholds, temperature=None) -> Model:
        """The :class:`~nextstat_jax.Model` of the selection ``thresholds`` (C,):
        hard cuts (``temperature=None``) or relaxed cuts at ``temperature``
        (fraction of each cut's range; scalar or (C,)). Pure: jit/vmap/grad-able."""
        t, temperature = self._check(thresholds, temperature)
        return _jit_model(self, t, temperature)

    @public
    def yields(self, thresholds, temperature=None) -> jax.Array:
        """(S, B) selected yields of each sample (``sample_names`` order), raw sums
        of the weights (no floor)."""
        t, temperature = self._check(thresholds, temperature)
        return _jit_hist(self, t, temperature)[0]

    @public
    def sumw2(self, thresholds, temperature=None) -> jax.Array:
        """(S, B) sum of squared selected weights (zero for samples without staterror)."""
        t, temperature = self._check(thresholds, temperature)
        return _jit_hist(self, t, temperature)[3]

    @public
    def n_selected(self, thresholds, temperature=None) -> jax.Array:
        """(S,) number of selected MC events of each sample (unweighted; soft
        for relaxed cuts), counting events inside the binning range."""
        t, temperature = self._check(thresholds, temperature)
        return _jit_hist(self, t, temperature)[4]

    @public
    def n_background(self, thresholds, temperature=None) -> jax.Array:
        """Number of selected MC events of the background samples together."""
        counts = self.n_selected(thresholds, temperature)
        return jnp.sum(counts[np.asarray(self.layout.background, bool)])

    @public
    def q0(self, thresholds, temperature=None, *, data: str = "asimov",
           options: SolverOptions = SolverOptions()) -> jax.Array:
        """Discovery statistic q0 of the selection on its Asimov data
        (``data="asimov"``: mu = 1, nominal nuisance parameters) or on the
        selected observed events (``data="observed"``)."""
        t, temperature = self._check(thresholds, temperature)
        _check_data_mode(self, data)
        return _jit_stat(self, t, temperature, data=data, options=options)[0]

    @public
    def z0(self, thresholds, temperature=None, *, data: str = "asimov",
           options: SolverOptions = SolverOptions()) -> jax.Array:
        """Discovery significance sqrt(q0) (:meth:`q0`); 0 with a zero gradient where q0 = 0."""
        return safe_sqrt(self.q0(thresholds, temperature, data=data, options=options))

    @public
    def s_over_sqrt_b(self, thresholds, temperature=None) -> jax.Array:
        """The naive figure of merit sqrt(sum_b s_b^2 / b_b) (signal = samples
        with the POI at mu = 1, background = the others; no systematics)."""
        t, temperature = self._check(thresholds, temperature)
        return _jit_sb(self, t, temperature)


def _check_data_mode(cm: CutModel, data: str) -> None:
    if data not in DATA_MODES:
        raise InvalidInput(f"data must be one of {list(DATA_MODES)}, got {data!r}")
    if data == "observed" and not cm.layout.has_observed:
        raise InvalidInput("data='observed' needs observed events in the EventWorkspace (observed=None means Asimov)")


@jax.jit
def _jit_model(cm, t, temperature):
    return cm._model(t, temperature)


@jax.jit
def _jit_hist(cm, t, temperature):
    return cm._histograms(t, temperature)


@jax.jit
def _jit_sb(cm, t, temperature):
    return cm._s_over_sqrt_b(t, temperature)


@functools.partial(jax.jit, static_argnames=("data", "options"))
def _jit_stat(cm, t, temperature, *, data, options):
    return cm._statistic(t, temperature, data, options)


def _onehot(bins: np.ndarray, n_bins: int) -> np.ndarray:
    out = np.zeros((bins.size, n_bins))
    out[np.arange(bins.size), bins] = 1.0
    return out


@x64
def make_cut_model(events: Any, *, yield_floor: float = 1e-6, modifier_settings: Optional[dict] = None) -> CutModel:
    """Build a :class:`CutModel` from an :class:`~nextstat_jax.cuts.EventWorkspace`
    (or its dict / JSON / path form).

    ``yield_floor``: selected yields and templates are at least this (module
    doc); ``modifier_settings``: interpolation codes as in pyhf."""
    ews = events if isinstance(events, EventWorkspace) else EventWorkspace.from_dict(events)
    if not (np.isfinite(yield_floor) and yield_floor > 0):
        raise InvalidInput(f"yield_floor must be finite and > 0, got {yield_floor}")
    B = ews.n_bins
    ch = ews.channel
    jb = ews.feature_index(ews.binning_feature)
    cut_cols = [ews.feature_index(c.feature) for c in ews.cuts]
    xs, lins, sqs, spec_samples = [], [], [], []
    for s in ews.samples:
        bins = ews.bin_index(s.features[:, jb])
        keep = bins >= 0
        oh = _onehot(bins[keep], B)
        w = s.weights[keep]
        cols = [oh * w[:, None]]
        cols += [oh * s.variations[v][0][keep][:, None] for v in s.variations]
        cols += [oh * s.variations[v][1][keep][:, None] for v in s.variations]
        xs.append(s.features[keep][:, cut_cols])
        lins.append(np.concatenate(cols, axis=1))
        sqs.append(oh * (w * w)[:, None] if s.staterror else np.zeros_like(oh))
        # the template: numbers at the loosest selection (replaced by model_at)
        nom = np.maximum(oh.T @ w, yield_floor)
        mods = [dict(m) for m in s.modifiers]
        for v, (wu, wd) in s.variations.items():
            mods.append({"name": v, "type": "histosys", "data": {
                "hi_data": np.maximum(oh.T @ wu[keep], yield_floor).tolist(),
                "lo_data": np.maximum(oh.T @ wd[keep], yield_floor).tolist()}})
        if s.staterror:
            mods.append({"name": f"staterror_{ch}", "type": "staterror",
                         "data": np.sqrt(oh.T @ (w * w)).tolist()})
        spec_samples.append({"name": s.name, "data": nom.tolist(), "modifiers": mods})
    spec = {
        "channels": [{"name": ch, "samples": spec_samples}],
        "observations": [{"name": ch, "data": [0.0] * B}],
        "measurements": [ews.measurement],
        "version": "1.0.0",
    }
    ws = Workspace(spec)
    template = ws.model(modifier_settings=modifier_settings) if modifier_settings is not None else ws.model()
    lay = template.layout
    names = list(ews.sample_names)
    perm = tuple(names.index(s) for s in lay.samples)
    # stacked variation rows: (input sample, variation) in input order
    row_of, r = {}, 0
    for i, s in enumerate(ews.samples):
        for v in s.variations:
            row_of[(i, v)] = r
            r += 1
    par_of_index = {}
    for name, (a, b) in zip(lay.par_order, lay.par_slices):
        for p in range(a, b):
            par_of_index[p] = name
    hs_flat = tuple(
        row_of[(perm[int(s)], par_of_index[int(p)])] * B + int(b)
        for p, s, b in zip(lay.hs_par, lay.hs_sample, lay.hs_bin)
    )
    st_flat = tuple(perm[int(s)] * B + int(b) for s, b in zip(lay.st_sample, lay.st_bin))
    layout = CutLayout(
        channel=ch,
        sample_names=tuple(names),
        variation_names=tuple(tuple(s.variations) for s in ews.samples),
        has_staterror=tuple(bool(s.staterror) for s in ews.samples),
        background=tuple(bool(b) for b in ews.background_mask),
        n_bins=B,
        cut_features=tuple(c.feature for c in ews.cuts),
        cut_directions=tuple(c.direction for c in ews.cuts),
        feature_names=tuple(ews.feature_names),
        nominal_perm=perm,
        hs_flat=hs_flat,
        st_flat=st_flat,
        n_var_rows=r,
        has_observed=ews.observed is not None,
        poi_index=int(template.poi_index),
    )
    if ews.observed is not None:
        ob = ews.bin_index(ews.observed[:, jb])
        keep = ob >= 0
        obs_x, obs_bins = ews.observed[keep][:, cut_cols], _onehot(ob[keep], B)
    else:
        obs_x, obs_bins = np.zeros((0, len(cut_cols))), np.zeros((0, B))
    rng = ews.cut_ranges
    return CutModel(
        template=template,
        x=tuple(f64(x) for x in xs),
        lin=tuple(f64(m) for m in lins),
        sq=tuple(f64(m) for m in sqs),
        obs_x=f64(obs_x),
        obs_bins=f64(obs_bins),
        low=f64(rng[:, 0]),
        high=f64(rng[:, 1]),
        sign=f64([c.sign for c in ews.cuts]),
        loosest=f64(ews.loosest_thresholds),
        yield_floor=f64(yield_floor),
        layout=layout,
    )

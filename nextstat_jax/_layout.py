"""The static structure of a model: names, sizes and index tables.

A :class:`Layout` is hashable and compared by value, so it can sit in a pytree's
treedef: two models with the same structure share compiled code, and a new
value of any *number* (yields, data, bounds) never triggers a recompile.
Index tables are NumPy integer arrays, compile-time constants for XLA.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

__all__ = ["Layout"]


def _freeze(value):
    """A hashable, comparable stand-in for a field value."""
    if isinstance(value, np.ndarray):
        return ("nd", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (tuple, list)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
    """Everything about a model that is structure rather than numbers.

    Shapes use S = samples, B = main bins (all channels, sorted), P = parameters,
    A = auxiliary data (constrained components), K = most multiplicative factors
    on one (sample, bin), N = normsys instances, E = histosys (instance, bin)
    entries, Jst/Jsh = staterror/shapesys components, Est = staterror entries.
    """

    # names and sizes
    channels: tuple[str, ...]
    channel_nbins: tuple[int, ...]
    samples: tuple[str, ...]
    sample_in_channel: tuple[tuple[bool, ...], ...]  # [s][c]
    par_order: tuple[str, ...]
    par_slices: tuple[tuple[int, int], ...]
    par_types: tuple[str, ...]  # modifier type(s) of each paramset, e.g. "normsys"
    par_names: tuple[str, ...]
    poi_name: Optional[str]
    poi_index: Optional[int]
    auxdata_order: tuple[str, ...]
    normsys_code: str
    histosys_code: str
    # multiplicative factors: f_ext = concat(pars, normsys factors, [1.0])
    mult_idx: np.ndarray  # (K, S, B) int32 indices into f_ext
    ns_par: np.ndarray  # (N,) parameter of each normsys instance
    # histosys entries (one per instance and bin of its channel)
    hs_par: np.ndarray  # (E,)
    hs_sample: np.ndarray  # (E,)
    hs_bin: np.ndarray  # (E,)
    # staterror: entries (component, sample, bin) of carrying samples
    st_comp: np.ndarray  # (Est,)
    st_sample: np.ndarray  # (Est,)
    st_bin: np.ndarray  # (Est,)
    n_st: int  # Jst
    # shapesys components
    sh_sample: np.ndarray  # (Jsh,)
    sh_bin: np.ndarray  # (Jsh,)
    # per parameter: which dynamic component decides its "fixed" flag
    par_st_comp: np.ndarray  # (P,) component index or -1
    par_sh_comp: np.ndarray  # (P,)
    fixed_dynamic: np.ndarray  # (P,) bool: fixed flag derived from yields
    fixed_base: np.ndarray  # (P,) bool: fixed flags from the measurement config
    # auxiliary data / constraints, in pyhf's auxdata order
    aux_par: np.ndarray  # (A,) parameter index of each component
    aux_poisson: np.ndarray  # (A,) bool, else Gaussian
    aux_st_comp: np.ndarray  # (A,) staterror component or -1
    aux_sh_comp: np.ndarray  # (A,) shapesys component or -1
    aux_value_dynamic: np.ndarray  # (A,) bool: auxdata = tau (shapesys default)
    aux_width_dynamic: np.ndarray  # (A,) bool: sigma/tau computed from yields

    def __post_init__(self):
        key = tuple(_freeze(getattr(self, f.name)) for f in dataclasses.fields(self))
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if not isinstance(other, Layout):
            return NotImplemented
        return self._hash == other._hash and self._key == other._key

    # --- derived sizes -------------------------------------------------------
    @property
    def n_params(self) -> int:
        return len(self.par_names)

    @property
    def n_main(self) -> int:
        return int(sum(self.channel_nbins))

    @property
    def n_aux(self) -> int:
        return int(self.aux_par.shape[0])

    @property
    def channel_slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for c, n in zip(self.channels, self.channel_nbins):
            out[c] = slice(start, start + n)
            start += n
        return out

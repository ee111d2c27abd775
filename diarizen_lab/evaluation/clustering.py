"""pyannote.audio's clustering with memory linear in the number of embeddings, and DiariZen's clustering settings.

pyannote.audio 4's ``AgglomerativeClustering.cluster`` and ``VBxClustering.__call__`` build their dendrogram with
``scipy.cluster.hierarchy.linkage``, which first computes the condensed matrix of all pairwise distances:
N (N - 1) / 2 float64 values, 1.3 GB for the 18,000 (chunk, speaker) embeddings of one hour at a 10 % step.
For the centroid, median and Ward methods on Euclidean distances (pyannote's path for unit-normalised
embeddings), fastcluster's ``linkage_vector`` computes the same dendrogram from the observation vectors in
O(N D) memory (beyond 4,096 embeddings; below, scipy is faster and small). The subclasses below run pyannote's own methods unchanged, with that function standing in for
scipy's ``linkage`` while they run (see :func:`calls_in_pyannote_clustering`).

Equality with scipy: the same merges at the same heights (to 1e-15), hence the same labels, whenever no two
candidate merges are exactly tied. With exact ties (e.g. duplicate embeddings) the two algorithms may record
tied merges in another order: duplicates then give the same partition, possibly numbered differently.

The settings pyannote.audio fixes and upstream DiariZen exposes are arguments here:

- ``min_active_ratio``: the fraction of a chunk's frames in which a local speaker must be the only one speaking
  for its embedding to take part in clustering (pyannote.audio 4: 0.2; DiariZen: 0.1).
- VBx's ``ahc_criterion`` (``distance`` or ``maxclust``, scipy ``fcluster`` criteria) and ``max_iters``
  (pyannote.audio 4 fixes ``distance`` and 20).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import fastcluster
import numpy as np
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import clustering as pyannote_clustering
from pyannote.audio.utils.vbx import cluster_vbx
from pyannote.core import SlidingWindowFeature
from scipy.cluster.hierarchy import fcluster as scipy_fcluster
from scipy.cluster.hierarchy import linkage as scipy_linkage

MEMORY_SAVING_METHODS = ("centroid", "median", "ward", "single")
"""Linkage methods that fastcluster's ``linkage_vector`` computes from observation vectors (Euclidean)."""
SCIPY_DISTANCES_BUDGET = 64 * 2**20
"""Up to this many bytes of pairwise distances (4,096 embeddings) scipy's linkage is used: it is about three
times faster than ``linkage_vector`` (which is O(N^2 D) in time) and its memory is still small there."""
AHC_CRITERIA = ("distance", "maxclust")
_substitution_lock = threading.RLock()


def memory_saving_linkage(
    observations: np.ndarray, method: str = "single", metric: str = "euclidean", optimal_ordering: bool = False
) -> np.ndarray:
    """``scipy.cluster.hierarchy.linkage``'s dendrogram, in O(N D) memory where fastcluster allows it.

    Observation matrices whose pairwise distances would exceed :data:`SCIPY_DISTANCES_BUDGET`, with a method of
    :data:`MEMORY_SAVING_METHODS` and the Euclidean metric, go through ``fastcluster.linkage_vector``; anything
    else (fewer observations, condensed distances, other methods or metrics, optimal leaf ordering) goes to
    scipy unchanged.
    """
    observations = np.asarray(observations)
    num_distances = len(observations) * (len(observations) - 1) // 2
    if (
        observations.ndim == 2 and num_distances * 8 > SCIPY_DISTANCES_BUDGET and method in MEMORY_SAVING_METHODS
        and metric == "euclidean" and not optimal_ordering
    ):
        return fastcluster.linkage_vector(observations, method=method, metric="euclidean")
    return scipy_linkage(observations, method=method, metric=metric, optimal_ordering=optimal_ordering)


@contextlib.contextmanager
def calls_in_pyannote_clustering(**functions: Callable) -> Iterator[None]:
    """Make ``pyannote.audio.pipelines.clustering`` call ``functions`` (by module-level name) in this thread
    while the block runs.

    Why names and not methods: pyannote.audio 4 offers no method boundary around what we change.
    ``AgglomerativeClustering.cluster`` builds the dendrogram, cuts it and then enforces ``min_cluster_size``
    and the speaker bounds (re-cutting by merge index, reassigning small clusters) in one method;
    ``VBxClustering.__call__`` filters the embeddings, runs the AHC, VBx, the k-means fallback and the
    assignment in one method. Overriding either would mean writing that whole logic again and following
    pyannote's changes to it by hand; substituting the three functions it calls by name (``linkage``,
    ``fcluster``, ``cluster_vbx``) keeps pyannote's logic the single owner of the clustering.

    Safety: a missing name fails loudly (a pyannote release renamed it); the names are restored on exit,
    exceptions included; a lock serializes substitutions, and the substitutes dispatch to ours only in the
    thread that entered the block, so pyannote's own classes running in other threads meanwhile still call
    the originals.
    """
    missing = [name for name in functions if not hasattr(pyannote_clustering, name)]
    if missing:
        raise RuntimeError(f"pyannote.audio.pipelines.clustering no longer defines {', '.join(missing)}")
    with _substitution_lock:
        originals = {name: getattr(pyannote_clustering, name) for name in functions}
        owner = threading.get_ident()

        def in_owner_thread(ours: Callable, original: Callable) -> Callable:
            def dispatch(*args, **kwargs):
                return (ours if threading.get_ident() == owner else original)(*args, **kwargs)

            return dispatch

        try:
            for name, function in functions.items():
                setattr(pyannote_clustering, name, in_owner_thread(function, originals[name]))
            yield
        finally:
            for name, function in originals.items():
                setattr(pyannote_clustering, name, function)


class ActiveRatioMixin:
    """Keeps an embedding for clustering when its speaker is alone for ``min_active_ratio`` of the chunk."""

    min_active_ratio: float

    def filter_embeddings(
        self, embeddings: np.ndarray, segmentations: SlidingWindowFeature | None = None, min_active_ratio=None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return super().filter_embeddings(embeddings, segmentations, min_active_ratio=self.min_active_ratio)


class AgglomerativeClustering(ActiveRatioMixin, pyannote_clustering.AgglomerativeClustering):
    """pyannote.audio's agglomerative clustering in linear memory, with a settable ``min_active_ratio``."""

    def __init__(self, metric: str = "cosine", min_active_ratio: float = 0.2):
        super().__init__(metric=metric)
        self.min_active_ratio = min_active_ratio

    def cluster(self, embeddings, min_clusters=None, max_clusters=None, num_clusters=None):
        with calls_in_pyannote_clustering(linkage=memory_saving_linkage):
            return super().cluster(embeddings, min_clusters=min_clusters, max_clusters=max_clusters,
                                   num_clusters=num_clusters)


class VBxClustering(ActiveRatioMixin, pyannote_clustering.VBxClustering):
    """pyannote.audio's VBx clustering: its AHC initialisation in linear memory, DiariZen's settings settable.

    ``ahc_criterion`` ``maxclust`` reads the ``threshold`` hyper-parameter as the number of initial clusters.
    """

    def __init__(
        self,
        plda: PLDA,
        metric: str = "cosine",
        min_active_ratio: float = 0.2,
        ahc_criterion: str = "distance",
        max_iters: int = 20,
    ):
        if ahc_criterion not in AHC_CRITERIA:
            raise ValueError(f"ahc_criterion must be one of {', '.join(AHC_CRITERIA)}, got {ahc_criterion!r}")
        super().__init__(plda, metric=metric)
        self.min_active_ratio = min_active_ratio
        self.ahc_criterion = ahc_criterion
        self.max_iters = max_iters

    def _fcluster(self, dendrogram: np.ndarray, threshold: float, criterion: str = "distance") -> np.ndarray:
        """``fcluster`` with this clustering's criterion in place of the one pyannote passes."""
        if self.ahc_criterion == "maxclust":
            return scipy_fcluster(dendrogram, round(threshold), criterion="maxclust")
        return scipy_fcluster(dendrogram, threshold, criterion="distance")

    def __call__(self, embeddings, segmentations=None, num_clusters=None, min_clusters=None, max_clusters=None,
                 **kwargs):
        def vbx_with_our_iterations(*args, maxIters: int = 20, **vbx_kwargs):  # noqa: N803 (pyannote's keyword)
            return cluster_vbx(*args, maxIters=self.max_iters, **vbx_kwargs)

        with calls_in_pyannote_clustering(linkage=memory_saving_linkage, fcluster=self._fcluster,
                                          cluster_vbx=vbx_with_our_iterations):
            return super().__call__(embeddings, segmentations=segmentations, num_clusters=num_clusters,
                                    min_clusters=min_clusters, max_clusters=max_clusters, **kwargs)

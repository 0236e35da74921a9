"""Derived seeds: ``--seed`` is the only seed a user gives.

Every other seed (n-shot subsets, random networks, model initialisation, data
order, ELM projections) is :func:`derive_seed` of the user's seed and a tuple of
labels that name the unit, so the same command gives the same rows, and two
methods evaluated on the same (dataset, fold, n, run) see the same subset.

The derivation is a SHA-256 of the parts' ``repr`` joined by ``|``, cut to 63
bits. It does not depend on Python's hash randomisation, the platform or the
order in which units run.

Documented derivations (``s`` = the user's ``--seed``):

===================  =====================================================
what                 seed
===================  =====================================================
n-shot subset        ``derive_seed(s, "subset", dataset_id, fold, n, run)``
random front-end     ``derive_seed(s, "frontend", run)`` (same for every front-end)
classifier / tuning  ``derive_seed(s, "classifier", dataset_id, fold, n, run)``
model init + order   ``derive_seed(s, "model", dataset_id, fold, n, run)``
folds (no official)  ``derive_seed(s, "folds", dataset_id)``
===================  =====================================================
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["derive_seed", "numpy_rng", "torch_generator"]


def derive_seed(seed: int, *parts: object) -> int:
    """Return a 63-bit seed that is a deterministic function of ``seed`` and ``parts``.

    Parameters
    ----------
    seed : int
        The user's ``--seed``.
    *parts : object
        Labels naming the unit (strings, ints); their ``repr`` is hashed.

    Examples
    --------
    >>> derive_seed(0, "subset", "synth", "1", 5, 0) == derive_seed(0, "subset", "synth", "1", 5, 0)
    True
    >>> derive_seed(0, "a") != derive_seed(1, "a")
    True
    """
    text = "|".join([repr(int(seed)), *(repr(p) for p in parts)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def numpy_rng(seed: int, *parts: object) -> np.random.Generator:
    """A fresh ``np.random.Generator`` seeded with :func:`derive_seed` (never the global RNG)."""
    return np.random.default_rng(derive_seed(seed, *parts))


def torch_generator(seed: int, *parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A local ``torch.Generator`` seeded with :func:`derive_seed` (never the global RNG)."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *parts))
    return g

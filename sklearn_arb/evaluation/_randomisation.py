"""Cascading model-parameter randomisation (Adebayo et al., 2018, "Sanity Checks
for Saliency Maps", NeurIPS).

A map that explains the model must change when the model does: the blocks are
re-initialised from the top one down, and the maps of each randomised model are
compared with the trained model's. A map that stays the same (high rank
correlation) reflects the image or the architecture, not what the model learnt.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._extractor import AttentionExtractor
from .._layout import MapLayout

__all__ = [
    "RandomisationResult",
    "cascading_randomisation",
    "randomise_top_blocks",
    "rank_correlation",
]


def rank_correlation(a: Any, b: Any) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b``.

    Ties get their average rank; a constant row gives NaN.

    Parameters
    ----------
    a, b : array-like of shape (n_images, n_tokens)

    Returns
    -------
    rho : ndarray of shape (n_images,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import rank_correlation
    >>> a = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    >>> b = np.array([[10.0, 20.0, 30.0, 400.0], [4.0, 3.0, 2.0, 1.0]])
    >>> rank_correlation(a, b).tolist()
    [1.0, -1.0]
    """
    ranks_a = rankdata(np.asarray(a, dtype=float), axis=1)
    ranks_b = rankdata(np.asarray(b, dtype=float), axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    scale = np.sqrt((ranks_a**2).sum(axis=1) * (ranks_b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (ranks_a * ranks_b).sum(axis=1) / scale, np.nan)


def _reinitialise(block: nn.Module, seed: int) -> None:
    """Draw ``block``'s parameters again from its modules' own initialisation
    (``reset_parameters``), seeded, without touching the global torch RNG."""
    before = [p.detach().clone() for p in block.parameters()]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in block.modules():
            reset = getattr(module, "reset_parameters", None)
            if module is not block and callable(reset):
                reset()
    changed = any(
        not torch.equal(old, new)
        for old, new in zip(before, block.parameters(), strict=True)
    )
    if before and not changed:
        raise ValueError(
            f"A {type(block).__name__} block has no modules with reset_parameters "
            f"(nn.Linear, nn.LayerNorm, ...), so it cannot be re-initialised."
        )


def randomise_top_blocks(
    model: nn.Module, n_blocks: int, *, random_state: Any = None
) -> nn.Module:
    """A copy of a ViT with its top ``n_blocks`` blocks re-initialised.

    Each block's modules are drawn again from their own initialisation
    (``reset_parameters``: Kaiming-uniform linear layers, unit-scale norms),
    with one seed per block from ``random_state`` (top block first), so the
    model with ``k + 1`` blocks re-initialised extends the one with ``k``.
    Parameters without a module initialisation (e.g. a layer scale) keep
    their values. The given model is not modified.

    Parameters
    ----------
    model : torch.nn.Module
        A ViT with ``blocks``.
    n_blocks : int
        Blocks re-initialised, from the last one down; 0 returns a copy.
    random_state : int, RandomState instance or None, default=None
        Seeds the draws.

    Returns
    -------
    randomised : torch.nn.Module

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.evaluation import randomise_top_blocks
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=3,
    ...                         num_heads=2)
    >>> random = randomise_top_blocks(vit, 1, random_state=0)
    >>> [torch.equal(a.attn.qkv.weight, b.attn.qkv.weight)
    ...  for a, b in zip(vit.blocks, random.blocks)]
    [True, True, False]
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError(
            f"The model {type(model).__name__} has no blocks to re-initialise; pass "
            f"a ViT (timm, or the extractor's fitted model_)."
        )
    if not 0 <= n_blocks <= len(blocks):
        raise ValueError(
            f"n_blocks must lie in [0, {len(blocks)}] for a model of {len(blocks)} "
            f"blocks; got {n_blocks}."
        )
    rng = check_random_state(random_state)
    seeds = rng.randint(np.iinfo(np.int32).max, size=len(blocks))
    randomised = copy.deepcopy(model)
    for k in range(n_blocks):
        _reinitialise(randomised.blocks[len(blocks) - 1 - k], int(seeds[k]))
    return randomised


@dataclass(frozen=True)
class RandomisationResult:
    """The maps of cascading randomisation against the trained model's.

    Attributes
    ----------
    n_randomised : ndarray of int, shape (n_blocks + 1,)
        0 (the trained model), 1 (top block re-initialised), ..., all blocks.
    spearman : ndarray of shape (n_images, n_blocks + 1)
        Spearman correlation of ``|map|`` with the trained model's, per image
        (column 0 is the trained model against itself: 1).
    significant_share : ndarray of shape (n_images, n_blocks + 1) or None
        With a regularizer: the share of tokens it declares significant (its
        nonzero output) for each model.
    significant_kept : ndarray of shape (n_images, n_blocks + 1) or None
        With a regularizer: the share of the trained model's significant
        tokens still significant (NaN where the trained model has none).
    """

    n_randomised: np.ndarray
    spearman: np.ndarray
    significant_share: np.ndarray | None
    significant_kept: np.ndarray | None


def cascading_randomisation(
    extractor: AttentionExtractor,
    images: Any,
    *,
    regularizer: Any = None,
    random_state: Any = 0,
) -> RandomisationResult:
    """Maps of models with their top blocks re-initialised, against the trained
    model's (Adebayo et al., 2018).

    For ``k = 1, ..., L``, the top ``k`` blocks of a copy of the fitted
    extractor's model are re-initialised (:func:`randomise_top_blocks`) and the
    maps computed by a clone of the extractor with every other setting kept.

    Parameters
    ----------
    extractor : AttentionExtractor
        Fitted; never modified (its model is copied).
    images : images
        Anything :func:`~sklearn_arb.load_images` reads.
    regularizer : transformer, default=None
        E.g. a :class:`~sklearn_arb.BootstrapAttentionRegularizer` or a
        selection rule, cloned and fitted on each model's extractor output (each
        model has its own null); its nonzero tokens are the significant ones.
    random_state : int, RandomState instance or None, default=0
        Seeds the re-initialisation.

    Returns
    -------
    result : RandomisationResult

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer
    >>> from sklearn_arb.evaluation import cascading_randomisation
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2)
    >>> extractor = AttentionExtractor(vit, image_size=32, n_bootstrap=8,
    ...                                random_state=0).fit()
    >>> images = np.random.default_rng(0).random((3, 32, 32, 3))
    >>> result = cascading_randomisation(
    ...     extractor, images, regularizer=BootstrapAttentionRegularizer())
    >>> result.n_randomised.tolist(), result.spearman.shape
    ([0, 1, 2], (3, 3))
    >>> result.spearman[:, 0].tolist(), result.significant_kept.shape
    ([1.0, 1.0, 1.0], (3, 3))
    """
    check_is_fitted(extractor, "model_")
    n_blocks = len(extractor.model_.blocks)
    observed = MapLayout(extractor.n_tokens_, extractor.n_bootstrap).observed
    trained = extractor.transform(images)  # TokenMaps: the layout rides along
    outputs = [trained]
    rng = check_random_state(random_state)
    seed = int(rng.randint(np.iinfo(np.int32).max))
    for k in range(1, n_blocks + 1):
        module = randomise_top_blocks(extractor.model_, k, random_state=seed)
        randomised = clone(extractor).set_params(
            model=module,
            pretrained=False,
            checkpoint_path=None,
            image_size=extractor.image_size_,
            memory=None,
            verbose=0,
        )
        outputs.append(randomised.fit().transform(images))
    reference = np.abs(observed(trained))
    spearman = np.stack(
        [rank_correlation(reference, np.abs(observed(out))) for out in outputs],
        axis=1,
    )
    share = kept = None
    if regularizer is not None:
        selected = [
            np.asarray(clone(regularizer).fit(out).transform(out)) != 0
            for out in outputs
        ]
        share = np.stack([s.mean(axis=1) for s in selected], axis=1)
        n_trained = selected[0].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            kept = np.stack(
                [(s & selected[0]).sum(axis=1) / n_trained for s in selected], axis=1
            )
    return RandomisationResult(
        n_randomised=np.arange(n_blocks + 1),
        spearman=spearman,
        significant_share=share,
        significant_kept=kept,
    )

"""make_arb_pipeline: extractor and regularizer wired together, B stated once."""

from __future__ import annotations

from typing import Any

from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from torch import nn

from ._extractor import AttentionExtractor
from ._regularizer import BootstrapAttentionRegularizer

__all__ = ["ArbPipeline", "make_arb_pipeline"]

_SHARED = ("n_bootstrap", "memory")


class ArbPipeline(Pipeline):
    """A Pipeline of an extractor and a regularizer that runs the model on the
    observed images alone where the regularizer needs no more.

    What :func:`make_arb_pipeline` returns; a :class:`sklearn.pipeline.Pipeline`
    in every other respect. :meth:`fit` learns from the bootstrap maps as
    usual. :meth:`transform`, once the final regularizer is fitted with a pooled
    null (:meth:`BootstrapAttentionRegularizer.needs_bootstrap_maps` is False),
    asks the extractor for the observed maps alone
    (:meth:`AttentionExtractor.transform_observed`): ``n`` forward images for
    ``n`` new images instead of ``n (1 + B)``, and the same output. A per-image
    null still gets each image's bootstrap maps.

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import make_arb_pipeline
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2)
    >>> pipe = make_arb_pipeline(vit, n_bootstrap=4,
    ...                          extractor_params={"image_size": 32, "random_state": 0})
    >>> images = np.random.default_rng(0).random((6, 32, 32, 3))
    >>> maps = pipe.fit(images[:4]).transform(images[4:])  # 2 forward images
    >>> extractor, regularizer = pipe.named_steps.values()
    >>> whole_rows = extractor.transform(images[4:])  # 10 forward images
    >>> bool(np.array_equal(maps, regularizer.transform(whole_rows)))
    True
    """

    def transform(self, X: Any, **params: Any) -> Any:
        """The regularized maps of ``X`` (see the class docstring for which
        maps the model computes).

        Parameters
        ----------
        X : images
            As for :meth:`AttentionExtractor.transform`.
        **params
            As for :meth:`sklearn.pipeline.Pipeline.transform`.

        Returns
        -------
        Xt : ndarray of shape (n_images, n_tokens)
            The final step's output.
        """
        if len(self.steps) == 2 and not params:
            (_, extractor), (_, regularizer) = self.steps
            if _observed_maps_suffice(extractor, regularizer):
                return regularizer.transform(extractor.transform_observed(X))
        return super().transform(X, **params)


def _observed_maps_suffice(extractor: Any, regularizer: Any) -> bool:
    """Whether the fitted ``regularizer`` takes the observed maps alone and the
    ``extractor`` can give them."""
    if not hasattr(extractor, "transform_observed"):
        return False
    try:
        return not regularizer.needs_bootstrap_maps()
    except (AttributeError, NotFittedError):  # another step, or not fitted yet
        return False


def make_arb_pipeline(
    model: str | nn.Module = "deit_tiny_patch16_224",
    *,
    n_bootstrap: int = 1,
    extractor_params: dict[str, Any] | None = None,
    regularizer_params: dict[str, Any] | None = None,
    memory: Any = None,
    verbose: bool = False,
) -> Pipeline:
    """A Pipeline of AttentionExtractor and BootstrapAttentionRegularizer.

    Images in, regularized observed attention maps ``(n_images, n_tokens)`` out.
    The number of bootstrap samples is stated once, to the extractor; the
    regularizer (``n_bootstrap="auto"``) reads it from the layout the extractor
    attaches to its maps, so ``set_params(extractor__n_bootstrap=4)`` or a
    ``GridSearchCV`` over ``extractor__n_bootstrap`` needs nothing else;
    ``memory`` goes to the extractor, which caches its maps per image (in this
    process and on disk) and shares its loaded model between clones, so a
    ``GridSearchCV`` over the regularizer's parameters (``regularizer__alpha``,
    ``regularizer__method``, ...) runs the ViT once per image, on training and
    test folds alike, and loads the weights once. The Pipeline itself gets no
    ``memory``: caching the fitted extractor there would pickle its model.

    Parameters
    ----------
    model : str or torch.nn.Module, default="deit_tiny_patch16_224"
        The ViT (see :class:`AttentionExtractor`).
    n_bootstrap : int, default=1
        B, the extractor's bootstrap maps per image; change it later with
        ``extractor__n_bootstrap``.
    extractor_params : dict, default=None
        Other :class:`AttentionExtractor` parameters (``image_size``,
        ``checkpoint_path``, ``bootstrap``, ``source``, ``head``, ``layer``,
        ``target``, ``random_state``, ...). An int ``random_state`` is needed
        for the transform cache, which keys maps on the source settings too: a
        ``GridSearchCV`` over ``extractor__source`` runs the ViT once per image
        and source (pass ``regularizer_params={"scale": "auto"}`` so that
        CDAM's signed maps get a linear z).
    regularizer_params : dict, default=None
        Other :class:`BootstrapAttentionRegularizer` parameters (``method``,
        ``alpha``, ``gamma``, ...).
    memory : None, str or joblib.Memory, default=None
        The extractor's cache location (see :class:`AttentionExtractor`).
    verbose : bool, default=False
        Passed to the Pipeline.

    Returns
    -------
    pipeline : ArbPipeline
        A :class:`sklearn.pipeline.Pipeline` with steps ``"extractor"`` and
        ``"regularizer"``, whose ``transform`` runs the model on the observed
        images alone once the regularizer's pooled null is fitted (see
        :class:`ArbPipeline`).

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import make_arb_pipeline
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2)
    >>> pipe = make_arb_pipeline(vit, n_bootstrap=2,
    ...                          extractor_params={"image_size": 32, "random_state": 0},
    ...                          regularizer_params={"alpha": 0.1})
    >>> images = np.random.default_rng(0).random((4, 32, 32, 3))
    >>> pipe.fit_transform(images).shape
    (4, 16)
    """
    extractor_params = dict(extractor_params or {})
    regularizer_params = dict(regularizer_params or {})
    for name in _SHARED:
        if name in extractor_params or name in regularizer_params:
            raise ValueError(
                f"Pass {name} to make_arb_pipeline itself, not in extractor_params or "
                f"regularizer_params: it is shared by both steps."
            )
    if "model" in extractor_params:
        raise ValueError("Pass model as make_arb_pipeline's first argument.")
    extractor = AttentionExtractor(
        model, n_bootstrap=n_bootstrap, memory=memory, **extractor_params
    )
    regularizer = BootstrapAttentionRegularizer(
        n_bootstrap="auto", **regularizer_params
    )
    return ArbPipeline(
        [("extractor", extractor), ("regularizer", regularizer)],
        verbose=verbose,
    )

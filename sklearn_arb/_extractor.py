"""AttentionExtractor: images to token maps (CLS attention, rollout, CDAM) and
the maps of their bootstrap samples."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterator, Sequence
from functools import partial
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_memory
from timm.data import resolve_data_config
from torch import nn
from tqdm import tqdm

from ._images import load_images, size_pair
from ._layout import MapLayout, TokenMaps, with_layout
from .backbone import block_index
from .backbone._batching import PRECISIONS, ForwardPass, default_batch_size
from .backbone._bootstrap import BOOTSTRAP_KINDS, draw_bootstrap, image_seeds
from .backbone._cache import MapCache, array_digests, settings_digest, shared_model
from .backbone._loading import (
    check_geometry,
    check_weights_source,
    load_vit,
    resolve_device,
)
from .backbone._rollout import HEAD_FUSIONS
from .backbone._sources import SOURCES, MapSource, source_of
from .backbone._weights import module_weights_identity, named_weights_identity

__all__ = ["AttentionExtractor"]

# The parameters, besides the weights, image size and device, that change maps.
_MAP_PARAMETERS = (
    "n_bootstrap",
    "bootstrap",
    "bootstrap_width",
    "bootstrap_moments",
    "head",
    "source",
    "precision",
    "random_state",
)


class AttentionExtractor(TransformerMixin, BaseEstimator):
    """Token maps of a ViT, with the maps of bootstrap inputs.

    For each image, a score per patch token from the ``source``: the CLS
    token's softmax attention in one block (the ARB paper's observed scores;
    the default), attention rollout, or CDAM's signed class-discriminative
    scores; followed by the same maps for ``n_bootstrap`` structureless
    bootstrap images drawn from it: the input of
    :class:`~sklearn_arb.BootstrapAttentionRegularizer`. Only the CLS rows the
    source needs are computed (O(N) in the number of tokens for the attention);
    the blocks before the read one run as the model runs them, and observed and
    bootstrap images share batches on the model's device.

    Parameters
    ----------
    model : str or torch.nn.Module, default="deit_tiny_patch16_224"
        A timm ViT name (``"vit_small_patch8_224.dino"``, the paper's model;
        ``"vit_small_patch14_reg4_dinov2"``, ``"eva02_tiny_patch14_224"``, ...),
        a timm ViT, EVA or BEiT module, a Hugging Face ``transformers`` ViT,
        DeiT or DINOv2 model, a folder written by its ``save_pretrained`` or a
        hub id (modules are deep-copied at fit, never modified). The Models
        page of the user guide lists the tested families.
    pretrained : bool, default=False
        Load the hub weights of a named model (needs internet).
    checkpoint_path : str or path-like, default=None
        Local weights: a state_dict ``.pth``/``.pt``, ``.safetensors``, or a DINO
        training checkpoint (teacher weights used). Position embeddings are
        interpolated to ``image_size``.
    image_size : int or (int, int), default=224
        Images are resized (bilinear, anti-aliased) to this size, which the
        model's patch size must divide. ``None``: the model's own input size.
    n_bootstrap : int, default=1
        B, bootstrap images per image (0: observed maps only).
    bootstrap : {"normal", "pixel", "uniform", "patch"}, default="normal"
        ``normal``: pixels i.i.d. N(mean, (w std)^2) of the normalised image;
        ``pixel``: pixels drawn with replacement; ``uniform``: pixels i.i.d.
        uniform on [min, max] (half-range scaled by w); ``patch``: the image's
        patches shuffled at the model's patch size.
    bootstrap_width : float, default=1.0
        w, the spread factor of ``normal`` and ``uniform``.
    bootstrap_moments : {"channel", "global"}, default="channel"
        Mean/std (or min/max) per channel, or over all channels.
    source : {"attention", "rollout", "cdam"}, default="attention"
        The map: the CLS attention of block ``layer``; attention rollout (the
        CLS row of the product of the blocks' head-fused attention plus
        identity, renormalised, up to block ``layer``); or CDAM, signed
        class-discriminative scores (each token's pre-attention norm output in
        block ``layer`` dotted with the gradient of the ``target`` score). The
        bootstrap images get the same source and, for CDAM, the same target
        class as their image. See the Sources page of the user guide.
    head : {"mean", "max", "min"} or int, default="mean"
        Average the heads' attention or read one head; rollout also fuses by
        ``max`` or ``min``. CDAM uses every head (``"mean"`` only).
    layer : int, default=-1
        The block whose attention is read (-1: the last); for rollout the last
        block of the product, for CDAM the block whose tokens are explained.
    discard_ratio : float in [0, 1), default=0.0
        Rollout only: the fraction of each row's lowest (head-fused) attention
        dropped in every block before the identity is added; the CLS column is
        never dropped.
    target : int, "predicted", list of int or callable, default="predicted"
        CDAM only: the class whose logit is explained (an int; one per image, a
        list as long as ``transform``'s images; or ``"predicted"``, the image's
        top class), or a callable mapping the model's output (an ``(n, C)``
        tensor: the logits, or the features of a model without a
        classification head such as DINO) to ``(n,)`` scores (e.g. a concept
        similarity; the only choice for a model without a head). With
        ``source="cdam"`` a named model or checkpoint keeps its classifier.
        Maps of a callable target are never cached by ``memory``.
    device : str or torch.device, default="auto"
        ``"auto"``: CUDA when available, else CPU.
    batch_size : int, default=None
        Images (observed and bootstrap together) per forward pass; ``None``
        sizes it to the device: about 32 MiB of activations on CPU, where
        small batches run fastest, half the free memory on GPU. On CPU it
        does not change the maps at all (bit for bit); on GPU at most in the
        last float bits.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Reduced precision runs the blocks under autocast on GPU only (the
        softmax stays float32); on CPU it raises a ValueError at fit. Median
        drift of the scores: 0.14% (float16), 1.1% (bfloat16); see
        ``benchmarks/bench_precision.py``.
    memory : None, str or joblib.Memory, default=None
        Cache of ``transform`` outputs, per image, keyed on the image's content
        (as given for an array input, as loaded otherwise), every parameter that
        changes the output and the weights' identity ``weights_id_`` (name and
        the checkpoint's content: a file touched or moved is the same weights;
        a hash of the architecture and weights for a passed module or random
        weights). Only used with an int ``random_state``,
        for which the output is a function of these. Maps are kept in this
        process too (up to 512 MiB, least recently used first out), and named
        weights are loaded once per process, so the clones a ``GridSearchCV``
        fits reuse both without reading the disk. Maps are written as each
        batch finishes, so an interrupted ``transform`` resumes where it stopped.
    verbose : int or bool, default=0
        Show a progress bar over the images of ``transform`` (on stderr;
        cached images count as done at once).
    random_state : int, RandomState instance or None, default=None
        Seeds the bootstrap: one seed per image, used by a ``torch.Generator``
        on the model's device. With an int, the seed is derived from the int and
        the image's content, so an image's maps are the same whatever the batch
        size, the other images or their order (identical images get identical
        bootstrap draws); a RandomState instance or None draws the seeds in
        image order. CPU and CUDA generators give different (equally valid)
        draws, and GPU kernels may differ from CPU in the last bits.

    Attributes
    ----------
    model_ : torch.nn.Module
        The ViT in eval mode on ``device_``. With ``memory`` set and named
        weights (hub or checkpoint file), extractors fitted in one process with
        the same weights, image size and device share this module; it is never
        modified, so deep-copy it before changing it.
    device_ : torch.device
        The device used.
    image_size_ : (int, int)
        Input (height, width).
    patch_size_ : int
        The model's patch size.
    grid_shape_ : (int, int)
        (rows, cols) of the patch grid.
    n_tokens_ : int
        P = rows * cols, patch tokens per map.
    n_prefix_tokens_ : int
        Prefix tokens excluded from the maps (CLS, registers, distillation).
    mean_, std_ : tuple of float
        The model's normalisation (from its ``pretrained_cfg``).
    weights_id_ : str
        The weights' identity, which keys every cache of maps and the command
        line's and Ray's results: the model name with the checkpoint file's
        content digest (or ``hub``), else a digest of the loaded module's
        architecture and weights.
    maps_id_ : str
        The maps' identity: a digest of ``weights_id_``, the image size, the
        device type and the parameters that change maps, as they are now
        (``batch_size``, ``memory`` or ``verbose`` leave it unchanged). It
        keys the ``memory`` cache and the evaluation study's stored maps.

    See Also
    --------
    BootstrapAttentionRegularizer : Thresholds the maps with the bootstrap null.
    make_arb_pipeline : Extractor and regularizer in one Pipeline.

    Notes
    -----
    Output layout: ``(n_images, (1 + B) * P)`` float64,
    ``[observed P | bootstrap 1 P | ... | bootstrap B P]``, tokens in row-major
    grid order. Attention values are softmax weights (> 0), and an observed
    block sums to the CLS attention mass on the patches (< 1); rollout values
    are positive; CDAM's are signed.

    On CPU, forward batches run as parallel single-threaded streams, one per
    core, and each image's query rows are projected alone: an image's maps are
    bit-identical whatever the other images, the batch size, the number of
    threads or the machine's load. timm's plain blocks run in place with reused
    buffers (bit-identical to timm); the user guide's CPU section has the
    details.

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import AttentionExtractor
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2)
    >>> images = np.random.default_rng(0).random((3, 40, 40, 3))
    >>> extractor = AttentionExtractor(vit, image_size=32, n_bootstrap=2,
    ...                                random_state=0).fit(images)
    >>> maps = extractor.transform(images)
    >>> maps.shape, extractor.grid_shape_
    ((3, 48), (4, 4))
    >>> extractor.get_feature_names_out()[[0, 16]].tolist()
    ['observed_t0', 'bootstrap1_t0']
    """

    _parameter_constraints: ClassVar[dict] = {
        "model": [str, nn.Module],
        "pretrained": ["boolean"],
        "checkpoint_path": [str, os.PathLike, None],
        "image_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "n_bootstrap": [Interval(Integral, 0, None, closed="left")],
        "bootstrap": [StrOptions(set(BOOTSTRAP_KINDS))],
        "bootstrap_width": [Interval(Real, 0, None, closed="neither")],
        "bootstrap_moments": [StrOptions({"channel", "global"})],
        "source": [StrOptions(set(SOURCES))],
        "head": [
            StrOptions(set(HEAD_FUSIONS)),
            Interval(Integral, 0, None, closed="left"),
        ],
        "layer": [Integral],
        "discard_ratio": [Interval(Real, 0, 1, closed="left")],
        "target": [
            StrOptions({"predicted"}),
            Interval(Integral, 0, None, closed="left"),
            "array-like",
            callable,
        ],
        "device": [str, torch.device],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "precision": [StrOptions(set(PRECISIONS))],
        "memory": [None, str, HasMethods(["cache"])],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        model: str | nn.Module = "deit_tiny_patch16_224",
        *,
        pretrained: bool = False,
        checkpoint_path: str | os.PathLike | None = None,
        image_size: int | Sequence[int] | None = 224,
        n_bootstrap: int = 1,
        bootstrap: str = "normal",
        bootstrap_width: float = 1.0,
        bootstrap_moments: str = "channel",
        source: str = "attention",
        head: str | int = "mean",
        layer: int = -1,
        discard_ratio: float = 0.0,
        target: Any = "predicted",
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        precision: str = "float32",
        memory: Any = None,
        verbose: int | bool = 0,
        random_state: Any = None,
    ) -> None:
        self.model = model
        self.pretrained = pretrained
        self.checkpoint_path = checkpoint_path
        self.image_size = image_size
        self.n_bootstrap = n_bootstrap
        self.bootstrap = bootstrap
        self.bootstrap_width = bootstrap_width
        self.bootstrap_moments = bootstrap_moments
        self.source = source
        self.head = head
        self.layer = layer
        self.discard_ratio = discard_ratio
        self.target = target
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.memory = memory
        self.verbose = verbose
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any = None, y: Any = None) -> AttentionExtractor:
        """Build the model; the images are not read.

        Parameters
        ----------
        X : images, default=None
            Ignored (any input :func:`~sklearn_arb.load_images` accepts);
            present for the scikit-learn API.
        y : None
            Ignored.

        Returns
        -------
        self : AttentionExtractor
            The fitted extractor.
        """
        check_weights_source(self.model, self.pretrained, self.checkpoint_path)
        device = resolve_device(self.device)
        if self.precision != "float32" and device.type != "cuda":
            raise ValueError(
                f"precision={self.precision!r} runs on GPU only (reduced precision on "
                f"CPU is slower, not faster); use precision='float32' on {device}."
            )
        size = None if self.image_size is None else size_pair(self.image_size)
        weights_id = named_weights_identity(
            self.model, self.pretrained, self.checkpoint_path
        )
        # Named weights are loaded once per process when caching is on; the
        # shared module is never modified (see the model_ attribute).
        # A source explaining class logits: a named model keeps its classifier.
        keep_head = self._map_source().keeps_classifier
        shared_key = (
            None
            if self.memory is None or weights_id is None
            else (weights_id, size, str(device), keep_head)
        )
        vit = shared_model(
            shared_key, partial(self._load_model, size, device, keep_head)
        )
        self.image_size_, self.patch_size_ = check_geometry(
            vit,
            size,
            self.head if isinstance(self.head, Integral) else "mean",
            self.layer,
        )
        self._map_source().check(vit)
        data_config = resolve_data_config(model=vit)
        self.model_ = vit
        self.device_ = device
        self.grid_shape_ = tuple(s // self.patch_size_ for s in self.image_size_)
        self.n_tokens_ = self.grid_shape_[0] * self.grid_shape_[1]
        self.n_prefix_tokens_ = int(vit.num_prefix_tokens)
        self.mean_ = tuple(float(m) for m in data_config["mean"])
        self.std_ = tuple(float(s) for s in data_config["std"])
        self.memory_ = check_memory(self.memory)
        if weights_id is None:
            weights_id = module_weights_identity(vit)
        self.weights_id_ = weights_id
        return self

    def _map_source(self) -> MapSource:
        """The source of the maps, with its settings as they are now."""
        return source_of(self)

    def _load_model(
        self, size: tuple[int, int] | None, device: torch.device, keep_head: bool
    ):
        return load_vit(
            self.model,
            pretrained=self.pretrained,
            checkpoint_path=self.checkpoint_path,
            image_size=size,
            keep_head=keep_head,
        ).to(device)

    def transform(self, X: Any) -> np.ndarray:
        """Attention maps of the images and of their bootstrap samples.

        Parameters
        ----------
        X : array of shape (n, H, W) or (n, H, W, C), list, or path
            uint8 (0-255) or float (0-1) images, or a list of arrays / PIL
            images / file paths of any size, or a folder
            (see :func:`~sklearn_arb.load_images`). Never modified.

        Returns
        -------
        maps : TokenMaps of shape (n, (1 + n_bootstrap) * n_tokens_)
            float64, ``[observed | bootstrap 1 | ... | bootstrap B]``: an ndarray
            that carries its :class:`~sklearn_arb.MapLayout` (``maps.layout``),
            from which the regularizer learns B.
        """
        check_is_fitted(self, "model_")
        if not self._caches_maps():
            return self._pixel_maps(self._load_images(X))
        maps = self._cached_transform(X)
        return with_layout(maps, MapLayout(self.n_tokens_, self.n_bootstrap))

    def _pixel_maps(self, images: np.ndarray, progress: bool = True) -> TokenMaps:
        """The ``[observed | bootstrap]`` maps of ``(n, H, W, 3)`` float32 pixels
        at the model's size, neither read from files nor cached; a list target
        gives each image its class. Counted on the progress bar when verbose
        and ``progress``."""
        maps = np.empty((len(images), (1 + self.n_bootstrap) * self.n_tokens_))
        chunks = self._iter_maps(images, **self._classes_of(len(images)))
        if progress:
            chunks = self._progress(chunks, len(images))
        for chunk, chunk_maps in chunks:
            maps[chunk] = chunk_maps
        return with_layout(maps, MapLayout(self.n_tokens_, self.n_bootstrap))

    def transform_observed(self, X: Any) -> np.ndarray:
        """The observed maps alone: the model runs on the images, not on
        bootstrap samples.

        What a regularizer fitted with a pooled null needs to regularize new
        images (see :meth:`BootstrapAttentionRegularizer.needs_bootstrap_maps`):
        ``1 + n_bootstrap`` times fewer forward images than :meth:`transform`,
        whose first ``n_tokens_`` columns hold the same maps. The Pipeline of
        :func:`~sklearn_arb.make_arb_pipeline` calls it at transform time when
        its regularizer's null is pooled. Cached by ``memory`` as
        :meth:`transform` is.

        Parameters
        ----------
        X : images
            As for :meth:`transform`.

        Returns
        -------
        maps : TokenMaps of shape (n, n_tokens_)
            float64 observed maps, with the layout ``MapLayout(n_tokens_, 0)``.

        Examples
        --------
        >>> import numpy as np
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> from sklearn_arb import AttentionExtractor
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32,
        ...                         depth=2, num_heads=2)
        >>> images = np.random.default_rng(0).random((3, 32, 32, 3))
        >>> extractor = AttentionExtractor(vit, image_size=32, n_bootstrap=2,
        ...                                random_state=0).fit(images)
        >>> observed = extractor.transform_observed(images)
        >>> observed.shape, observed.layout.n_bootstrap
        ((3, 16), 0)
        >>> bool(np.allclose(observed, extractor.transform(images)[:, :16]))
        True
        """
        check_is_fitted(self, "model_")
        # The same fitted extractor (its model shared) with no bootstrap sample.
        observed_only = copy.copy(self)
        observed_only.n_bootstrap = 0
        if self.n_bootstrap and self._caches_maps():
            # Rows cached with their bootstrap maps (a grid search's folds) hold
            # the observed maps: stored as such, the model does not run again.
            image_keys = self._image_keys(X)[0]
            observed_cache = observed_only._map_cache()
            stored = observed_cache.get(image_keys)
            unstored = [
                key for key, row in zip(image_keys, stored, strict=True) if row is None
            ]
            full_rows = self._map_cache().get(unstored)
            for key, row in zip(unstored, full_rows, strict=True):
                if row is not None:
                    observed_cache.put(key, row[: self.n_tokens_])
        return observed_only.transform(X)

    def _caches_maps(self) -> bool:
        """Whether ``memory`` caches the maps (their output is a function of the
        images and parameters)."""
        return not (
            self.memory is None
            or not isinstance(self.random_state, Integral)
            or not self._map_source().cacheable
        )

    def _load_images(self, X: Any) -> np.ndarray:
        images = load_images(X, image_size=self.image_size_)
        flat = images.reshape(len(images), -1)
        constant = np.flatnonzero(flat.max(axis=1) == flat.min(axis=1))
        if constant.size and self.n_bootstrap:
            warnings.warn(
                f"Images {constant[:10].tolist()} are constant: their bootstrap "
                f"samples equal them, so their null maps carry no information.",
                UserWarning,
                stacklevel=3,
            )
        return images

    def _cached_transform(self, X: Any) -> np.ndarray:
        """``transform`` through the in-process cache, then ``memory``, per image."""
        image_keys, images, classes = self._image_keys(X)

        def compute(missing: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
            loaded = self._load_images(X) if images is None else images
            done = len(image_keys) - len(missing)
            extra = {} if classes is None else {"classes": classes[missing]}
            return self._progress(
                self._iter_maps(loaded[missing], **extra), len(image_keys), done
            )

        return self._map_cache().maps(image_keys, compute)

    @property
    def maps_id_(self) -> str:
        """The identity of the maps this extractor computes with its parameters
        as they are now: a digest of the weights' identity, the image size, the
        device type, the source's settings and every parameter that changes
        maps (not those that change only how fast or where they are computed).
        Equal identities, equal maps; it keys the ``memory`` cache."""
        check_is_fitted(self, "model_")
        settings = {
            "weights": self.weights_id_,
            "layer": block_index(self.model_, self.layer),
            "device_type": self.device_.type,
            "image_size": self.image_size_,
            **{name: getattr(self, name) for name in _MAP_PARAMETERS},
        }
        settings.update(self._map_source().cache_settings())
        return settings_digest(settings)

    def _map_cache(self) -> MapCache:
        """The cache of maps made with the parameters as they are now."""
        return MapCache(self.memory_, self.maps_id_)

    def _image_keys(self, X: Any) -> tuple[list[str], np.ndarray | None, Any]:
        """The cache key of each image; the loaded images where they had to be
        read for it (else None); the classes of a list target (else None)."""
        images = None
        if (
            isinstance(X, np.ndarray)
            and X.ndim in (3, 4)
            and len(X)
            and X.dtype.kind in "uif"
        ):
            # Keyed on the images as given, so a hit skips reading and resizing
            # them (an image is stored only once it has passed validation).
            image_keys = array_digests(X)
        else:
            images = self._load_images(X)
            image_keys = array_digests(images)
        classes = self._map_source().image_classes(len(image_keys))
        if classes is not None:
            # A list target: each image's maps are keyed on its class too.
            image_keys = [
                f"{key}-{c}" for key, c in zip(image_keys, classes, strict=True)
            ]
        return image_keys, images, classes

    def _progress(
        self, chunks: Iterator[tuple[slice, np.ndarray]], total: int, done: int = 0
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """``chunks`` as they come, counted on a progress bar when verbose."""
        with tqdm(
            total=total,
            initial=done,
            unit="image",
            desc="attention maps",
            disable=not self.verbose,
        ) as bar:
            for chunk, maps in chunks:
                bar.update(chunk.stop - chunk.start)
                yield chunk, maps

    def _classes_of(self, n_images: int) -> dict[str, np.ndarray]:
        """``_iter_maps``'s keyword for a list target ({} otherwise)."""
        classes = self._map_source().image_classes(n_images)
        return {} if classes is None else {"classes": classes}

    def _iter_maps(
        self, images: np.ndarray, classes: np.ndarray | None = None
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """The maps of ``images``, a chunk of images at a time, in order, as they
        are done (so the caller can store each chunk before the next one runs).
        ``classes``: CDAM's class per image, for a list target."""
        seeds = image_seeds(array_digests(images), self.random_state)
        return self._forward_pass().iter_maps(images, seeds, classes)

    def _forward_pass(self) -> ForwardPass:
        """The fitted model with the parameters as they are now."""
        draw_samples = partial(
            draw_bootstrap,
            n_bootstrap=self.n_bootstrap,
            kind=self.bootstrap,
            width=self.bootstrap_width,
            moments=self.bootstrap_moments,
            patch_size=self.patch_size_,
        )
        batch_size = self.batch_size or default_batch_size(
            self.n_tokens_ + self.n_prefix_tokens_, self.model_.embed_dim, self.device_
        )
        return ForwardPass(
            self.model_,
            self.device_,
            self.mean_,
            self.std_,
            n_bootstrap=self.n_bootstrap,
            draw_samples=draw_samples,
            batch_size=batch_size,
            source=self._map_source(),
            precision=self.precision,
        )

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns: ``observed_t<k>``, ``bootstrap<b>_t<k>``.

        Parameters
        ----------
        input_features : None
            Ignored (the inputs are images).

        Returns
        -------
        feature_names_out : ndarray of str objects, shape ((1 + B) * n_tokens_,)
        """
        check_is_fitted(self, "model_")
        return MapLayout(self.n_tokens_, self.n_bootstrap).names()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Image input, as sklearn.feature_extraction.image.PatchExtractor declares.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags

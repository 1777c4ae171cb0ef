"""ARB on Ray: the same results from one laptop to a cluster (``sklearn-arb[ray]``).

Ray Data's ``map_batches`` with a pool of actors runs the model: each actor loads
it once (on its own GPU where ``num_gpus`` gives one) and Ray's read tasks feed
it. Bootstrap seeds depend on each image's content and ``random_state`` only, so
the maps do not depend on the number of actors, the batch sizes or the order.

- :class:`ExtractMaps` and :class:`RegularizeMaps`: callable classes for
  ``Dataset.map_batches`` over images held in a ``ray.data.Dataset``;
  :func:`fit_pooled_null` learns a pooled null in a first pass by merging the
  :meth:`~sklearn_arb.BootstrapAttentionRegularizer.partial_fit` states of the
  blocks.
- :func:`regularize_dataset`: a Pipeline of :func:`~sklearn_arb.make_arb_pipeline`
  over image files, folders or a ``ray.data.Dataset``; per-image maps and
  statistics written as Parquet, resumable, bad images reported per image.
- :func:`regularize_files`: the ``regularize`` command on Ray (``sklearn-arb
  regularize ... --engine ray``): image files in, the command's per-image
  ``.npz``, panels and ``summary.csv`` out, the maps of a local run to float32
  rounding (an actor runs torch on its own CPU threads, which sums in another
  order); a rerun with either engine skips the images already written.

Ray is imported when a function needs it; ``import sklearn_arb`` never does.
"""

from __future__ import annotations

import copy
import json
import numbers
import os
from collections.abc import Sequence
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from sklearn.utils import Bunch

from ._regularizer import BootstrapAttentionRegularizer
from ._thresholds import THRESHOLD_RULES

__all__ = [
    "ExtractMaps",
    "RegularizeMaps",
    "fit_pooled_null",
    "regularize_dataset",
    "regularize_files",
]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(
            "sklearn_arb.ray needs Ray Data: pip install 'sklearn-arb[ray]'"
        ) from None
    return ray


class ExtractMaps:
    """``map_batches`` callable: attention maps of a batch of images.

    Each actor holds its own copy of the extractor, fitted (the model loaded)
    once when the actor starts.

    Parameters
    ----------
    extractor : AttentionExtractor
        Fitted or not; an unfitted one is fitted in each actor.
    column : str, default="image"
        The batch column of images (arrays of shape (H, W, C), equal sizes in a
        batch, or file paths).

    Examples
    --------
    >>> import numpy as np, ray, timm
    >>> from sklearn_arb import AttentionExtractor
    >>> from sklearn_arb.ray import ExtractMaps
    >>> vit = timm.models.vision_transformer.VisionTransformer(
    ...     img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    >>> extractor = AttentionExtractor(vit, image_size=32, random_state=0)
    >>> images = np.random.default_rng(0).random((4, 32, 32, 3))
    >>> dataset = ray.data.from_items([{"image": image} for image in images])
    >>> maps = dataset.map_batches(  # doctest: +SKIP
    ...     ExtractMaps, fn_constructor_args=(extractor,), concurrency=2,
    ...     batch_size=2).to_pandas()["maps"]
    """

    def __init__(self, extractor: Any, column: str = "image") -> None:
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(extractor)
        except Exception:  # NotFittedError: load the model in this actor
            extractor = extractor.fit()
        self.extractor = extractor
        self.column = column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = batch[self.column]
        if images.dtype != object:
            images = np.asarray(images)
        elif isinstance(images[0], np.ndarray):
            images = np.stack(list(images))
        else:
            images = [str(path) for path in images]
        return {**batch, "maps": np.asarray(self.extractor.transform(images))}


class RegularizeMaps:
    """``map_batches`` callable: regularized maps and statistics of a batch of maps.

    Parameters
    ----------
    regularizer : BootstrapAttentionRegularizer
        With ``null="per_image"`` (fitted on each batch), or fitted with
        ``null="pooled"`` (e.g. by :func:`fit_pooled_null`).
    column : str, default="maps"
        The batch column of maps (:class:`ExtractMaps`'s output).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import BootstrapAttentionRegularizer
    >>> from sklearn_arb.ray import RegularizeMaps
    >>> maps = np.random.default_rng(0).lognormal(size=(3, 2 * 16))
    >>> step = RegularizeMaps(BootstrapAttentionRegularizer(null="per_image"))
    >>> out = step({"maps": maps})
    >>> out["regularized"].shape, out["pvalues"].shape, out["pi0"].shape
    ((3, 16), (3, 16), (3,))
    """

    _STATISTICS = ("z", "pvalues", "lfdr", "pi0", "keep_mask", "regularized")

    def __init__(
        self, regularizer: BootstrapAttentionRegularizer, column: str = "maps"
    ) -> None:
        self.regularizer = regularizer
        self.column = column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        maps = np.stack(list(batch[self.column]))
        regularizer = self.regularizer
        if regularizer.null == "per_image":
            regularizer = regularizer.fit(maps)
        statistics = regularizer.compute_statistics(maps)
        return {**batch, **{name: statistics[name] for name in self._STATISTICS}}


def _null_state(
    regularizer: BootstrapAttentionRegularizer, maps: np.ndarray
) -> dict[str, np.ndarray]:
    """The pooled null state of some maps, as a one-row batch (none without maps)."""
    import pickle

    from sklearn.base import clone

    if not len(maps):
        return {"state": np.array([], dtype=object)}
    fitted = clone(regularizer).fit(maps)
    return {"state": np.array([pickle.dumps(fitted)], dtype=object)}


def _merged_null(states: Any) -> BootstrapAttentionRegularizer:
    """The merge of a dataset of :func:`_null_state` rows."""
    import pickle

    fitted = [pickle.loads(row["state"]) for row in states.iter_rows()]
    return reduce(BootstrapAttentionRegularizer.merge, fitted)


def _partial_fit_block(
    batch: dict[str, np.ndarray], regularizer: BootstrapAttentionRegularizer
) -> dict[str, np.ndarray]:
    """The pooled null state of one block of maps."""
    return _null_state(regularizer, np.stack(list(batch["maps"])))


def fit_pooled_null(
    dataset: Any, regularizer: BootstrapAttentionRegularizer
) -> BootstrapAttentionRegularizer:
    """A pooled null fitted on a dataset of maps: one ``partial_fit`` state per
    block, merged (:meth:`~sklearn_arb.BootstrapAttentionRegularizer.merge`).

    The result equals ``regularizer.fit`` on all the maps at once (the same
    counts, histogram and exact null while kept, moments up to rounding).

    Parameters
    ----------
    dataset : ray.data.Dataset
        With a column ``maps`` (:class:`ExtractMaps`'s output).
    regularizer : BootstrapAttentionRegularizer
        With ``null="pooled"``; not modified.

    Returns
    -------
    fitted : BootstrapAttentionRegularizer

    Examples
    --------
    >>> import numpy as np, ray
    >>> from sklearn_arb import BootstrapAttentionRegularizer
    >>> from sklearn_arb.ray import fit_pooled_null
    >>> maps = np.random.default_rng(0).lognormal(size=(8, 2 * 16))
    >>> dataset = ray.data.from_items([{"maps": row} for row in maps])
    >>> arb = BootstrapAttentionRegularizer()
    >>> fitted = fit_pooled_null(dataset, arb)  # doctest: +SKIP
    >>> fitted.null_count_  # doctest: +SKIP
    128
    """
    if regularizer.null != "pooled":
        raise ValueError(
            "fit_pooled_null learns a pooled null; the regularizer has "
            f"null={regularizer.null!r}. Pass one with null='pooled'."
        )
    states = dataset.map_batches(
        _partial_fit_block, fn_kwargs={"regularizer": regularizer}, batch_size=None
    )
    return _merged_null(states)


# regularize_dataset: a Pipeline over many images, results as Parquet.

_KEY = "key"  # the column naming each image in the output files


def _check_pipeline(pipeline: Any) -> tuple[Any, BootstrapAttentionRegularizer]:
    """The extractor and the regularizer of a make_arb_pipeline Pipeline."""
    from sklearn.pipeline import Pipeline

    from ._extractor import AttentionExtractor

    steps = pipeline.steps if isinstance(pipeline, Pipeline) else []
    if len(steps) != 2 or not (
        isinstance(steps[0][1], AttentionExtractor)
        and isinstance(steps[1][1], BootstrapAttentionRegularizer)
    ):
        raise TypeError(
            f"pipeline must be a Pipeline of an AttentionExtractor and a "
            f"BootstrapAttentionRegularizer; got {pipeline!r}. Build it with "
            "sklearn_arb.make_arb_pipeline."
        )
    return steps[0][1], steps[1][1]


def _fitted_extractor(extractor: Any) -> Any:
    """The extractor fitted in this process (a copy where it was not): its image
    size and weights are needed before the actors start."""
    from sklearn.base import clone

    return extractor if _is_fitted(extractor) else clone(extractor).fit()


def _is_fitted(estimator: Any) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def _readable(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows of a decoded batch whose image was read."""
    read = np.array([not error for error in batch["error"]], dtype=bool)
    return {name: np.asarray(values)[read] for name, values in batch.items()}


class _PooledNullOfImages(ExtractMaps):
    """``map_batches`` callable of :func:`regularize_dataset`'s first pass: the
    pooled null state of a decoded batch (its maps never leave the actor)."""

    def __init__(
        self, extractor: Any, regularizer: BootstrapAttentionRegularizer
    ) -> None:
        super().__init__(extractor)
        self.regularizer = regularizer

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = np.asarray(_readable(batch)["image"])
        maps = self.extractor.transform(images) if len(images) else images
        return _null_state(self.regularizer, maps)


class _WriteResults(ExtractMaps):
    """``map_batches`` callable of :func:`regularize_dataset`: maps, statistics
    and regularized maps of a decoded batch, written as one Parquet file; one
    row per batch back (how many written, the images that could not be read)."""

    def __init__(
        self,
        extractor: Any,
        regularizer: BootstrapAttentionRegularizer,
        methods: Sequence[str],
        output: str,
        settings: str,
    ) -> None:
        super().__init__(extractor)
        self.regularizer = regularizer
        self.methods = methods
        self.output = Path(output)
        self.settings = settings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from sklearn.base import clone

        from ._parquet import write_results

        failed = {
            str(key): str(error)
            for key, error in zip(batch[_KEY], batch["error"], strict=True)
            if error
        }
        batch = _readable(batch)
        if len(batch[_KEY]):
            images = np.asarray(batch["image"])
            regularizer = self.regularizer
            # A fitted pooled null judges the observed maps alone: the model
            # runs on the images only, and no bootstrap column is written.
            per_image = regularizer.null == "per_image"
            if per_image:
                maps = self.extractor.transform(images)
                regularizer = clone(regularizer).fit(maps)
            else:
                maps = self.extractor.transform_observed(images)
            statistics = regularizer.compute_statistics(maps)
            n_images = len(maps)
            columns = {
                "grid_shape": np.tile(self.extractor.grid_shape_, (n_images, 1)),
                "scores": statistics.scores,
            }
            if per_image:
                columns["bootstrap_scores"] = regularizer.layout_.bootstrap(maps)
            columns["z"] = statistics.z
            if per_image:
                columns["null_z"] = statistics.null_z
            columns["pvalues"] = statistics.pvalues
            columns["lfdr"] = statistics.lfdr
            columns["pi0"] = statistics.pi0
            for method in self.methods:
                columns[f"regularized_{method}"] = (
                    statistics.regularized
                    if method == regularizer.method
                    else copy.copy(regularizer)
                    .set_params(method=method)
                    .transform(maps)
                )
            write_results(self.output, batch[_KEY], columns, self.settings)
        return {
            "written": np.array([len(batch[_KEY])]),
            "failed": np.array([json.dumps(failed)], dtype=object),
        }


def _settings(
    extractor: Any, regularizer: BootstrapAttentionRegularizer, methods: Sequence[str]
) -> str:
    """What makes the results, as JSON: stored with them, compared on a rerun.
    ``extractor`` is fitted (its weights are digested); a pooled null is named by
    its count and histogram, which merging computes exactly."""
    # Where and how the maps are computed; the weights are named by their digest.
    where_run = {"model", "pretrained", "checkpoint_path", "memory", "verbose"}
    where_run |= {"device", "batch_size"}
    settings = {
        f"extractor__{name}": str(value)
        for name, value in extractor.get_params(deep=False).items()
        if name not in where_run
    }
    settings["weights"] = extractor.weights_id_
    settings.update(
        {f"regularizer__{k}": str(v) for k, v in regularizer.get_params().items()}
    )
    settings["methods"] = str(list(methods))
    if regularizer.null == "pooled":
        pooled = regularizer.pooled_null_
        histogram = np.ascontiguousarray(pooled.histogram)
        settings["pooled_null"] = f"{pooled.count}|" + xxhash.xxh3_128_hexdigest(
            histogram.tobytes()
        )
    return json.dumps(settings, sort_keys=True)


def _image_rows(
    images: Sequence[str | os.PathLike], output: Path
) -> list[dict[str, str]]:
    """Image files and the image files of folders (walked with their
    subfolders, as the ``regularize`` command walks them), each once."""
    from ._runs import file_inputs

    items = file_inputs([Path(image) for image in images], output)
    return [{"image": item.source, "path": item.source} for item in items]


def regularize_dataset(
    images: Sequence[str | os.PathLike] | Any,
    pipeline: Any,
    output: str | os.PathLike,
    *,
    methods: Sequence[str] | None = None,
    column: str = "image",
    key_column: str = "path",
    workers: int = 1,
    num_gpus: float | None = None,
    batch_size: int = 16,
) -> Bunch:
    """Regularize many images on Ray; per-image maps and statistics as Parquet.

    Ray Data reads and resizes the images in CPU tasks, and a pool of
    ``workers`` actors, each loading the model once (on ``num_gpus`` GPUs
    where there are GPUs), computes the maps and statistics and writes each
    batch's results as soon as it is done. Bootstrap seeds depend on each
    image's content and the extractor's ``random_state`` only, so the results
    do not depend on the number of actors, the batch size or the order (the
    maps up to float32 rounding: images batched together share the model's
    matrix products).

    Resuming: each batch is one file, ``part-<digest of its keys>.parquet``,
    written under a hidden temporary name and renamed into place, so a file is
    complete or absent. A rerun reads the keys already in ``output`` (that
    column only), skips those images and removes the temporary files an
    interrupted run left; a rerun with other settings (model, weights,
    parameters, pooled null) is refused rather than mixing results. One run
    at a time per ``output``.

    Parameters
    ----------
    images : sequence of path-like, or ray.data.Dataset
        Image files and folders (walked with their subfolders, hidden files
        left out; each image keyed by its path as given), or a Dataset with a
        column of images (arrays ``(H, W)`` or ``(H, W, C)`` of any size, file
        paths, or file contents as bytes) and a column naming each image
        uniquely, e.g. ``ray.data.read_images(folder, include_paths=True)``
        (``image``, ``path``) or ``ray.data.read_binary_files(folder,
        include_paths=True)`` (``column="bytes"``).
    pipeline : Pipeline
        From :func:`~sklearn_arb.make_arb_pipeline`, fitted or not, its
        extractor with an int ``random_state``. The extractor is fitted (its
        model loaded) in each actor. A regularizer
        with ``null="per_image"`` judges each image against its own bootstrap
        maps; with ``null="pooled"`` and not fitted, a first pass computes
        the maps of all the images, fits each batch's pooled null state in
        its actor (the maps stay there) and merges the states here, then a
        second pass regularizes the images not yet done against it. The
        fitted pipeline is returned: pass it to a rerun to skip the first
        pass. Not modified.
    output : path-like
        The output folder (created). Read it with ``pandas.read_parquet`` or
        ``pyarrow.parquet.read_table``: one row per image with columns
        ``key``, ``grid_shape`` (2 ints), the lists ``scores`` (the observed
        map, P tokens), ``bootstrap_scores`` (B * P), ``z``, ``null_z``,
        ``pvalues``, ``lfdr``, ``regularized_<method>`` per method, and the
        number ``pi0``: the arrays of the ``regularize`` command's ``.npz``.
        Against a pooled null the model runs on the observed images alone (no
        bootstrap sample): those files have no ``bootstrap_scores`` and
        ``null_z``.
    methods : sequence of {"z", "p", "lfdr", "pi0"}, default=None
        Regularized maps to write; default: the regularizer's ``method``.
    column, key_column : str, default="image", "path"
        The Dataset's image column and key column (ignored for files).
    workers : int, default=1
        Actors, each with its own copy of the model.
    num_gpus : float, default=None
        GPUs per actor; default: 1 where the Ray cluster has GPUs, else 0.
    batch_size : int, default=16
        Images per batch (and per output file).

    Returns
    -------
    result : Bunch
        ``written`` (images computed by this call), ``done_before`` (results
        already in ``output``), ``failed`` (dict: image key -> why it could
        not be read; these images are left out, and a rerun tries them again)
        and ``pipeline`` (with its pooled null fitted where it was learnt).

    Raises
    ------
    ValueError
        A bad argument, or an ``output`` holding results of other settings.
    Exception
        What an actor raised (the model failing, an actor lost): the batches
        already written stay in ``output`` and a rerun computes the rest.

    Examples
    --------
    >>> import numpy as np, ray
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import make_arb_pipeline
    >>> from sklearn_arb.ray import regularize_dataset
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2)
    >>> pipe = make_arb_pipeline(vit, extractor_params={"image_size": 32,
    ...                          "random_state": 0},
    ...                          regularizer_params={"null": "per_image"})
    >>> pixels = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3))
    >>> dataset = ray.data.from_items(  # doctest: +SKIP
    ...     [{"image": image, "path": f"img{i}"} for i, image in enumerate(pixels)])
    >>> result = regularize_dataset(dataset, pipe, "arb_parquet")  # doctest: +SKIP
    >>> result.written, result.failed  # doctest: +SKIP
    (4, {})
    >>> import pandas as pd
    >>> pd.read_parquet("arb_parquet").columns.tolist()[:4]  # doctest: +SKIP
    ['key', 'grid_shape', 'scores', 'bootstrap_scores']
    """
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    from ._parquet import read_keys, remove_temporary_files
    from ._runs import decode_batch

    ray = _ray()
    extractor, regularizer = _check_pipeline(pipeline)
    if not isinstance(extractor.random_state, numbers.Integral):
        raise ValueError(
            f"regularize_dataset needs an int random_state for the extractor (got "
            f"{extractor.random_state!r}), so that each image's bootstrap depends "
            "on its content alone, not on the actor or batch it lands in; pass "
            "extractor_params={'random_state': 0} to make_arb_pipeline."
        )
    methods = list(methods or [regularizer.method])
    unknown = [method for method in methods if method not in THRESHOLD_RULES]
    if unknown:
        raise ValueError(
            f"methods must be among {sorted(THRESHOLD_RULES)}; got {unknown[0]!r}."
        )
    if workers < 1 or batch_size < 1:
        raise ValueError(
            f"workers and batch_size must be at least 1; got {workers} and "
            f"{batch_size}."
        )
    output = Path(os.path.abspath(output))
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file; pass a folder")
    if isinstance(images, ray.data.Dataset):
        dataset = images
        missing = {column, key_column} - set(dataset.columns())
        if missing:
            raise ValueError(
                f"The Dataset has no column {sorted(missing)[0]!r} (its columns: "
                f"{dataset.columns()}); pass column= and key_column= naming its "
                "images and their keys."
            )
    else:
        rows = _image_rows(images, output)
        if not rows:
            raise ValueError("images is empty; pass image files or folders")
        column, key_column = "image", "path"
    fitted = _fitted_extractor(extractor)  # a bad model: one error, before Ray
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    output.mkdir(parents=True, exist_ok=True)
    remove_temporary_files(output)
    done = read_keys(output)
    skip: frozenset[str] = frozenset()
    if isinstance(images, ray.data.Dataset):
        todo_dataset = dataset
        skip = frozenset(done)
    else:
        dataset = ray.data.from_items(rows)
        todo = [row for row in rows if row["path"] not in done]
        todo_dataset = ray.data.from_items(todo) if todo else None
    if num_gpus is None:
        num_gpus = 1 if ray.cluster_resources().get("GPU", 0) else 0
    decode = {
        "fn_kwargs": {
            "column": column,
            "key_column": key_column,
            "image_size": fitted.image_size_,
            "done": frozenset(),
            "cwd": os.getcwd(),
        },
        "batch_size": batch_size,
        "batch_format": "numpy",
    }
    actors = {
        "compute": ray.data.ActorPoolStrategy(size=workers),
        "batch_size": batch_size,
        "batch_format": "numpy",
        **({"num_gpus": num_gpus} if num_gpus else {}),
    }
    if regularizer.null == "pooled" and not _is_fitted(regularizer):
        # The first pass, over all the images (also those done: the same null).
        states = dataset.map_batches(decode_batch, **decode).map_batches(
            _PooledNullOfImages,
            fn_constructor_args=(clone(extractor), regularizer),
            **actors,
        )
        regularizer = _merged_null(states)
    settings = _settings(fitted, regularizer, methods)
    read_keys(output, settings)  # the results there are of these settings
    written, failed = 0, {}
    if todo_dataset is not None:
        decode["fn_kwargs"]["done"] = skip
        results = todo_dataset.map_batches(decode_batch, **decode).map_batches(
            _WriteResults,
            fn_constructor_args=(
                clone(extractor),
                regularizer,
                methods,
                str(output),
                settings,
            ),
            **actors,
        )
        for row in results.iter_rows():
            written += int(row["written"])
            failed.update(json.loads(row["failed"]))
    steps = [pipeline.steps[0], (pipeline.steps[1][0], regularizer)]
    pipeline = Pipeline(steps, verbose=pipeline.verbose)
    return Bunch(
        written=written, done_before=len(done), failed=failed, pipeline=pipeline
    )


def regularize_files(
    images: Sequence[str | os.PathLike], output: str | os.PathLike, **settings: Any
) -> int:
    """The ``regularize`` command on Ray: image files and folders in, per-image
    results out, as ``sklearn-arb regularize IMAGES --output OUTPUT --engine ray``
    writes them.

    Each image's ``.npz`` (maps and statistics) and panel are written atomically
    as soon as its batch is done; a rerun (after an interruption or a failed
    worker) computes only what is missing. With ``workers=N`` N actors each
    load the model once; ``gpus_per_worker=G`` gives each G GPUs;
    ``address=ADDR`` joins a cluster (default: a local Ray, or the one this
    process already started).

    Parameters
    ----------
    images : sequence of path-like
        Image files and folders (walked with their subfolders).
    output : path-like
        The output folder.
    **settings
        The command's options by name, e.g. ``weights="w.pth"``,
        ``workers=2``, ``methods=["p"]``, ``shard=(0, 4)``
        (:class:`sklearn_arb._runs.RunSettings`).

    Returns
    -------
    status : int
        0, or 1 when some images failed (each is named on stderr).

    Raises
    ------
    ValueError
        A bad setting or input, in one line (no such file, no weights, ...).

    Examples
    --------
    >>> from sklearn_arb.ray import regularize_files
    >>> regularize_files(["photos"], "arb_output", weights="deit_tiny_patch16_224.pth",
    ...                  workers=2)  # doctest: +SKIP
    0
    """
    from ._runs import RunSettings, file_inputs, in_shard, regularize_on_ray

    run = RunSettings(output=Path(output), **settings)
    items = file_inputs([Path(image) for image in images], run.output)
    selected = in_shard([item.key for item in items], run.shard)
    items = [item for item, keep in zip(items, selected, strict=True) if keep]
    return regularize_on_ray(items, run)

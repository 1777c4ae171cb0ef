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
- :func:`regularize_files`: the ``regularize`` command on Ray (``sklearn-arb
  regularize ... --engine ray``): image files in, the command's per-image
  ``.npz``, panels and ``summary.csv`` out, the maps of a local run to float32
  rounding (an actor runs torch on its own CPU threads, which sums in another
  order); a rerun with either engine skips the images already written.

Ray is imported when a function needs it; ``import sklearn_arb`` never does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from ._regularizer import BootstrapAttentionRegularizer

__all__ = [
    "ExtractMaps",
    "RegularizeMaps",
    "fit_pooled_null",
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


def _partial_fit_block(
    batch: dict[str, np.ndarray], regularizer: BootstrapAttentionRegularizer
) -> dict[str, np.ndarray]:
    """The pooled null state of one block of maps, as a one-row batch."""
    import pickle

    from sklearn.base import clone

    fitted = clone(regularizer).fit(np.stack(list(batch["maps"])))
    return {"state": np.array([pickle.dumps(fitted)], dtype=object)}


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
    import pickle

    if regularizer.null != "pooled":
        raise ValueError(
            "fit_pooled_null learns a pooled null; the regularizer has "
            f"null={regularizer.null!r}. Pass one with null='pooled'."
        )
    states = dataset.map_batches(
        _partial_fit_block, fn_kwargs={"regularizer": regularizer}, batch_size=None
    )
    fitted = [pickle.loads(row["state"]) for row in states.iter_rows()]
    return reduce(BootstrapAttentionRegularizer.merge, fitted)


class _Messages:
    """What the command prints per image (a tqdm stand-in), kept to be returned."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str, file: Any = None) -> None:
        self.lines.append(line)

    def update(self, n: int = 1) -> None:
        pass


class _RegularizeFiles:
    """``map_batches`` callable of :func:`regularize_files`: the ``regularize``
    command's batches (read, compute, write ``.npz`` and panel, each image under
    its claim), with the model loaded once per actor."""

    def __init__(self, args: argparse.Namespace, cwd: str) -> None:
        from .cli._arguments import build_extractor
        from .cli._regularize import _Run

        # In the driver's folder where this node has it, so that an image is
        # named as the command names it; else images are read by absolute path.
        self.relative = os.path.isdir(cwd)
        if self.relative:
            os.chdir(cwd)
        self.extractor = build_extractor(args)
        self.messages = _Messages()
        self.run = _Run(args, self.messages)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .cli._regularize import _Input, _run_batch

        paths = batch["path"] if self.relative else batch["absolute_path"]
        items = [
            _Input(source=str(source), key=Path(str(key)), image=Path(str(path)))
            for source, key, path in zip(
                batch["source"], batch["key"], paths, strict=True
            )
        ]
        run, before = self.run, self._counts()
        self.messages.lines = []
        claimed: list = []
        try:
            for claimed in run.claimed_batches(items):
                _run_batch(run, claimed, self.extractor)
        finally:
            run.finish_panels()
            if run.panels is not None:  # closed: a fresh writer for the next batch
                from .cli._panels import PanelWriter

                run.panels = PanelWriter()
            for _, result, _, _ in claimed:
                result.claim.release()
        counts = [now - then for now, then in zip(self._counts(), before, strict=True)]
        return {
            "messages": np.array([json.dumps(self.messages.lines)], dtype=object),
            "counts": np.array([counts]),
        }

    def _counts(self) -> list[int]:
        return [self.run.failures, self.run.done_before, self.run.busy]


def _absolute(args: argparse.Namespace) -> argparse.Namespace:
    """A copy of ``args`` whose paths do not depend on a worker's directory."""
    args = argparse.Namespace(**vars(args))
    args.output = Path(os.path.abspath(args.output))
    if args.weights is not None:
        args.weights = Path(os.path.abspath(args.weights))
    return args


def run_regularize(items: Sequence[Any], args: argparse.Namespace) -> int:
    """``sklearn-arb regularize --engine ray``: the command's ``items`` on Ray
    actors; its exit status (0, or 1 when some images failed)."""
    from .cli._arguments import UsageError, build_extractor, first_line
    from .cli._regularize import DEFAULT_BATCH_SIZE
    from .cli._results import read_summary_rows, remove_stale_partials, write_summary

    try:
        ray = _ray()
    except ImportError as exc:  # the command's one-line error, not a traceback
        raise UsageError(str(exc)) from None
    args = _absolute(args)
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"--output {args.output} is a file; pass a folder")
    build_extractor(args)  # a bad model or weights: one clear line, before Ray starts
    args.output.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_partials(args.output)
    if removed:
        print(
            f"removed {removed} partial file(s) of an interrupted run", file=sys.stderr
        )
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not args.quiet
    rows = [
        {
            "source": item.source,
            "key": item.key.as_posix(),
            "path": str(item.image),
            "absolute_path": os.path.abspath(item.image),
        }
        for item in items
    ]
    failures = done_before = busy = 0
    try:
        if rows:
            results = ray.data.from_items(rows).map_batches(
                _RegularizeFiles,
                fn_constructor_args=(args, os.getcwd()),
                batch_size=args.images_per_batch or DEFAULT_BATCH_SIZE,
                compute=ray.data.ActorPoolStrategy(size=args.workers),
                batch_format="numpy",
                **({"num_gpus": args.gpus_per_worker} if args.gpus_per_worker else {}),
            )
            for row in results.iter_rows():
                for line in json.loads(row["messages"]):
                    print(line, file=sys.stderr)
                failures += int(row["counts"][0])
                done_before += int(row["counts"][1])
                busy += int(row["counts"][2])
    except Exception as exc:  # a worker died: what it finished is on disk
        print(
            f"a Ray worker failed ({first_line(exc)}); finished images are saved, "
            "rerun to continue",
            file=sys.stderr,
        )
        return 1
    finally:
        write_summary(args.output, read_summary_rows(args.output))
        if started:
            ray.shutdown()
    if done_before:
        print(
            f"{done_before} image(s) already done in {args.output}, skipped",
            file=sys.stderr,
        )
    if busy:
        print(
            f"{busy} image(s) being computed by another process, skipped",
            file=sys.stderr,
        )
    print(
        f"results in {args.output} (summary.csv, one .npz and .png per image)",
        file=sys.stderr,
    )
    return 1 if failures else 0


def regularize_files(
    images: Sequence[str | os.PathLike], output: str | os.PathLike, *options: str
) -> int:
    """The ``regularize`` command on Ray: image files and folders in, per-image
    results out, as ``sklearn-arb regularize IMAGES --output OUTPUT --engine ray
    OPTIONS`` writes them.

    Each image's ``.npz`` (maps and statistics) and panel are written atomically
    as soon as its batch is done; a rerun (after an interruption or a failed
    worker) computes only what is missing. With ``--workers N`` N actors each
    load the model once; ``--gpus-per-worker G`` gives each G GPUs;
    ``--address ADDR`` joins a cluster (default: a local Ray, or the one this
    process already started).

    Parameters
    ----------
    images : sequence of path-like
        Image files and folders (walked with their subfolders).
    output : path-like
        The output folder.
    *options : str
        Further options of the command, e.g. ``"--weights", "w.pth"``,
        ``"--workers", "2"``.

    Returns
    -------
    status : int
        0, or 1 when some images failed (each is named on stderr), 2 for a bad
        option.

    Examples
    --------
    >>> from sklearn_arb.ray import regularize_files
    >>> options = ["--weights", "deit_tiny_patch16_224.pth", "--workers", "2"]
    >>> regularize_files(["photos"], "arb_output", *options)  # doctest: +SKIP
    0
    """
    from .cli import main

    argv = ["regularize", *map(str, images), "--output", str(output), *options]
    return main([*argv, "--engine", "ray"])

"""``sklearn-arb regularize`` and ``demo``: images in, maps, panels and a table out.

Images run through the model a batch at a time; each image's ``.npz`` is written as
soon as its batch is done, and its panel is drawn in a background thread. What is
done, claimed by another process or left half-written is decided in
:mod:`._results`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from PIL import Image

from .. import AttentionExtractor, BootstrapAttentionRegularizer, load_images
from .._images import IMAGE_SUFFIXES
from .._layout import MapLayout
from ._arguments import (
    UsageError,
    add_model_arguments,
    add_output_arguments,
    add_source_arguments,
    add_statistics_arguments,
    build_extractor,
    existing_file,
    first_line,
    positive_float,
    positive_int,
    source_label,
    string_options,
    threshold,
    z_threshold,
)
from ._loader import add_loader_argument, default_loader_threads, read_ahead
from ._null_state import MAP_SETTINGS, read_matching_state, z_scale
from ._panels import PanelWriter, render_panel, tile_shape, write_panel
from ._results import (
    Result,
    array_digest,
    file_digest,
    output_key,
    read_summary_rows,
    remove_stale_partials,
    write_summary,
)
from ._scale import add_scale_arguments, in_shard

# Images per batch: each call of the model pays a fixed cost (its streams fill and
# drain), which 16-image batches made a quarter of the run on a CPU; an
# interruption loses at most one batch.
DEFAULT_BATCH_SIZE = 64
_SUMMARY_EVERY_S = 5.0  # summary.csv is rewritten at most this often during a run


def add_bootstrap_arguments(group: argparse._ArgumentGroup) -> None:
    """--bootstrap, --n-bootstrap, --bootstrap-width and --seed."""
    group.add_argument(
        "--bootstrap",
        choices=string_options(AttentionExtractor, "bootstrap"),
        default="normal",
        help="bootstrap kind (default: %(default)s)",
    )
    group.add_argument(
        "--n-bootstrap",
        type=positive_int,
        default=1,
        metavar="B",
        help="bootstrap images per image (default: %(default)s)",
    )
    group.add_argument(
        "--bootstrap-width",
        type=positive_float,
        default=1.0,
        metavar="W",
        help="width factor w (default: %(default)s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the bootstrap draws (default: %(default)s)",
    )


def _add_method_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("bootstrap and regularization")
    add_bootstrap_arguments(group)
    group.add_argument(
        "--methods",
        nargs="+",
        choices=string_options(BootstrapAttentionRegularizer, "method"),
        default=["p", "lfdr", "pi0"],
        help="regularizations to apply (default: p lfdr pi0)",
    )
    add_statistics_arguments(group)
    group.add_argument(
        "--alpha",
        type=threshold,
        default=0.05,
        help="p-value threshold or 'median' (default: %(default)s)",
    )
    group.add_argument(
        "--gamma",
        type=threshold,
        default=0.2,
        help="lfdr threshold or 'median' (default: %(default)s)",
    )
    group.add_argument(
        "--z-threshold",
        type=z_threshold,
        default=0.0,
        help="z-step threshold or 'median' (default: %(default)s)",
    )


def _add_regularize_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    # demo is regularize on other images: both take the same options.
    add_model_arguments(
        parser,
        batch_help="images read, run through the model and regularized together; "
        f"larger batches keep a GPU busier (default: {DEFAULT_BATCH_SIZE})",
        batch_dest="images_per_batch",
    )
    add_loader_argument(parser.add_argument_group("reading images"))
    add_source_arguments(parser)
    _add_method_arguments(parser)
    group = parser.add_argument_group("panels")
    group.add_argument(
        "--no-plots",
        dest="plots",
        action="store_false",
        help="write the .npz results and summary.csv only, no PNG panels",
    )
    group.add_argument(
        "--dpi",
        type=positive_int,
        default=100,
        help=f"resolution of the PNG panels; each map is {3:g} inches wide "
        "(default: %(default)s)",
    )
    add_output_arguments(parser, output)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Declare ``regularize`` and ``demo`` and their options on ``commands``."""
    regularize = commands.add_parser(
        "regularize",
        help="regularize the attention maps of images or folders",
        description="Per image: an .npz of maps and statistics, a PNG panel (image "
        "| attention | each method) and a row of summary.csv. Folders are walked "
        "with their subfolders. Each image's results go to OUTPUT/<its path>.npz "
        "and .png (its path relative to the working directory, or its absolute "
        "path where it lies elsewhere). A rerun computes what is missing or "
        "changed (image bytes or settings) and keeps the rest; processes sharing "
        "an output folder share the work.",
    )
    regularize.add_argument("images", nargs="+", type=Path, metavar="IMAGES_OR_FOLDERS")
    _add_regularize_arguments(regularize, "arb_output")
    regularize.add_argument(
        "--null-state",
        type=existing_file,
        default=None,
        metavar="FILE",
        help="judge every image against this pooled null (a file of sklearn-arb "
        "fit-null or merge-null, fitted with this run's model, source and "
        "bootstrap options) instead of against its own bootstrap maps",
    )
    add_scale_arguments(regularize)

    demo = commands.add_parser(
        "demo",
        help="regularize scikit-learn's sample images (load_sample_images)",
        description="The regularize command on sklearn.datasets.load_sample_images(). "
        "Needs weights: --weights PATH, or internet for the hub's.",
    )
    _add_regularize_arguments(demo, "arb_demo")


# Inputs.


@dataclass
class _Input:
    """One image to regularize: where it comes from and how to read it."""

    source: str  # for messages and the summary
    key: Path  # where its results go, relative to the output folder
    image: Path | np.ndarray  # a file, or one image as a batch of one

    def digest(self) -> str:
        """Of the file's bytes, or of the array."""
        if isinstance(self.image, Path):
            return file_digest(self.image)
        return array_digest(self.image)


def _walk_images(folder: Path, skip: Path) -> list[Path]:
    """The image files under ``folder`` and its subfolders, sorted; hidden files
    and folders and the output folder ``skip`` are left out."""
    files = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".") and Path(root, name).resolve() != skip
        )
        files.extend(
            Path(root, name)
            for name in sorted(names)
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    if not files:
        raise UsageError(
            f"no image files in {folder} or its subfolders (looked for "
            f"{', '.join(IMAGE_SUFFIXES)}); pass image files or folders of them"
        )
    return files


def _file_inputs(sources: Sequence[Path], output: Path) -> list[_Input]:
    """Files, and the image files of folders, in the order given, each once."""
    skip = output.resolve()
    files: dict[Path, None] = {}
    for source in sources:
        if source.is_dir():
            files.update(dict.fromkeys(_walk_images(source, skip)))
        elif source.is_file():
            files[source] = None
        else:
            raise UsageError(f"no such file or folder: {source}")
    return [
        _Input(
            source=str(path),
            key=output_key(path),
            image=path,
        )
        for path in files
    ]


def _settings(args: argparse.Namespace) -> str:
    """The settings that change the results, as JSON (stored with each result)."""
    # The maps' settings (those a null state must share too), then the rest.
    keys = (
        *MAP_SETTINGS,
        "pretrained",
        "methods",
        "pvalue",
        "pi0_pvalues",
        "alpha",
        "gamma",
        "z_threshold",
        "seed",
    )
    settings = {key: str(getattr(args, key)) for key in keys}
    if getattr(args, "null_state", None) is not None:
        settings["null_state"] = file_digest(args.null_state)
    if args.weights is not None:
        # A checkpoint overwritten in place is other weights.
        stat = Path(args.weights).stat()
        settings["weights"] = f"{Path(args.weights).resolve()}|{stat.st_size}|"
        settings["weights"] += str(stat.st_mtime_ns)
    return json.dumps(settings, sort_keys=True)


# The run.


@dataclass
class _Loaded:
    """An image of a batch, read: the model's input and the panel's copy."""

    item: _Input
    result: Result
    digest: str
    model_input: np.ndarray
    display: np.ndarray | None


def _display_copy(image: Path | np.ndarray, dpi: int, in_range: str) -> np.ndarray:
    """The image as the panel shows it: uint8, the size of one tile. A JPEG file
    is decoded at a reduced scale (PIL's draft mode), others in full."""
    if isinstance(image, Path):
        with Image.open(image) as file:
            shape = tile_shape((file.height, file.width), dpi)
            file.draft(file.mode, (shape[1], shape[0]))
            small = load_images(file, image_size=shape, in_range=in_range)[0]
    else:
        shape = tile_shape(image.shape[1:3], dpi)
        small = load_images(image, image_size=shape, in_range=in_range)[0]
    return np.round(255 * small).astype(np.uint8)


def read_model_input(
    image: Path | np.ndarray, extractor: Any, in_range: str
) -> np.ndarray:
    """The model's copy of an image, as ``load_images(path, image_size)`` makes
    it (so the maps are the API's)."""
    return load_images(image, image_size=extractor.image_size_, in_range=in_range)[0]


def _load(
    item: _Input,
    result: Result,
    digest: str,
    extractor: Any,
    dpi: int | None,
    in_range: str,
) -> _Loaded:
    """The model's copy of an image and the panel's; nothing at full size is
    kept."""
    model_input = read_model_input(item.image, extractor, in_range)
    display = None if dpi is None else _display_copy(item.image, dpi, in_range)
    return _Loaded(item, result, digest, model_input, display)


def _method_label(method: str, args: argparse.Namespace) -> str:
    return {
        "z": f"z > {args.z_threshold}",
        "p": f"p \N{LESS-THAN OR EQUAL TO} {args.alpha}",
        "lfdr": f"lfdr \N{LESS-THAN OR EQUAL TO} {args.gamma}",
        "pi0": "pi0 (auto)",
    }[method]


def _regularize_batch(
    batch: list[_Loaded],
    extractor: Any,
    args: argparse.Namespace,
    settings: str,
    pooled: BootstrapAttentionRegularizer | None = None,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Maps, statistics and regularized maps of a batch: per image, its summary
    row and the arrays of its ``.npz``; each image judged against its own
    bootstrap maps, or against the ``pooled`` null (a fitted regularizer)."""
    start = time.perf_counter()
    try:
        maps = extractor.transform(np.stack([loaded.model_input for loaded in batch]))
    except ValueError as exc:  # the model itself (e.g. overflow): every image alike
        raise UsageError(first_line(exc)) from None
    layout = MapLayout(extractor.n_tokens_, args.n_bootstrap)
    params = dict(
        n_bootstrap=args.n_bootstrap,
        pvalue=args.pvalue,
        pi0_pvalues=args.pi0_pvalues,
        alpha=args.alpha,
        gamma=args.gamma,
        z_threshold=args.z_threshold,
        scale=z_scale(args),
    )
    if pooled is None:
        regularizer = BootstrapAttentionRegularizer(**params, null="per_image")
        regularizer.fit(maps)
    else:
        regularizer = pooled.set_params(**params)
    statistics = regularizer.compute_statistics(maps)
    regularized = {
        method: regularizer.set_params(method=method).transform(maps)
        for method in args.methods
    }
    seconds = (time.perf_counter() - start) / len(batch)
    outputs = []
    for i, loaded in enumerate(batch):
        attention = statistics.scores[i]
        row: dict[str, Any] = {
            "image": loaded.item.source,
            "result": str(loaded.item.key),
            "n_tokens": attention.size,
            "pi0": round(float(statistics.pi0[i]), 6),
        }
        for method, values in regularized.items():
            row[f"nonzero_percent_{method}"] = round(
                100.0 * np.count_nonzero(values[i]) / values[i].size, 3
            )
            row[f"attention_kept_{method}"] = round(
                float(values[i].sum() / attention.sum()), 6
            )
        row["seconds"] = round(seconds, 4)
        arrays = {
            "attention": attention,
            "null_attention": layout.bootstrap(maps)[i],
            "grid_shape": np.asarray(extractor.grid_shape_),
            "z": statistics.z[i],
            "null_z": statistics.null_z[i],
            "pvalues": statistics.pvalues[i],
            "lfdr": statistics.lfdr[i],
            "pi0": statistics.pi0[i],
            **{f"regularized_{m}": values[i] for m, values in regularized.items()},
            "methods": np.asarray(args.methods),
            "labels": np.asarray([_method_label(m, args) for m in args.methods]),
            "source": np.asarray(source_label(args)),
            "digest": np.asarray(loaded.digest),
            "settings": np.asarray(settings),
            "summary": np.asarray(json.dumps(row)),
        }
        outputs.append((row, arrays))
    return outputs


def _panel_job(
    result: Result, display: np.ndarray, arrays: dict[str, Any], dpi: int
) -> Callable[[], None]:
    """Draw and write the panel of one result from its arrays."""
    maps = {str(arrays["source"]): arrays["attention"]}
    for method, label in zip(arrays["methods"], arrays["labels"], strict=True):
        maps[str(label)] = arrays[f"regularized_{method}"]
    grid_shape = tuple(int(s) for s in arrays["grid_shape"])

    def job() -> None:
        panel = render_panel(display, maps, grid_shape, str(result.key))
        write_panel(result.png, panel, dpi)

    return job


class _Run:
    """One ``regularize`` run: its counters, summary rows and background panels."""

    def __init__(self, args: argparse.Namespace, progress: Any, extractor: Any) -> None:
        self.args = args
        self.output: Path = args.output
        self.dpi = args.dpi if args.plots else None
        self.batch_size = args.images_per_batch or DEFAULT_BATCH_SIZE
        self.settings = _settings(args)
        self.rows = read_summary_rows(self.output)
        self.panels = PanelWriter() if args.plots else None
        null_state = getattr(args, "null_state", None)
        self.pooled = None
        if null_state is not None:
            self.pooled = read_matching_state(null_state, args).regularizer
            if self.pooled.n_tokens_ != extractor.n_tokens_:
                raise UsageError(
                    f"--null-state {null_state} holds a null of maps of "
                    f"{self.pooled.n_tokens_} tokens, but this run's maps have "
                    f"{extractor.n_tokens_}; fit the null with this run's options"
                )
        self.progress = progress
        self.failures = 0
        self.done_before = 0
        self.busy = 0  # claimed by another process
        self._summary_written = time.monotonic()

    def digest(self, item: _Input) -> str:
        """The digest a result must record to be done: content and settings."""
        combined = xxhash.xxh3_128(item.digest().encode())
        combined.update(self.settings.encode())
        return combined.hexdigest()

    def need(self, result: Result, digest: str) -> str | None:
        """What a result still needs: "compute", "panel", or None when done."""
        if result.stored(digest) is None:
            return "compute"
        if self.dpi is not None and not result.png.is_file():
            return "panel"
        return None

    def skip(self, source: str, exc: BaseException) -> None:
        """Count and name an input that cannot be read."""
        self.failures += 1
        self.progress.write(f"skipping {source}: {first_line(exc)}", file=sys.stderr)
        self.progress.update()

    def claimed_batches(self, items: Sequence[_Input]) -> Any:
        """Batches of ``(item, result, digest, need)`` still to do, each claimed
        by this process; images done or claimed elsewhere are counted, passed over."""
        batch = []
        for item in items:
            result = Result(self.output, item.key)
            try:
                digest = self.digest(item)
            except OSError as exc:
                if result.npz.exists() and result.claim.acquire():
                    self.drop(result)
                self.skip(item.source, exc)
                continue
            need = self.need(result, digest)
            if need is not None:
                result.folder.mkdir(parents=True, exist_ok=True)
                if not result.claim.acquire():
                    self.busy += 1
                    self.progress.update()
                    continue
                # Done by another process between the check and the claim?
                need = self.need(result, digest)
                if need is None:
                    result.claim.release()
            if need is None:
                self.done_before += 1
                self.progress.update()
                continue
            batch.append((item, result, digest, need))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def drop(self, result: Result) -> None:
        """Remove the results of a claimed input that cannot be read (they were
        made from bytes it no longer has) and release its claim."""
        result.remove()
        self.rows.pop(str(result.npz.relative_to(self.output)), None)
        result.claim.release()

    def finish(self, result: Result, arrays: dict[str, Any], display: Any) -> None:
        """Queue the panel of a result whose ``.npz`` is written; its claim is
        released once its last file is in place."""
        if self.panels is None:
            result.claim.release()
        else:
            job = _panel_job(result, display, arrays, self.dpi)
            self.panels.submit(job, done=result.claim.release)
        self.progress.update()

    def add_row(self, result: Result, row: dict[str, Any]) -> None:
        self.rows[str(result.npz.relative_to(self.output))] = row
        if time.monotonic() - self._summary_written > _SUMMARY_EVERY_S:
            write_summary(self.output, self.rows)
            self._summary_written = time.monotonic()

    def finish_panels(self) -> None:
        """Wait for the queued panels (also on interrupt: each takes milliseconds)."""
        if self.panels is not None:
            self.panels.close()
            self.failures += self.panels.failures


def _reader(run: _Run, extractor: Any) -> Callable[[tuple], Any]:
    """What reads one claimed image (in a loader thread): the panel's copy of
    one that needs only its panel, else the model's and the panel's."""

    def read(entry: tuple) -> Any:
        item, result, digest, need = entry
        if need == "panel":
            return _display_copy(item.image, run.dpi, run.args.in_range)
        return _load(item, result, digest, extractor, run.dpi, run.args.in_range)

    return read


def _run_batch(run: _Run, batch: list, extractor: Any) -> None:
    """Read, compute and write one claimed batch, in this thread."""
    for _, reads in read_ahead([batch], _reader(run, extractor), threads=0):
        _finish_batch(run, batch, reads, extractor)


def _finish_batch(run: _Run, batch: list, reads: list, extractor: Any) -> None:
    """Compute and write one claimed batch whose images are read."""
    loaded = []
    for (item, result, digest, need), (value, error) in zip(batch, reads, strict=True):
        if error is not None:
            if need == "compute":  # other bytes than its results were made from
                run.drop(result)
            else:
                result.claim.release()
            run.skip(item.source, error)
        elif need == "panel":
            run.finish(result, result.stored(digest), value)
        else:
            loaded.append(value)
    if loaded:
        outputs = _regularize_batch(
            loaded, extractor, run.args, run.settings, run.pooled
        )
        for done, (row, arrays) in zip(loaded, outputs, strict=True):
            done.result.write(arrays)
            run.add_row(done.result, row)
            run.finish(done.result, arrays, done.display)


def _run_regularize(items: Sequence[_Input], args: argparse.Namespace) -> int:
    """Regularize ``items`` into ``args.output``."""
    from tqdm import tqdm

    if args.output.exists() and not args.output.is_dir():
        raise UsageError(
            f"--output {args.output} is a file; pass a folder (it is created if "
            "missing)"
        )
    extractor = build_extractor(args)
    args.output.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_partials(args.output)
    if removed:
        print(
            f"removed {removed} partial file(s) of an interrupted run", file=sys.stderr
        )
    progress = tqdm(
        total=len(items),
        desc="images",
        unit="image",
        disable=args.quiet,
        file=sys.stderr,
    )
    try:
        run = _Run(args, progress, extractor)
    except BaseException:
        progress.close()
        raise
    taken: list[list] = []  # claimed batches: the one computed, the one read ahead

    def claimed() -> Any:
        for batch in run.claimed_batches(items):
            taken.append(batch)
            yield batch

    threads = args.loader_threads
    batches = read_ahead(
        claimed(),
        _reader(run, extractor),
        default_loader_threads() if threads is None else threads,
    )
    try:
        for batch, reads in batches:
            _finish_batch(run, batch, reads, extractor)
            taken.pop(0)
    finally:
        batches.close()  # waits for the reads running
        progress.close()
        run.finish_panels()
        # Interrupted: the claims of the images not finished.
        for batch in taken:
            for _, result, _, _ in batch:
                result.claim.release()
        write_summary(args.output, read_summary_rows(args.output))
    if run.done_before:
        print(
            f"{run.done_before} image(s) already done in {args.output}, skipped",
            file=sys.stderr,
        )
    if run.busy:
        print(
            f"{run.busy} image(s) being computed by another process, skipped",
            file=sys.stderr,
        )
    print(results_line(args.output, args.plots), file=sys.stderr)
    return 1 if run.failures else 0


def results_line(output: Path, plots: bool) -> str:
    """The run's last line: where its results are, and what they are."""
    per_image = "one .npz and .png" if plots else "one .npz"
    return f"results in {output} (summary.csv, {per_image} per image)"


def regularize(args: argparse.Namespace) -> int:
    if args.engine != "ray" and (
        args.address or args.workers != 1 or args.gpus_per_worker
    ):
        raise UsageError(
            "--address, --workers and --gpus-per-worker are options of --engine "
            "ray; add --engine ray (pip install 'sklearn-arb[ray]')"
        )
    if args.null_state is not None:
        # Absolute, for Ray actors in other folders; checked before the model
        # loads (and each process or actor reads it again).
        args.null_state = args.null_state.resolve()
        read_matching_state(args.null_state, args)
    items = _file_inputs(args.images, args.output)
    selected = in_shard([item.key for item in items], args.shard)
    items = [item for item, keep in zip(items, selected, strict=True) if keep]
    if args.engine == "ray":
        from ..ray import run_regularize

        return run_regularize(items, args)
    return _run_regularize(items, args)


def demo(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    items = [
        _Input(
            source=Path(filename).name,
            key=Path(Path(filename).name),
            image=image[np.newaxis],
        )
        for filename, image in zip(sample.filenames, sample.images, strict=True)
    ]
    if args.weights is None and not args.pretrained:
        args.pretrained = True  # the demo fetches the hub's weights when online
    return _run_regularize(items, args)

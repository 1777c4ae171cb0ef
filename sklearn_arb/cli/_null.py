"""``sklearn-arb fit-null`` and ``merge-null``: a pooled null in two passes.

``fit-null`` runs the model over images (a ``--shard K/N`` of them in a job
array) and accumulates their bootstrap maps into a pooled null
(:meth:`~sklearn_arb.BootstrapAttentionRegularizer.partial_fit`), saved as a
null state file (:mod:`._null_state`) now and then and at the end, so that an
interrupted run resumes where it was. ``merge-null`` joins the states of
disjoint shards (:meth:`~sklearn_arb.BootstrapAttentionRegularizer.merge`);
``regularize --null-state`` then judges every image against the merged null.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import BootstrapAttentionRegularizer
from .._layout import MapLayout
from ..stats._pooled_null import PooledNull
from ._arguments import (
    UsageError,
    add_in_range_argument,
    add_model_arguments,
    add_source_arguments,
    build_extractor,
    first_line,
    non_negative_int,
)
from ._loader import (
    IMAGE_ERRORS,
    add_loader_argument,
    default_loader_threads,
    read_ahead,
)
from ._null_state import (
    NullState,
    Part,
    fitted_regularizer,
    inputs_digest,
    mismatch,
    null_settings,
    read_state,
    write_state,
    z_scale,
)
from ._regularize import (
    DEFAULT_BATCH_SIZE,
    _file_inputs,
    add_bootstrap_arguments,
    read_model_input,
)
from ._scale import add_shard_argument, in_shard

_SAVE_EVERY_S = 30.0  # an unfinished state is written at most this often


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Declare ``fit-null`` and ``merge-null`` and their options on ``commands``."""
    fit = commands.add_parser(
        "fit-null",
        help="fit a pooled null on images (a shard of them) into a state file",
        description="Run the model over the images and pool their bootstrap maps "
        "into one null, saved to OUTPUT (a .npz of arrays, read without pickle). "
        "With --shard K/N, N jobs each fit a share; merge-null joins their files "
        "and regularize --null-state judges images against the result. An "
        "interrupted run resumes when run again with the same arguments.",
    )
    fit.add_argument("images", nargs="+", type=Path, metavar="IMAGES_OR_FOLDERS")
    fit.add_argument(
        "--output", type=Path, required=True, metavar="FILE", help="the state file"
    )
    add_model_arguments(
        fit,
        batch_help=f"images read and run through the model together (default: "
        f"{DEFAULT_BATCH_SIZE})",
        batch_dest="images_per_batch",
    )
    add_source_arguments(fit)
    group = fit.add_argument_group("bootstrap and null")
    add_bootstrap_arguments(group)
    group.add_argument(
        "--max-exact-null",
        type=non_negative_int,
        default=BootstrapAttentionRegularizer().max_exact_null,
        metavar="M",
        help="keep the null values themselves, sorted, while there are at most M "
        "(exact p-values); beyond, a fixed-grid histogram bounds the p-values' "
        "error (default: %(default)s)",
    )
    group = fit.add_argument_group("reading images")
    add_in_range_argument(group)
    add_loader_argument(group)
    add_shard_argument(fit.add_argument_group("many images"))
    fit.add_argument("--quiet", action="store_true", help="no progress bar")

    merge = commands.add_parser(
        "merge-null",
        help="merge the null state files of disjoint shards into one",
        description="Join the pooled nulls of fit-null files (e.g. one per shard) "
        "into the null of all their images, as fitting it in one run gives.",
    )
    merge.add_argument("states", nargs="+", type=Path, metavar="STATE")
    merge.add_argument(
        "--output", type=Path, required=True, metavar="FILE", help="the merged state"
    )
    merge.add_argument("--quiet", action="store_true", help="no summary line")


# fit-null


def _resumed(path: Path, fresh: NullState, keys: list[str]) -> NullState | None:
    """The state of this very run in ``path`` to go on from; None where there
    is none. A file of another run is never overwritten."""
    if not path.exists():
        return None
    state = read_state(path)
    if _forget_removed(state, fresh, keys):
        write_state(path, state)
    if (
        state.settings != fresh.settings
        or (state.regularizer.max_exact_null != fresh.regularizer.max_exact_null)
        or [(part.inputs, part.shard, part.n_images) for part in state.parts]
        != [(part.inputs, part.shard, part.n_images) for part in fresh.parts]
    ):
        raise UsageError(
            f"--output {path} holds another null (other settings or images); pass "
            "another file name or remove it"
        )
    return state


def _forget_removed(state: NullState, fresh: NullState, keys: list[str]) -> bool:
    """Where this run's image list (``keys``) is the state's run's without some
    of the images it left out as unreadable, make the state this run's (the
    images removed from the inputs no longer counted); whether it was."""
    old, new = state.parts[0], fresh.parts[0]
    if len(state.parts) != 1 or old.inputs == new.inputs or not old.left_out:
        return False
    present = set(keys)
    removed = sorted((i, key) for i, key in old.left_out if key not in present)
    restored = list(keys)
    for index, key in removed:
        restored.insert(index, key)
    if inputs_digest([Path(key) for key in restored]) != old.inputs:
        return False
    # Each was read (and failed) before the images still to do: all are done.
    old.inputs = new.inputs
    old.n_images -= len(removed)
    old.done -= len(removed)
    old.failures -= len(removed)
    place = {key: i for i, key in enumerate(keys)}
    old.left_out = [(place[key], key) for _, key in old.left_out if key in present]
    return True


def fit_null(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.output.is_dir():
        raise UsageError(f"--output {args.output} is a folder; pass a file name")
    items = _file_inputs(args.images, args.output)
    keys = [item.key.as_posix() for item in items]
    inputs = inputs_digest([item.key for item in items])
    selected = in_shard([item.key for item in items], args.shard)
    places = [i for i, keep in enumerate(selected) if keep]  # in the image list
    items = [items[i] for i in places]
    extractor = build_extractor(args)
    part = Part(inputs, args.shard or (0, 1), len(items), 0, 0)
    # The null of no image yet (an empty shard writes it; merging adds nothing).
    regularizer = fitted_regularizer(
        PooledNull.empty(),
        MapLayout(extractor.n_tokens_, args.n_bootstrap),
        z_scale(args),
        args.max_exact_null,
    )
    fresh = NullState(regularizer, null_settings(args), [part])
    state = _resumed(args.output, fresh, keys)
    if state is None:
        state = fresh
    elif state.complete and state.parts[0].left_out:
        return _retry_left_out(args, state, items, extractor)
    elif state.complete:
        print(f"{args.output} is complete already: nothing to do", file=sys.stderr)
        return 0
    part = state.parts[0]
    size = args.images_per_batch or DEFAULT_BATCH_SIZE
    batches = read_ahead(
        (
            list(zip(places[i : i + size], items[i : i + size], strict=True))
            for i in range(part.done, len(items), size)
        ),
        lambda entry: read_model_input(entry[1].image, extractor, args.in_range),
        default_loader_threads()
        if args.loader_threads is None
        else args.loader_threads,
    )
    progress = tqdm(
        total=len(items),
        initial=part.done,
        desc="images",
        unit="image",
        disable=args.quiet,
        file=sys.stderr,
    )
    saved = time.monotonic()
    try:
        for batch, reads in batches:
            images = []
            for (place, item), (image, error) in zip(batch, reads, strict=True):
                if error is None:
                    images.append(image)
                else:
                    part.failures += 1
                    part.left_out.append((place, item.key.as_posix()))
                    progress.write(
                        f"skipping {item.source}: {first_line(error)}", file=sys.stderr
                    )
            if images:
                state.regularizer.partial_fit(_maps(extractor, np.stack(images)))
            part.done += len(batch)
            progress.update(len(batch))
            if time.monotonic() - saved > _SAVE_EVERY_S:
                write_state(args.output, state)
                saved = time.monotonic()
    finally:
        batches.close()
        progress.close()
        write_state(args.output, state)
    print(_describe(args.output, state), file=sys.stderr)
    return 1 if part.failures else 0


def _retry_left_out(
    args: argparse.Namespace, state: NullState, items: list, extractor: Any
) -> int:
    """A complete state's unreadable images read again: those readable now join
    the null; the status is 1 while any is left out."""
    part = state.parts[0]
    by_key = {item.key.as_posix(): item for item in items}
    images, still = [], []
    for place, key in part.left_out:
        item = by_key[key]
        try:
            images.append(read_model_input(item.image, extractor, args.in_range))
        except IMAGE_ERRORS as exc:
            still.append((place, key))
            print(f"skipping {item.source}: {first_line(exc)}", file=sys.stderr)
    if images:
        state.regularizer.partial_fit(_maps(extractor, np.stack(images)))
        part.failures = len(still)
        part.left_out = still
        write_state(args.output, state)
    print(_describe(args.output, state), file=sys.stderr)
    return 1 if part.failures else 0


def _maps(extractor: Any, images: np.ndarray) -> Any:
    try:
        return extractor.transform(images)
    except ValueError as exc:  # the model itself (e.g. overflow): every image alike
        raise UsageError(first_line(exc)) from None


def _describe(path: Path, state: NullState) -> str:
    """One line: what the state holds and how exact its p-values are."""
    regularizer = state.regularizer
    images = sum(part.n_images - part.failures for part in state.parts)
    failures = sum(part.failures for part in state.parts)
    exact = (
        "exact p-values"
        if regularizer.pvalue_bound_ == 0
        else f"p-values within {regularizer.pvalue_bound_:.2g} of the exact ones "
        "(the histogram's bound)"
    )
    line = (
        f"{path}: a pooled null of {regularizer.null_count_} values from {images} "
        f"image(s); {exact}"
    )
    if failures:
        line += (
            f"; {failures} unreadable image(s) left out: make them readable (then "
            "rerun fit-null) or remove them from its inputs"
        )
    return line


# merge-null


def _check_disjoint(paths: list[Path], states: list[NullState]) -> list[str]:
    """A UsageError where two states hold the same images; the notes of shards
    missing from a split (a partial merge is allowed: a later merge adds them)."""
    seen: dict[tuple[str, int], tuple[Path, int]] = {}  # (list, K) -> (file, N)
    for path, state in zip(paths, states, strict=True):
        for part in state.parts:
            index, count = part.shard
            for (inputs, k), (other, n) in seen.items():
                if inputs != part.inputs:
                    continue
                if n != count:
                    raise UsageError(
                        f"{other} and {path} split the same images into {n} and "
                        f"{count} shards, which overlap; fit every shard with the "
                        f"same --shard K/{n}"
                    )
                if k == index:
                    raise UsageError(
                        f"{other} and {path} both hold {part.name()}; merge the "
                        "state of each shard once"
                    )
            seen[(part.inputs, index)] = (path, count)
    notes = []
    for inputs in dict.fromkeys(inputs for inputs, _ in seen):
        count = next(n for (i, _), (_, n) in seen.items() if i == inputs)
        missing = sorted(set(range(count)) - {k for (i, k) in seen if i == inputs})
        if missing:
            shards = ", ".join(f"{k}/{count}" for k in missing)
            notes.append(
                f"note: shard(s) {shards} of image list {inputs[:8]} are not in "
                "this merge"
            )
    return notes


def merge_null(args: argparse.Namespace) -> int:
    paths = list(args.states)
    for path in paths:
        if path.is_dir():
            raise UsageError(
                f"{path} is a folder; pass the state files in it (e.g. {path}/*.npz)"
            )
        if not path.is_file():
            raise UsageError(f"no such file: {path}")
    states = [read_state(path) for path in paths]
    for path, state in zip(paths, states, strict=True):
        if not state.complete:
            raise UsageError(
                f"{path} is unfinished; rerun the fit-null command that writes it "
                "to finish it, then merge"
            )
        different = mismatch(states[0].settings, state.settings)
        if different is not None:
            raise UsageError(
                f"{paths[0]} and {path} were fitted with other settings "
                f"({different}); fit every part with the same options"
            )
    notes = _check_disjoint(paths, states)
    merged = states[0].regularizer
    for path, state in zip(paths[1:], states[1:], strict=True):
        try:
            merged = merged.merge(state.regularizer)
        except ValueError as exc:
            raise UsageError(
                f"{paths[0]} and {path} cannot be merged: {first_line(exc)}"
            ) from None
    result = NullState(
        merged, states[0].settings, [part for state in states for part in state.parts]
    )
    write_state(args.output, result)
    failures = sum(part.failures for part in result.parts)
    if not args.quiet:
        for note in notes:
            print(note, file=sys.stderr)
    if failures or not args.quiet:  # images left out are said even when quiet
        print(_describe(args.output, result), file=sys.stderr)
    return 1 if failures else 0

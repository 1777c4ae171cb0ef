"""A pooled null in two passes: ``fit-null`` and ``merge-null``.

``fit_null`` runs the model over images (a ``--shard K/N`` of them in a job
array) and accumulates their bootstrap maps into a pooled null
(:meth:`~sklearn_arb.BootstrapAttentionRegularizer.partial_fit`), saved as a
null state file (:mod:`._null_state`) now and then and at the end, so that an
interrupted run resumes where it was. ``merge_null`` joins the states of
disjoint shards (:meth:`~sklearn_arb.BootstrapAttentionRegularizer.merge`);
a ``regularize`` run with ``null_state`` then judges every image against the
merged null.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._layout import MapLayout
from ..stats import PooledNull
from ._compute import compute_maps, read_model_input
from ._errors import RunError, first_line
from ._inputs import file_inputs, in_shard
from ._loader import IMAGE_ERRORS, default_loader_threads, read_ahead
from ._model import build_extractor
from ._null_state import (
    NullState,
    Part,
    fitted_regularizer,
    inputs_digest,
    mismatch,
    read_state,
    write_state,
)
from ._settings import RunSettings

_SAVE_EVERY_S = 30.0  # an unfinished state is written at most this often


def _resumed(path: Path, fresh: NullState, keys: list[str]) -> NullState | None:
    """The state of this very run in ``path`` to go on from; None where there
    is none. A file of another run is never overwritten."""
    if not path.exists():
        return None
    state = read_state(path)
    forgotten = _forget_removed(state, fresh, keys)
    if (
        state.settings != fresh.settings
        or (state.regularizer.max_exact_null != fresh.regularizer.max_exact_null)
        or [(part.inputs, part.shard, part.n_images) for part in state.parts]
        != [(part.inputs, part.shard, part.n_images) for part in fresh.parts]
    ):
        raise RunError(
            f"--output {path} holds another null (other settings or images); pass "
            "another file name or remove it"
        )
    if forgotten:
        write_state(path, state)
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


def fit_null(sources: Sequence[Path], settings: RunSettings) -> int:
    """Fit the pooled null of the images in ``sources`` (files and folders; the
    ``settings.shard`` of them) into the state file ``settings.output``.

    Resumes an unfinished state of the same run; a complete one with images
    left out as unreadable reads them again. Returns the exit status: 0, or 1
    while any image is left out (each named on stderr).
    """
    from tqdm import tqdm

    if settings.output.is_dir():
        raise RunError(f"--output {settings.output} is a folder; pass a file name")
    items = file_inputs(sources, settings.output)
    keys = [item.key.as_posix() for item in items]
    inputs = inputs_digest([item.key for item in items])
    selected = in_shard([item.key for item in items], settings.shard)
    places = [i for i, keep in enumerate(selected) if keep]  # in the image list
    items = [items[i] for i in places]
    extractor = build_extractor(settings)
    part = Part(inputs, settings.shard or (0, 1), len(items), 0, 0)
    # The null of no image yet (an empty shard writes it; merging adds nothing).
    regularizer = fitted_regularizer(
        PooledNull.empty(),
        MapLayout(extractor.n_tokens_, settings.n_bootstrap),
        settings.z_scale,
        settings.max_exact_null,
    )
    fresh = NullState(regularizer, settings.null_settings(), [part])
    state = _resumed(settings.output, fresh, keys)
    if state is None:
        state = fresh
    elif state.complete and state.parts[0].left_out:
        return _retry_left_out(settings, state, items, extractor)
    elif state.complete:
        print(f"{settings.output} is complete already: nothing to do", file=sys.stderr)
        return 0
    part = state.parts[0]
    size = settings.images_per_batch
    batches = read_ahead(
        (
            list(zip(places[i : i + size], items[i : i + size], strict=True))
            for i in range(part.done, len(items), size)
        ),
        lambda entry: read_model_input(entry[1].image, extractor, settings.in_range),
        default_loader_threads()
        if settings.loader_threads is None
        else settings.loader_threads,
    )
    progress = tqdm(
        total=len(items),
        initial=part.done,
        desc="images",
        unit="image",
        disable=settings.quiet,
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
                state.regularizer.partial_fit(compute_maps(extractor, np.stack(images)))
            part.done += len(batch)
            progress.update(len(batch))
            if time.monotonic() - saved > _SAVE_EVERY_S:
                write_state(settings.output, state)
                saved = time.monotonic()
    finally:
        batches.close()
        progress.close()
        write_state(settings.output, state)
    print(_describe(settings.output, state), file=sys.stderr)
    return 1 if part.failures else 0


def _retry_left_out(
    settings: RunSettings, state: NullState, items: list, extractor: Any
) -> int:
    """A complete state's unreadable images read again: those readable now join
    the null; the status is 1 while any is left out."""
    part = state.parts[0]
    by_key = {item.key.as_posix(): item for item in items}
    images, still = [], []
    for place, key in part.left_out:
        item = by_key[key]
        try:
            images.append(read_model_input(item.image, extractor, settings.in_range))
        except IMAGE_ERRORS as exc:
            still.append((place, key))
            print(f"skipping {item.source}: {first_line(exc)}", file=sys.stderr)
    if images:
        state.regularizer.partial_fit(compute_maps(extractor, np.stack(images)))
        part.failures = len(still)
        part.left_out = still
        write_state(settings.output, state)
    print(_describe(settings.output, state), file=sys.stderr)
    return 1 if part.failures else 0


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
    """A RunError where two states hold the same images; the notes of shards
    missing from a split (a partial merge is allowed: a later merge adds them)."""
    seen: dict[tuple[str, int], tuple[Path, int]] = {}  # (list, K) -> (file, N)
    for path, state in zip(paths, states, strict=True):
        for part in state.parts:
            index, count = part.shard
            for (inputs, k), (other, n) in seen.items():
                if inputs != part.inputs:
                    continue
                if n != count:
                    raise RunError(
                        f"{other} and {path} split the same images into {n} and "
                        f"{count} shards, which overlap; fit every shard with the "
                        f"same --shard K/{n}"
                    )
                if k == index:
                    raise RunError(
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


def merge_null(paths: Sequence[Path], output: Path, quiet: bool = False) -> int:
    """Merge the complete null states in ``paths`` (of disjoint images, fitted
    with the same settings) into ``output``. Returns the exit status: 0, or 1
    when the merged states left images out (said even when ``quiet``)."""
    paths = list(paths)
    for path in paths:
        if path.is_dir():
            raise RunError(
                f"{path} is a folder; pass the state files in it (e.g. {path}/*.npz)"
            )
        if not path.is_file():
            raise RunError(f"no such file: {path}")
    states = [read_state(path) for path in paths]
    for path, state in zip(paths, states, strict=True):
        if not state.complete:
            raise RunError(
                f"{path} is unfinished; rerun the fit-null command that writes it "
                "to finish it, then merge"
            )
        different = mismatch(states[0].settings, state.settings)
        if different is not None:
            raise RunError(
                f"{paths[0]} and {path} were fitted with other settings "
                f"({different}); fit every part with the same options"
            )
    notes = _check_disjoint(paths, states)
    merged = states[0].regularizer
    for path, state in zip(paths[1:], states[1:], strict=True):
        try:
            merged = merged.merge(state.regularizer)
        except ValueError as exc:
            raise RunError(
                f"{paths[0]} and {path} cannot be merged: {first_line(exc)}"
            ) from None
    result = NullState(
        merged, states[0].settings, [part for state in states for part in state.parts]
    )
    write_state(output, result)
    failures = sum(part.failures for part in result.parts)
    if not quiet:
        for note in notes:
            print(note, file=sys.stderr)
    if failures or not quiet:  # images left out are said even when quiet
        print(_describe(output, result), file=sys.stderr)
    return 1 if failures else 0

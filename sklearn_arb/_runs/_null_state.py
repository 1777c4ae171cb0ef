"""Null state files: a pooled null fitted by ``fit-null``, merged by
``merge-null``, read by ``regularize --null-state``.

A state file is a plain ``.npz`` of arrays and scalars, read with
``allow_pickle=False``: the pooled null's mergeable state
(:meth:`~sklearn_arb.stats._pooled_null.PooledNull.to_arrays`: count, moments,
histogram, sorted null while kept), the map layout and the scale of z, the
settings that made the maps (which a run that uses the null must share), and
what images it holds: per part, a digest of the run's image list, its shard and
how many of its images are done, so that an interrupted ``fit-null`` resumes and
``merge-null`` refuses the same images twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from .._layout import MapLayout
from .._regularizer import BootstrapAttentionRegularizer
from ..stats import PooledNull
from ._errors import RunError, first_line
from ._settings import RunSettings
from ._store import write_atomic

FORMAT = "sklearn-arb pooled null state 1"
_ZIP_MAGIC = b"PK\x03\x04"  # how every .npz file begins


def inputs_digest(keys: list[Path]) -> str:
    """Of a run's image list before sharding (its result keys, in order)."""
    return xxhash.xxh3_128_hexdigest("\n".join(k.as_posix() for k in keys).encode())


@dataclass
class Part:
    """Images a state holds: shard ``K/N`` of the run whose list has ``inputs``."""

    inputs: str
    shard: tuple[int, int]
    n_images: int  # images of the shard
    done: int  # of them read into the null (or skipped as unreadable)
    failures: int  # unreadable, so not in the null
    # The unreadable images: (place in the run's image list, result key), so a
    # rerun tries them again, and knows the list without them for the same run.
    left_out: list[tuple[int, str]] = field(default_factory=list)

    def name(self) -> str:
        return f"shard {self.shard[0]}/{self.shard[1]} of image list {self.inputs[:8]}"


@dataclass
class NullState:
    """A fitted pooled null, its settings and the images it holds."""

    regularizer: BootstrapAttentionRegularizer
    settings: dict[str, str]
    parts: list[Part] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(part.done == part.n_images for part in self.parts)


def fitted_regularizer(
    pooled: PooledNull, layout: MapLayout, scale: str, max_exact_null: int
) -> BootstrapAttentionRegularizer:
    """A pooled-null regularizer in the state ``fit`` on the null's maps leaves."""
    return BootstrapAttentionRegularizer.from_pooled_null(
        pooled,
        layout,
        scale,
        n_bootstrap=layout.n_bootstrap,
        scale=scale,
        max_exact_null=max_exact_null,
    )


def write_state(path: Path, state: NullState) -> None:
    """Write ``state`` to ``path`` atomically (a hidden file, then a rename)."""
    regularizer = state.regularizer
    arrays: dict[str, Any] = {
        **regularizer.pooled_null_.to_arrays(),
        "format": np.asarray(FORMAT),
        "settings": np.asarray(json.dumps(state.settings, sort_keys=True)),
        "n_tokens": np.int64(regularizer.n_tokens_),
        "n_bootstrap": np.int64(regularizer.n_bootstrap_),
        "scale": np.asarray(regularizer.scale_),
        "max_exact_null": np.int64(regularizer.max_exact_null),
        "part_inputs": np.asarray([part.inputs for part in state.parts]),
        "part_counts": np.asarray(
            [
                [*part.shard, part.n_images, part.done, part.failures]
                for part in state.parts
            ],
            dtype=np.int64,
        ).reshape(-1, 5),
        "left_out_part": np.asarray(
            [i for i, part in enumerate(state.parts) for _ in part.left_out],
            dtype=np.int64,
        ),
        "left_out_index": np.asarray(
            [index for part in state.parts for index, _ in part.left_out],
            dtype=np.int64,
        ),
        "left_out_key": np.asarray(
            [key for part in state.parts for _, key in part.left_out], dtype=str
        ),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda file: np.savez_compressed(file, **arrays))


def read_state(path: Path) -> NullState:
    """The state in ``path``; a one-line RunError where it is not one."""
    not_a_state = (
        f"{path} is not a null state of sklearn-arb fit-null ({{why}}); make it "
        "with sklearn-arb fit-null (or merge-null)"
    )
    try:
        with open(path, "rb") as file:
            if file.read(4) != _ZIP_MAGIC:  # else numpy tries it as a pickle
                raise RunError(not_a_state.format(why="it is not an .npz archive"))
        with np.load(path, allow_pickle=False) as stored:
            arrays = dict(stored)
    except RunError:
        raise
    except ValueError:  # numpy's "pickled (object) data" message
        raise RunError(
            not_a_state.format(why="it holds pickled objects, never loaded")
        ) from None
    except Exception as exc:  # unreadable, truncated, not an .npz
        raise RunError(not_a_state.format(why=first_line(exc))) from None
    try:
        if str(arrays["format"]) != FORMAT:
            raise ValueError(f"its format is {str(arrays['format'])!r}")
        layout = MapLayout(int(arrays["n_tokens"]), int(arrays["n_bootstrap"]))
        scale = str(arrays["scale"])
        if scale not in ("log", "linear"):
            raise ValueError(f"unknown scale {scale!r}")
        regularizer = fitted_regularizer(
            PooledNull.from_arrays(arrays),
            layout,
            scale,
            int(arrays["max_exact_null"]),
        )
        settings = json.loads(str(arrays["settings"]))
        counts = arrays["part_counts"].reshape(-1, 5).tolist()
        parts = [
            Part(str(inputs), (k, n), n_images, done, failures)
            for inputs, (k, n, n_images, done, failures) in zip(
                arrays["part_inputs"], counts, strict=True
            )
        ]
        for i, index, key in zip(
            arrays.get("left_out_part", ()),
            arrays.get("left_out_index", ()),
            arrays.get("left_out_key", ()),
            strict=True,
        ):
            parts[int(i)].left_out.append((int(index), str(key)))
    except KeyError as exc:
        raise RunError(not_a_state.format(why=f"no {exc} in it")) from None
    except (ValueError, TypeError, IndexError) as exc:  # inconsistent
        raise RunError(not_a_state.format(why=first_line(exc))) from None
    return NullState(regularizer, settings, parts)


def mismatch(theirs: dict[str, str], ours: dict[str, str]) -> str | None:
    """The settings that differ, as ``--option THEIRS vs OURS``; None if none."""
    differences = []
    for key in sorted(set(theirs) | set(ours)):
        if theirs.get(key) != ours.get(key):
            option = "--" + key.replace("_", "-")
            if key == "weights":
                option = "--weights (other weights: content digests differ)"
            elif key == "scale":
                option = "the scale of z"
            differences.append(f"{option} {theirs.get(key)} vs {ours.get(key)}")
    return "; ".join(differences) or None


def read_matching_state(path: Path, settings: RunSettings) -> NullState:
    """The complete state in ``path`` whose settings are this run's; a one-line
    RunError naming the mismatch otherwise."""
    state = read_state(path)
    if state.regularizer.null_count_ == 0:
        raise RunError(
            f"--null-state {path} holds no null value (no image of its run was "
            "read); fit it on images"
        )
    if not state.complete:
        done = sum(part.done for part in state.parts)
        total = sum(part.n_images for part in state.parts)
        raise RunError(
            f"--null-state {path} is unfinished ({done} of {total} images); rerun "
            "the fit-null command that writes it to finish it"
        )
    different = mismatch(state.settings, settings.null_settings())
    if different is not None:
        raise RunError(
            f"--null-state {path} was fitted with other settings than this run's "
            f"({different}); fit the null with this run's options"
        )
    return state

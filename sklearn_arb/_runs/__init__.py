"""The run engine under both front ends (the ``sklearn-arb`` command and
:mod:`sklearn_arb.ray`): inputs and the one folder walk, the output store
(claims, atomic writes, the summary, digests), per-batch compute, reading
ahead, and the pooled null's state files.

It takes typed settings (:class:`RunSettings`) and, where one is given, a
fitted extractor; it never sees a command line. A bad setting or input is a
:class:`RunError` of one line.

Every result is written as soon as it is done, atomically (a hidden file, then
a rename), so an interrupted run loses nothing; a rerun computes only what is
missing or changed.
"""

from ..backbone import file_digest
from ._compute import display_copy, read_model_input, regularize_batch
from ._decode import decode_batch
from ._errors import RunError, first_line
from ._inputs import Input, file_inputs, in_shard, shard_of
from ._loader import IMAGE_ERRORS, default_loader_threads, read_ahead
from ._model import build_extractor
from ._null import fit_null, merge_null
from ._null_state import read_matching_state, read_state
from ._on_ray import RegularizeActor, regularize_on_ray
from ._panels import render_panel, tile_shape
from ._regularize import (
    Run,
    check_output,
    prepare_output,
    regularize_items,
    report,
)
from ._settings import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, MAP_SETTINGS, RunSettings
from ._store import (
    Claim,
    Result,
    output_key,
    read_summary_rows,
    remove_stale_partials,
    write_atomic,
    write_summary,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MODEL",
    "IMAGE_ERRORS",
    "MAP_SETTINGS",
    "Claim",
    "Input",
    "RegularizeActor",
    "Result",
    "Run",
    "RunError",
    "RunSettings",
    "build_extractor",
    "check_output",
    "decode_batch",
    "default_loader_threads",
    "display_copy",
    "file_digest",
    "file_inputs",
    "first_line",
    "fit_null",
    "in_shard",
    "merge_null",
    "output_key",
    "prepare_output",
    "read_ahead",
    "read_matching_state",
    "read_model_input",
    "read_state",
    "read_summary_rows",
    "regularize_batch",
    "regularize_items",
    "regularize_on_ray",
    "remove_stale_partials",
    "render_panel",
    "report",
    "shard_of",
    "tile_shape",
    "write_atomic",
    "write_summary",
]

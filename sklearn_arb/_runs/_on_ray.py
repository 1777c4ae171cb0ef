"""The Ray engine: a run's inputs on a pool of Ray actors, each loading the
model once and running its batches as the local engine does (:class:`Run`),
its results in the same output folder (a rerun with either engine skips what
the other wrote). Ray is imported when a run starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import RunError, first_line
from ._inputs import Input
from ._model import build_extractor
from ._regularize import Run, check_output, prepare_output, report
from ._settings import RunSettings
from ._store import read_summary_rows, write_summary


class _Messages:
    """What a run prints per image (a tqdm stand-in), kept to be returned."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str, file: Any = None) -> None:
        self.lines.append(line)

    def update(self, n: int = 1) -> None:
        pass


class RegularizeActor:
    """``map_batches`` callable of :func:`regularize_on_ray`: the run engine's
    batches (read, compute, write ``.npz`` and panel, each image under its
    claim), with the model loaded once per actor."""

    def __init__(self, settings: RunSettings, cwd: str) -> None:
        # In the driver's folder where this node has it, so that an image is
        # named as the driver names it; else images are read by absolute path.
        self.relative = os.path.isdir(cwd)
        if self.relative:
            os.chdir(cwd)
        self.extractor = build_extractor(settings)
        self.messages = _Messages()
        self.run = Run(settings, self.messages, self.extractor)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = batch["path"] if self.relative else batch["absolute_path"]
        items = [
            Input(source=str(source), key=Path(str(key)), image=Path(str(path)))
            for source, key, path in zip(
                batch["source"], batch["key"], paths, strict=True
            )
        ]
        before = self._counts()
        self.messages.lines = []
        self.run.process(items, self.extractor)
        counts = [now - then for now, then in zip(self._counts(), before, strict=True)]
        return {
            "messages": np.array([json.dumps(self.messages.lines)], dtype=object),
            "counts": np.array([counts]),
        }

    def _counts(self) -> list[int]:
        return [self.run.failures, self.run.done_before, self.run.busy]


@contextlib.contextmanager
def _stderr_silenced() -> Any:
    """File descriptor 2 sent to the null device: the log lines of Ray (its
    Python loggers', and its C++ core's, written to the descriptor directly)
    are kept off the terminal; Ray's log files still have them."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def regularize_on_ray(items: Sequence[Input], settings: RunSettings) -> int:
    """``items`` regularized on Ray actors, each loading the model once: what
    ``sklearn-arb regularize --engine ray`` and
    :func:`sklearn_arb.ray.regularize_files` run; the exit status (0, or 1 when
    some images failed). The files are the local engine's (the maps to float32
    rounding: an actor runs torch on its own threads)."""
    try:
        import ray
    except ImportError:  # the command's one-line error, not a traceback
        raise RunError(
            "--engine ray needs Ray Data: pip install 'sklearn-arb[ray]'"
        ) from None
    # Absolute, for actors in other folders.
    settings = replace(
        settings,
        output=Path(os.path.abspath(settings.output)),
        weights=None
        if settings.weights is None
        else Path(os.path.abspath(settings.weights)),
    )
    check_output(settings)
    build_extractor(settings)  # a bad model or weights: one line, before Ray starts
    prepare_output(settings)
    # --quiet: Ray's own lines silenced, the run's said once Ray is done.
    lines: list[str] = []
    with _stderr_silenced() if settings.quiet else contextlib.nullcontext():
        status = _run_on_ray(
            ray, items, settings, lines.append if settings.quiet else _say
        )
    for line in lines:
        _say(line)
    return status


def _run_on_ray(
    ray: Any, items: Sequence[Input], settings: RunSettings, say: Any
) -> int:
    """The body of :func:`regularize_on_ray`: what it prints goes to ``say``."""
    started = not ray.is_initialized()
    if started:
        ray.init(address=settings.address, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not settings.quiet
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
    gpus = settings.gpus_per_worker
    try:
        if rows:
            results = ray.data.from_items(rows).map_batches(
                RegularizeActor,
                fn_constructor_args=(settings, os.getcwd()),
                batch_size=settings.images_per_batch,
                compute=ray.data.ActorPoolStrategy(size=settings.workers),
                batch_format="numpy",
                **({"num_gpus": gpus} if gpus else {}),
            )
            for row in results.iter_rows():
                for line in json.loads(row["messages"]):
                    say(line)
                failures += int(row["counts"][0])
                done_before += int(row["counts"][1])
                busy += int(row["counts"][2])
    except Exception as exc:  # a worker died: what it finished is on disk
        say(
            f"a Ray worker failed ({first_line(exc)}); finished images are saved, "
            "rerun to continue"
        )
        return 1
    finally:
        write_summary(settings.output, read_summary_rows(settings.output))
        if started:
            ray.shutdown()
    for line in report(settings, done_before, busy):
        say(line)
    return 1 if failures else 0

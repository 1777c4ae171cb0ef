"""A ``regularize`` run: images in, maps, panels and a table out.

Images run through the model a batch at a time; each image's ``.npz`` is written as
soon as its batch is done, and its panel is drawn in a background thread. What is
done, claimed by another process or left half-written is decided in
:mod:`._store`. The local engine reads the next batch while the model computes
this one; the Ray engine hands each actor batches of inputs, which it runs
through :meth:`Run.process`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import xxhash

from . import _compute
from ._errors import RunError, first_line
from ._inputs import Input
from ._loader import default_loader_threads, read_ahead
from ._model import build_extractor
from ._null_state import read_matching_state
from ._panels import PanelWriter
from ._settings import RunSettings
from ._store import Result, read_summary_rows, remove_stale_partials, write_summary

_SUMMARY_EVERY_S = 5.0  # summary.csv is rewritten at most this often during a run


class Run:
    """One ``regularize`` run: its counters, summary rows and background panels.

    ``progress`` is a tqdm bar, or anything with its ``write`` and ``update``.
    """

    def __init__(self, settings: RunSettings, progress: Any, extractor: Any) -> None:
        self.settings = settings
        self.output = settings.output
        self.dpi = settings.dpi if settings.plots else None
        self.batch_size = settings.images_per_batch
        self.result_settings = settings.result_settings()
        self.rows = read_summary_rows(self.output)
        self.panels = PanelWriter() if settings.plots else None
        self.pooled = None
        null_state = settings.null_state
        if null_state is not None:
            self.pooled = read_matching_state(null_state, settings).regularizer
            if self.pooled.n_tokens_ != extractor.n_tokens_:
                raise RunError(
                    f"--null-state {null_state} holds a null of maps of "
                    f"{self.pooled.n_tokens_} tokens, but this run's maps have "
                    f"{extractor.n_tokens_}; fit the null with this run's options"
                )
        self.progress = progress
        self.failures = 0
        self.done_before = 0
        self.busy = 0  # claimed by another process
        self._summary_written = time.monotonic()

    def digest(self, item: Input) -> str:
        """The digest a result must record to be done: content and settings."""
        combined = xxhash.xxh3_128(item.digest().encode())
        combined.update(self.result_settings.encode())
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

    def claimed_batches(self, items: Sequence[Input]) -> Any:
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
            job = _compute.panel_job(result, display, arrays, self.dpi)
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

    def process(self, items: Sequence[Input], extractor: Any) -> None:
        """Claim, read, compute and write ``items`` in this thread, panels
        included (a Ray actor's share); the counters count them."""
        claimed: list = []
        try:
            for claimed in self.claimed_batches(items):
                for _, reads in read_ahead([claimed], self.reader(extractor), 0):
                    self.finish_batch(claimed, reads, extractor)
        finally:
            self.finish_panels()
            if self.panels is not None:  # closed: a fresh writer for what follows
                self.panels = PanelWriter()
            for _, result, _, _ in claimed:
                result.claim.release()

    def reader(self, extractor: Any) -> Callable[[tuple], Any]:
        """What reads one claimed image (in a loader thread): the panel's copy
        of one that needs only its panel, else the model's and the panel's."""
        in_range = self.settings.in_range

        def read(entry: tuple) -> Any:
            item, result, digest, need = entry
            if need == "panel":
                return _compute.display_copy(item.image, self.dpi, in_range)
            return _compute.load(item, result, digest, extractor, self.dpi, in_range)

        return read

    def finish_batch(self, batch: list, reads: list, extractor: Any) -> None:
        """Compute and write one claimed batch whose images are read."""
        loaded = []
        for (item, result, digest, need), (value, error) in zip(
            batch, reads, strict=True
        ):
            if error is not None:
                if need == "compute":  # other bytes than its results were made from
                    self.drop(result)
                else:
                    result.claim.release()
                self.skip(item.source, error)
            elif need == "panel":
                self.finish(result, result.stored(digest), value)
            else:
                loaded.append(value)
        if loaded:
            outputs = _compute.regularize_batch(
                loaded, extractor, self.settings, self.result_settings, self.pooled
            )
            for done, (row, arrays) in zip(loaded, outputs, strict=True):
                done.result.write(arrays)
                self.add_row(done.result, row)
                self.finish(done.result, arrays, done.display)


def check_output(settings: RunSettings) -> None:
    """A RunError where the output folder is a file."""
    output = settings.output
    if output.exists() and not output.is_dir():
        raise RunError(
            f"--output {output} is a file; pass a folder (it is created if missing)"
        )


def prepare_output(settings: RunSettings) -> None:
    """The output folder made, what an interrupted run left half-written removed
    (and said)."""
    output = settings.output
    output.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_partials(output)
    if removed:
        print(
            f"removed {removed} partial file(s) of an interrupted run", file=sys.stderr
        )


def report(settings: RunSettings, done_before: int, busy: int) -> list[str]:
    """A run's closing lines: what it passed over, where its results are."""
    lines = []
    if done_before:
        lines.append(
            f"{done_before} image(s) already done in {settings.output}, skipped"
        )
    if busy:
        lines.append(f"{busy} image(s) being computed by another process, skipped")
    per_image = "one .npz and .png" if settings.plots else "one .npz"
    lines.append(f"results in {settings.output} (summary.csv, {per_image} per image)")
    return lines


def regularize_items(
    items: Sequence[Input], settings: RunSettings, extractor: Any = None
) -> int:
    """Regularize ``items`` into ``settings.output`` in this process, the next
    batch read while the model computes this one; the exit status (0, or 1
    when some images failed). ``extractor``: fitted, or None to build it from
    ``settings``."""
    from tqdm import tqdm

    check_output(settings)
    if extractor is None:
        extractor = build_extractor(settings)
    prepare_output(settings)
    progress = tqdm(
        total=len(items),
        desc="images",
        unit="image",
        disable=settings.quiet,
        file=sys.stderr,
    )
    try:
        run = Run(settings, progress, extractor)
    except BaseException:
        progress.close()
        raise
    taken: list[list] = []  # claimed batches: the one computed, the one read ahead

    def claimed() -> Any:
        for batch in run.claimed_batches(items):
            taken.append(batch)
            yield batch

    threads = settings.loader_threads
    batches = read_ahead(
        claimed(),
        run.reader(extractor),
        default_loader_threads() if threads is None else threads,
    )
    try:
        for batch, reads in batches:
            run.finish_batch(batch, reads, extractor)
            taken.pop(0)
    finally:
        batches.close()  # waits for the reads running
        progress.close()
        run.finish_panels()
        # Interrupted: the claims of the images not finished.
        for batch in taken:
            for _, result, _, _ in batch:
                result.claim.release()
        write_summary(settings.output, read_summary_rows(settings.output))
    for line in report(settings, run.done_before, run.busy):
        print(line, file=sys.stderr)
    return 1 if run.failures else 0

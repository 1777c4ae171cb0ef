"""The settings of a run, typed: what both front ends (the command line, Ray)
hand the engine, and what a run records of them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..backbone import MapSource, file_digest, source_of, weights_file_digest

DEFAULT_MODEL = "deit_tiny_patch16_224"
# Images per batch: each call of the model pays a fixed cost (its streams fill and
# drain), which 16-image batches made a quarter of the run on a CPU; an
# interruption loses at most one batch.
DEFAULT_BATCH_SIZE = 64
# The settings that change the maps, so a null fitted on them: a run using the
# null must share them.
MAP_SETTINGS = (
    "model",
    "image_size",
    "bootstrap",
    "n_bootstrap",
    "bootstrap_width",
    "source",
    "head",
    "layer",
    "target",
    "discard_ratio",
    "in_range",
)
# The settings that change a result besides the maps'.
_RESULT_SETTINGS = (
    "pretrained",
    "methods",
    "pvalue",
    "pi0_pvalues",
    "alpha",
    "gamma",
    "z_threshold",
    "seed",
)


@dataclass(frozen=True)
class RunSettings:
    """Everything a run of ``regularize``, ``fit-null`` or ``merge-null`` is
    told, with the command's defaults.

    The model and its weights, the map source, the bootstrap, the
    regularization, the panels, the output and how the work is spread; each
    field is the command-line option of the same name (``--image-size`` is
    ``image_size``). ``batch_size`` is the images read, run through the
    model and regularized together (None: :data:`DEFAULT_BATCH_SIZE`).

    Examples
    --------
    >>> from sklearn_arb._runs import RunSettings
    >>> settings = RunSettings(weights="deit.pth", methods=["p"], alpha=0.1)
    >>> settings.output, settings.n_bootstrap, settings.z_scale
    (PosixPath('arb_output'), 1, 'log')
    """

    output: Path = Path("arb_output")
    # The model.
    model: str = DEFAULT_MODEL
    weights: Path | None = None
    pretrained: bool = False
    image_size: int = 224
    device: str = "auto"
    batch_size: int | None = None
    # Reading images.
    in_range: str = "dtype"
    loader_threads: int | None = None
    # The map source.
    source: str = "attention"
    head: str | int = "mean"
    layer: int = -1
    target: str | int = "predicted"
    discard_ratio: float = 0.0
    # The bootstrap.
    bootstrap: str = "normal"
    n_bootstrap: int = 1
    bootstrap_width: float = 1.0
    seed: int = 0
    # The regularization.
    methods: list[str] = field(default_factory=lambda: ["p", "lfdr", "pi0"])
    pvalue: str = "one-sided"
    pi0_pvalues: str = "two-sided"
    alpha: float | str = 0.05
    gamma: float | str = 0.2
    z_threshold: float | str = 0.0
    null_state: Path | None = None
    max_exact_null: int = 4_194_304
    # Panels.
    plots: bool = True
    dpi: int = 100
    # Many images.
    shard: tuple[int, int] | None = None
    workers: int = 1
    address: str | None = None
    gpus_per_worker: float = 0.0
    quiet: bool = False

    def __post_init__(self) -> None:
        for name in ("output", "weights", "null_state"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def images_per_batch(self) -> int:
        return self.batch_size or DEFAULT_BATCH_SIZE

    @property
    def map_source(self) -> MapSource:
        """The map source with its settings."""
        return source_of(self)

    @property
    def z_scale(self) -> str:
        """The scale of z: on the scores themselves for signed maps (CDAM)."""
        return self.map_source.z_scale

    @property
    def source_label(self) -> str:
        """The map source as a panel title says it: source, head (or CDAM's
        class) and layer, e.g. ``rollout, max, L-1``."""
        return self.map_source.label

    def method_label(self, method: str) -> str:
        """A regularized map's title: its rule and threshold."""
        return {
            "z": f"z > {self.z_threshold}",
            "p": f"p \N{LESS-THAN OR EQUAL TO} {self.alpha}",
            "lfdr": f"lfdr \N{LESS-THAN OR EQUAL TO} {self.gamma}",
            "pi0": "pi0 (auto)",
        }[method]

    def result_settings(self) -> str:
        """The settings that change the results, as JSON (stored with each
        result; a result of other settings is computed again)."""
        settings = {
            key: str(getattr(self, key)) for key in (*MAP_SETTINGS, *_RESULT_SETTINGS)
        }
        if self.null_state is not None:
            settings["null_state"] = file_digest(self.null_state)
        if self.weights is not None:
            # Its content: a file touched is the same weights, one overwritten
            # in place other weights.
            settings["weights"] = weights_file_digest(self.weights)
        return json.dumps(settings, sort_keys=True)

    def null_settings(self) -> dict[str, str]:
        """The settings a null and the run that uses it must share: the model's
        and source's options, the weights' content digest and the scale of z."""
        settings = {key: str(getattr(self, key)) for key in MAP_SETTINGS}
        weights = self.weights
        settings["weights"] = "hub" if weights is None else weights_file_digest(weights)
        settings["scale"] = self.z_scale
        return settings

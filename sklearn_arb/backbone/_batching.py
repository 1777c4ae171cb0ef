"""Images to token maps (of any source), a forward batch at a time.

Each image and its B bootstrap samples are ``1 + B`` forward images; they are cut
into forward batches sized to the device, and the maps come back a chunk of
images at a time, in order, so a caller can store each chunk before the next one
runs. On CPU the batches run as parallel single-threaded streams, one per core
(see ``_streams.py``), while the calling thread draws the next bootstrap
samples: each image's maps are computed alike whatever the other images of its
batch, the number of threads or their timing, so they are bit-identical from
one run to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ._sources import AttentionSource, MapSource
from ._streams import ordered_map, torch_threads

__all__ = ["PRECISIONS", "ForwardPass", "default_batch_size"]

PRECISIONS = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
# Activation memory per token and embedding dimension for one image, in bytes:
# about 20 float32 buffers of (N, D) alive at once in a block (qkv, MLP hidden).
_BYTES_PER_TOKEN_DIM = 80
# On CPU, batches whose activations stay near the cache run fastest: measured on
# 2 cores (4 MiB L2), DeiT-Tiny at 448 px takes 53 ms/image in batches of 2-8 and
# 70 ms/image in batches of 16-48; ViT-S/8 at 488 px is fastest one image at a time.
_CPU_BATCH_BYTES = 32 << 20


def default_batch_size(n_tokens: int, embed_dim: int, device: torch.device) -> int:
    """Forward images per batch: ~32 MiB of activations on CPU, half the free
    memory on GPU, between 1 and 256.

    Examples
    --------
    >>> import torch
    >>> from sklearn_arb.backbone._batching import default_batch_size
    >>> default_batch_size(197, 192, torch.device("cpu"))
    11
    """
    per_image = n_tokens * embed_dim * _BYTES_PER_TOKEN_DIM
    if device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] // 2
    else:
        budget = _CPU_BATCH_BYTES
    return int(np.clip(budget // per_image, 1, 256))


def _chunks(n_images: int, n_samples: int, batch_size: int) -> list[slice]:
    """Consecutive images whose ``n_samples`` forward images each fill a batch."""
    per_chunk = max(1, batch_size // n_samples)
    return [
        slice(start, min(start + per_chunk, n_images))
        for start in range(0, n_images, per_chunk)
    ]


@dataclass(frozen=True)
class ForwardPass:
    """How normalised images and their bootstrap samples run through a ViT.

    Parameters
    ----------
    model : torch.nn.Module
        A loaded backbone (see :func:`~sklearn_arb.backbone.load_vit`), in eval
        mode, on ``device``.
    device : torch.device
        Where the images are normalised, sampled and run.
    mean, std : tuple of float
        The model's per-channel normalisation.
    n_bootstrap : int
        B, bootstrap samples per image.
    draw_samples : callable
        ``draw_samples(observed, seeds=seeds)``: the ``(n, B, C, H, W)`` samples of the
        normalised ``(n, C, H, W)`` images (unused when B is 0).
    batch_size : int
        Forward images per batch.
    source : MapSource, default=AttentionSource()
        The map computed, with its settings (a source that needs classes gives
        each image's bootstrap samples the image's class).
    precision : {"float32", "bfloat16", "float16"}
        The autocast type of the blocks (float32: no autocast).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._batching import ForwardPass
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2).eval()
    >>> forward = ForwardPass(vit, torch.device("cpu"), (0.5,) * 3, (0.5,) * 3,
    ...                       n_bootstrap=0, draw_samples=None, batch_size=2)
    >>> images = np.zeros((3, 32, 32, 3), dtype=np.float32)
    >>> [(chunk.start, maps.shape) for chunk, maps in forward.iter_maps(images, [])]
    [(0, (2, 16)), (2, (1, 16))]
    """

    model: nn.Module
    device: torch.device
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_bootstrap: int
    draw_samples: Callable[[torch.Tensor, np.ndarray], torch.Tensor] | None
    batch_size: int
    source: MapSource = field(default_factory=AttentionSource)
    precision: str = "float32"

    def iter_maps(
        self, images: np.ndarray, seeds: np.ndarray, classes: Any = None
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """The float64 maps ``(n, (1 + B) * P)`` of ``(n, H, W, 3)`` float32
        images, a chunk at a time: ``(chunk, maps of images[chunk])``, in order.
        ``seeds`` holds one bootstrap seed per image; ``classes`` (CDAM) one
        target class per image, or None for the source's own target."""
        n_samples = 1 + self.n_bootstrap
        batch_size = self.batch_size
        on_cpu = self.device.type == "cpu"
        if on_cpu:
            # Every forward batch runs on one torch thread, one batch per core:
            # an image's maps do not depend on the other images of its batch,
            # on how many threads there are or on their timing. Batches small
            # enough to go round keep every core busy.
            n_threads = torch.get_num_threads()
            batch_size = min(batch_size, -(-len(images) * n_samples // n_threads))
            batch_size = max(1, batch_size)
        chunks = _chunks(len(images), n_samples, batch_size)
        n_batches = [
            -(-(chunk.stop - chunk.start) * n_samples // batch_size) for chunk in chunks
        ]
        batches = self._forward_batches(images, seeds, classes, chunks, batch_size)
        if on_cpu:
            n_streams = max(1, min(n_threads, sum(n_batches)))
            results = ordered_map(self._batch_maps, batches, n_streams)
        else:
            results = (self._batch_maps(batch) for batch in batches)
        with closing(results):
            for chunk, n_chunk_batches in zip(chunks, n_batches, strict=True):
                maps = torch.cat([next(results) for _ in range(n_chunk_batches)])
                maps = maps.reshape(chunk.stop - chunk.start, -1).double().cpu().numpy()
                if not np.isfinite(maps).all():
                    raise ValueError(
                        "The model produced non-finite attention (overflow); use "
                        "precision='float32' or check the checkpoint's weights."
                    )
                yield chunk, maps

    def _forward_batches(
        self,
        images: np.ndarray,
        seeds: np.ndarray,
        classes: Any,
        chunks: list[slice],
        batch_size: int,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Normalised images, each followed by its samples, cut into batches
        of ``batch_size``, with the target class of each (None unless CDAM
        explains a class).

        Drawn in the calling thread, a chunk ahead of the forward passes; on CPU
        on one torch thread, as the streams run (the draws' reductions then
        round alike whatever the thread count).
        """
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        for chunk in chunks:
            on_cpu = self.device.type == "cpu"
            with torch.inference_mode(), torch_threads(1 if on_cpu else None):
                pixels = torch.from_numpy(images[chunk]).to(self.device)
                observed = (pixels.permute(0, 3, 1, 2) - mean) / std
                inputs = observed[:, None]
                if self.n_bootstrap:
                    samples = self.draw_samples(observed, seeds=seeds[chunk])
                    inputs = torch.cat([inputs, samples], dim=1)
                batches = inputs.flatten(0, 1).contiguous().split(batch_size)
                image_classes = self.source.classes(
                    self.model, observed, None if classes is None else classes[chunk]
                )
            if image_classes is None:
                yield from ((batch, None) for batch in batches)
            else:
                # An image's bootstrap samples explain the image's class.
                per_sample = image_classes.repeat_interleave(1 + self.n_bootstrap)
                yield from zip(batches, per_sample.split(batch_size), strict=True)

    def _batch_maps(
        self, batch_and_classes: tuple[torch.Tensor, torch.Tensor | None]
    ) -> torch.Tensor:
        batch, classes = batch_and_classes
        autocast = torch.autocast(
            device_type=self.device.type,
            dtype=PRECISIONS[self.precision],
            enabled=self.precision != "float32",
        )
        with torch.inference_mode(), autocast:
            return self.source.maps(self.model, batch, classes)

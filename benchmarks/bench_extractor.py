"""AttentionExtractor's fast path against the plain full-attention baseline.

Measures seconds per forward image of two ways to compute the same CLS attention
maps, side by side in one process, on the same images (read and resized once)
and the same forward inputs (each normalised image and its bootstrap sample):

- fast path: ``AttentionExtractor.transform`` (fused attention kernels, in-place
  CPU blocks, the read block's CLS row alone in O(N), observed and bootstrap
  images batched together, parallel single-threaded streams on CPU);
- baseline: ``reference_cls_attention`` one image at a time (explicit N x N
  attention in every block, as DINO's ``get_last_selfattention``).

Fast path, baseline and a large float32 ``torch.mm`` (this machine's sgemm
throughput) run interleaved in every round; the script prints their medians, the
speed-up, the largest map difference, and the fast path's FLOPs per second as a
share of sgemm. Models: DeiT-Tiny/16 at 448 px (the shared weights if present)
and ViT-S/8 at 488 px (random weights).

``--only hf`` times the same DeiT-Tiny weights as a timm model and as a
Hugging Face ``transformers`` ViTModel (converted, saved with
``save_pretrained`` and loaded from that folder), both through
``AttentionExtractor.transform``, interleaved in every round; it prints both
medians, their ratio and the largest map difference (needs the ``hf`` extra);
``--panel PATH`` also draws the observed maps of the first images through both
side by side (the Models page's figure).

Run: ``python benchmarks/bench_extractor.py [--repeats 3] [--images 4]
[--threads N] [--batch-size N] [--device auto] [--only deit|vits8|hf]
[--panel doc/images/models_timm_vs_transformers.png]``, with
``SKLEARN_ARB_DATA`` pointing to the shared data folder (default
``../shared/data``; without it, random weights on random images).

Results: the "Extractor speed" table of the Benchmarks page (doc/benchmarks.rst);
timm against transformers: the Models page (doc/models.rst).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from sklearn_arb import AttentionExtractor, load_images
from sklearn_arb.backbone import draw_bootstrap, reference_cls_attention
from sklearn_arb.backbone._bootstrap import image_seeds
from sklearn_arb.backbone._cache import array_digests

DATA_DIR = Path(
    os.environ.get(
        "SKLEARN_ARB_DATA",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    )
)


def sgemm_flops_per_s(size: int = 2048, repeats: int = 3) -> float:
    """Median float32 matrix-multiply throughput of this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def fast_path_flops(vit: torch.nn.Module, n_patches: int) -> float:
    """Matrix-multiply FLOPs of one image through the fast path (last block read)."""
    dim, depth = vit.embed_dim, len(vit.blocks)
    hidden = vit.blocks[0].mlp.fc1.out_features
    n_tokens = n_patches + vit.num_prefix_tokens
    patch = vit.patch_embed.patch_size[0]
    embed = 2 * n_patches * 3 * patch**2 * dim
    block = (
        2 * n_tokens * dim * 3 * dim  # qkv
        + 2 * 2 * n_tokens**2 * dim  # q k^T and attention @ v
        + 2 * n_tokens * dim * dim  # output projection
        + 2 * 2 * n_tokens * dim * hidden  # MLP
    )
    last = 2 * dim * dim + 2 * n_tokens * dim * dim + 2 * n_tokens * dim
    return embed + (depth - 1) * block + last


def median_time(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def baseline_inputs(extractor, images):
    """The extractor's forward inputs: each normalised image, then its bootstraps."""
    loaded = torch.from_numpy(images)
    mean = torch.tensor(extractor.mean_).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std_).view(1, 3, 1, 1)
    observed = ((loaded.permute(0, 3, 1, 2) - mean) / std).to(extractor.device_)
    seeds = image_seeds(array_digests(loaded.numpy()), extractor.random_state)
    samples = draw_bootstrap(
        observed,
        extractor.n_bootstrap,
        extractor.bootstrap,
        seeds,
        patch_size=extractor.patch_size_,
    )
    return torch.cat([observed[:, None], samples], dim=1).flatten(0, 1)


def bench(label, extractor, images, repeats):
    # Both paths start from the same images, read and resized once; the fast path
    # still normalises them and draws their bootstrap samples in every call.
    images = load_images(images, extractor.fit().image_size_)
    n_forward = len(images) * (1 + extractor.n_bootstrap)
    flops = fast_path_flops(extractor.model_, extractor.n_tokens_)
    inputs = baseline_inputs(extractor, images)

    def fast():
        return extractor.transform(images)

    def baseline():
        with torch.inference_mode():
            maps = [reference_cls_attention(extractor.model_, x[None]) for x in inputs]
        return torch.cat(maps).cpu()  # .cpu() waits for a GPU to finish

    fast_maps = fast()  # warm-up, and the maps to compare
    base_maps = baseline().reshape(len(images), -1).double().numpy()
    # Fast path, baseline and sgemm run interleaved, so contention from other
    # processes on a shared CPU hits all three alike; ratios and shares are taken
    # per round, then the median over rounds.
    fast_times, base_times, ratios, shares, sgemms = [], [], [], [], []
    for _ in range(repeats):
        sgemms.append(sgemm_flops_per_s())
        fast_times.append(median_time(fast, 1) / n_forward)
        shares.append(flops / fast_times[-1] / sgemms[-1])
        base_times.append(median_time(baseline, 1) / n_forward)
        ratios.append(base_times[-1] / fast_times[-1])
    fast_s, base_s = statistics.median(fast_times), statistics.median(base_times)
    print(
        f"{label}: fast {fast_s:.3f} s/image, baseline {base_s:.3f} s/image "
        f"(medians of {repeats}), speed-up {statistics.median(ratios):.2f}x "
        f"(per-round {', '.join(f'{r:.2f}' for r in ratios)}), max |map diff| "
        f"{np.abs(fast_maps - base_maps).max():.1e}; fast path "
        f"{flops / 1e9:.1f} GFLOP/image = {flops / fast_s / 1e9:.1f} GFLOP/s = "
        f"{100 * statistics.median(shares):.0f}% of sgemm (per-round "
        f"{', '.join(f'{100 * s:.0f}' for s in shares)}; sgemm "
        f"{statistics.median(sgemms) / 1e9:.0f} GFLOP/s) (batch "
        f"{extractor._forward_pass().batch_size}, {n_forward} forward images, "
        f"load average "
        f"{os.getloadavg()[0]:.1f})"
    )
    if extractor.device_.type == "cuda":
        print(f"{label}: {1 / fast_s:.1f} images/s on {torch.cuda.get_device_name()}")


def transformers_deit_folder(weights: Path, folder: Path) -> Path:
    """The DeiT-Tiny weights as a transformers ViTModel folder, with its image
    processor (ImageNet normalisation, as timm's DeiT)."""
    import transformers

    from sklearn_arb.backbone import load_checkpoint
    from sklearn_arb.backbone._hf import timm_vit_to_transformers

    config = transformers.ViTConfig(
        hidden_size=192,
        num_hidden_layers=12,
        num_attention_heads=3,
        intermediate_size=768,
        image_size=224,
        patch_size=16,
        layer_norm_eps=1e-6,
        qkv_bias=True,
    )
    model = transformers.ViTModel(config, add_pooling_layer=False)
    model.load_state_dict(timm_vit_to_transformers(load_checkpoint(weights), 12))
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    ).save_pretrained(folder)
    return folder


def draw_panel(images, maps, grid_shape, path) -> None:
    """Observed maps through timm and transformers side by side, per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklearn_arb.plotting import plot_attention_overlay

    n_tokens = grid_shape[0] * grid_shape[1]
    fig, axes = plt.subplots(len(images), 3, figsize=(7.5, 2.6 * len(images)))
    for row, image in enumerate(images):
        timm_map = maps["timm"][row, :n_tokens]
        hf_map = maps["transformers"][row, :n_tokens]
        vmax = timm_map.max()
        for ax, values, title in (
            (axes[row, 0], timm_map, "timm"),
            (axes[row, 1], hf_map, "transformers"),
        ):
            plot_attention_overlay(
                image, values, grid_shape=grid_shape, ax=ax, vmax=vmax, title=title
            )
        difference = np.abs(timm_map - hf_map)
        plot_attention_overlay(
            image,
            difference,
            grid_shape=grid_shape,
            ax=axes[row, 2],
            vmax=vmax,
            hide_zeros=False,
            title=f"|difference| (max {difference.max():.0e})",
        )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def bench_transformers(weights, images, image_size, common, repeats, panel=None):
    """timm and transformers extractors on the same weights, interleaved."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = transformers_deit_folder(weights, Path(tmp))
        extractors = {
            "timm": AttentionExtractor(
                "deit_tiny_patch16_224",
                checkpoint_path=weights,
                image_size=image_size,
                **common,
            ).fit(),
            "transformers": AttentionExtractor(
                str(folder), image_size=image_size, **common
            ).fit(),
        }
    loaded = load_images(images, (image_size, image_size))
    n_forward = len(loaded) * (1 + common["n_bootstrap"])
    maps = {name: e.transform(loaded) for name, e in extractors.items()}  # warm-up
    times = {name: [] for name in extractors}
    for _ in range(repeats):
        for name, extractor in extractors.items():
            times[name].append(median_time(partial(extractor.transform, loaded), 1))
    timm_s, hf_s = (statistics.median(times[n]) / n_forward for n in extractors)
    ratios = [h / t for t, h in zip(times["timm"], times["transformers"], strict=True)]
    print(
        f"DeiT-Tiny/16 @{image_size}: timm {timm_s:.3f} s/image, transformers "
        f"{hf_s:.3f} s/image (medians of {repeats}), transformers/timm "
        f"{statistics.median(ratios):.2f}x (per-round "
        f"{', '.join(f'{r:.2f}' for r in ratios)}), max |map diff| "
        f"{np.abs(maps['timm'] - maps['transformers']).max():.1e} ({n_forward} "
        f"forward images, load average {os.getloadavg()[0]:.1f})"
    )
    if panel is not None:
        grid = extractors["timm"].grid_shape_
        draw_panel(loaded[:3], {k: m[:3] for k, m in maps.items()}, grid, panel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", choices=["deit", "vits8", "hf"], default=None)
    parser.add_argument("--panel", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (the CPU "
        f"may be shared: other processes inflate times)."
    )
    weights = DATA_DIR / "weights" / "deit_tiny_patch16_224.pth"
    paths = sorted((DATA_DIR / "imagenette").glob("*/*.JPEG"))[::20][: args.images]
    rng = np.random.default_rng(0)
    images = paths if paths else rng.random((args.images, 224, 224, 3))
    common = dict(
        n_bootstrap=1, random_state=0, device=args.device, batch_size=args.batch_size
    )
    if args.only in (None, "deit"):
        bench(
            "DeiT-Tiny/16 @448",
            AttentionExtractor(
                "deit_tiny_patch16_224",
                checkpoint_path=weights if weights.exists() else None,
                image_size=448,
                **common,
            ),
            images,
            args.repeats,
        )
    if args.only in (None, "hf") and weights.exists():
        for image_size in (224, 448):
            panel = args.panel if image_size == 224 else None
            bench_transformers(weights, images, image_size, common, args.repeats, panel)
    if args.only in (None, "vits8"):
        bench(
            "ViT-S/8 (random) @488",
            AttentionExtractor("vit_small_patch8_224", image_size=488, **common),
            images,
            args.repeats,
        )


if __name__ == "__main__":
    main()

"""Input checks shared by the metric functions."""

import numpy as np


def check_maps(maps, name: str = "maps") -> np.ndarray:
    """``maps`` as a finite float array of shape (n_images, n_values).

    Trailing axes are flattened, so token maps (n, P) and pixel maps (n, H, W)
    are both accepted.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim < 2:
        raise ValueError(
            f"{name} must have one row per image, shape (n_images, n_tokens) or "
            f"(n_images, height, width); got shape {maps.shape}. For one image, "
            f"pass {name}[np.newaxis]."
        )
    if not np.all(np.isfinite(maps)):
        raise ValueError(f"{name} contain NaN or infinite values; clean them first.")
    return maps.reshape(maps.shape[0], -1)


def check_evidence(maps, name: str = "maps") -> np.ndarray:
    """``check_maps``, then the positive part: what the map says for its target.

    Attention and rollout are positive, so this is the map itself. A signed map
    (CDAM) is read by its positive scores; a negative score (evidence against the
    target) counts as 0, like a score regularisation removed, so sums and ranks
    measure evidence for the target only.
    """
    return np.maximum(check_maps(maps, name), 0.0)


def check_roi_masks(roi_masks, shape: tuple[int, ...], name: str = "roi_masks"):
    """``roi_masks`` as a boolean array of ``shape`` (the flattened maps' shape)."""
    roi_masks = np.asarray(roi_masks)
    if roi_masks.dtype != bool:
        raise TypeError(
            f"{name} must be boolean (True in the region of interest); got dtype "
            f"{roi_masks.dtype}. Use the masks from make_noise_simulation or "
            "token_masks_for_files, or compare yours with 0."
        )
    if roi_masks.ndim < 2 or roi_masks.reshape(roi_masks.shape[0], -1).shape != shape:
        raise ValueError(
            f"{name} of shape {roi_masks.shape} do not match the maps, which have "
            f"{shape[0]} images of {shape[1]} values; pass token masks for token "
            "maps and pixel masks for pixel maps."
        )
    return roi_masks.reshape(shape)


def require_nonempty(counts: np.ndarray, what: str) -> None:
    """Raise when an image has no value in a region the metric averages over."""
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"Images {empty.tolist()[:10]} have no {what}, so the metric is "
            "undefined for them; drop those images (e.g. a ROI smaller than a patch "
            "has no token: lower min_fraction or enlarge the ROI)."
        )

"""The paper's noise simulation: Gaussian noise injected into a known region.

The equations: the Method page of the user guide, "Evaluation: the noise
simulation".
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .._images import check_batch_axis
from ._token_masks import pixel_to_token_masks

# The authors' code injects a 100 px square into images resized to 488 px.
PAPER_SQUARE_SIZE = 100
PAPER_IMAGE_SIZE = 488


def _validate_images(images) -> tuple[np.ndarray, bool]:
    """Float copy of ``images`` as (n, H, W, C), and whether the input was grey."""
    images = np.asarray(images)
    check_batch_axis(images.shape)
    if images.dtype == bool or not np.issubdtype(images.dtype, np.number):
        raise TypeError(
            f"images must hold numbers (uint8 or float); got dtype {images.dtype}. "
            "Load files with sklearn_arb.load_images first."
        )
    grey = images.ndim == 3
    if np.issubdtype(images.dtype, np.integer):
        # uint8 images become floats in [0, 1], the scale load_images uses.
        images = images.astype(np.float32) / 255.0
    else:
        images = images.copy()
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or infinite values; clean them first.")
    if grey:
        images = images[..., np.newaxis]
    return images, grey


def _square_mask(height: int, width: int, size: int, rng) -> np.ndarray:
    top = rng.randint(0, height - size + 1)
    left = rng.randint(0, width - size + 1)
    mask = np.zeros((height, width), dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def _diffuse_mask(
    height: int, width: int, size: int, cluster_scale: float, rng
) -> np.ndarray:
    field = rng.standard_normal((height, width))
    freq_y = np.fft.fftfreq(height)[:, np.newaxis]
    freq_x = np.fft.fftfreq(width)[np.newaxis, :]
    lowpass = np.exp(-(freq_x**2 + freq_y**2) * cluster_scale**2)
    smooth = np.fft.ifft2(np.fft.fft2(field) * lowpass).real
    # Min-max scaling does not change which pixels are largest; it is kept so the
    # field matches the paper's description.
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    top_pixels = np.argpartition(smooth.ravel(), -(size**2))[-(size**2) :]
    mask = np.zeros(height * width, dtype=bool)
    mask[top_pixels] = True
    return mask.reshape(height, width)


@validate_params(
    {
        "images": ["array-like"],
        "noise": [StrOptions({"square", "diffuse"})],
        "size": [Interval(Integral, 1, None, closed="left"), None],
        "patch_size": [Interval(Integral, 1, None, closed="left"), None],
        "min_fraction": [Interval(Real, 0, 1, closed="right")],
        "cluster_scale": [Interval(Real, 0, None, closed="left")],
        "clip": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_noise_simulation(
    images: np.ndarray,
    *,
    noise: str = "square",
    size: int | None = None,
    patch_size: int | None = None,
    min_fraction: float = 0.5,
    cluster_scale: float = 20.0,
    clip: bool = True,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray, ...]:
    """Inject Gaussian noise into a random region of each image.

    The paper's evaluation: the region of interest (ROI) is filled with pixels drawn
    i.i.d. from N(mean_c, std_c^2), the mean and standard deviation (ddof 0) of the
    image's own channel c, so a good attention map should ignore it.

    - ``"square"``: a ``size`` x ``size`` square at a uniformly random position,
      fully inside the image.
    - ``"diffuse"``: a white-noise field smoothed in Fourier space by
      ``exp(-(fx^2 + fy^2) * cluster_scale^2)`` (frequencies in cycles per pixel),
      min-max scaled; its ``size**2`` largest pixels form the ROI (several clusters).

    Both ROIs cover ``size**2`` pixels.

    Parameters
    ----------
    images : array-like of shape (n_images, height, width, channels) or \
(n_images, height, width)
        Images, uint8 (scaled to [0, 1]) or float (kept on their scale). Never
        modified.
    noise : {"square", "diffuse"}, default="square"
        Shape of the ROI.
    size : int, default=None
        Side of the square, or square root of the diffuse ROI's pixel count. None
        scales the paper's 100 px at 488 px to the image:
        ``round(100 * min(height, width) / 488)`` (46 px at 224 px).
    patch_size : int, default=None
        Patch size of the ViT. When given, token ROI masks are returned as well
        (see :func:`pixel_to_token_masks`); height and width must be multiples of it.
    min_fraction : float, default=0.5
        With ``patch_size``: a token is in the ROI when at least this fraction of
        its pixels are.
    cluster_scale : float, default=20.0
        The smoothing parameter c of the diffuse field (the paper's value, 20);
        larger values give larger clusters.
    clip : bool, default=True
        Clip the noise to [0, 1], the range of float images that ``load_images``
        and ``AttentionExtractor`` accept (it trims the Gaussian's tails: a few
        percent of the draws for typical images). False keeps the raw draws, as
        the paper's code did on normalised tensors; use it for images on another
        scale.
    random_state : int, RandomState instance or None, default=None
        Seeds the ROI positions and the noise.

    Returns
    -------
    perturbed_images : ndarray of shape like ``images``, float
        Copies of the images with the ROI replaced by noise (float32 for uint8
        input, the input's float dtype otherwise).
    pixel_masks : ndarray of shape (n_images, height, width), dtype=bool
        True in the ROI.
    token_masks : ndarray of shape (n_images, n_tokens), dtype=bool
        Only when ``patch_size`` is given: the ROI over the patch grid, row-major,
        the ``y`` of the :mod:`sklearn_arb.metrics` scorers.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.datasets import make_noise_simulation
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)
    >>> noisy, pixel_masks, token_masks = make_noise_simulation(
    ...     images, size=16, patch_size=8, random_state=0)
    >>> noisy.shape, noisy.dtype, int(pixel_masks[0].sum()), token_masks.shape
    ((2, 32, 32, 3), dtype('float32'), 256, (2, 16))
    """
    perturbed, grey = _validate_images(images)
    n_images, height, width, n_channels = perturbed.shape
    if size is None:
        size = max(1, round(PAPER_SQUARE_SIZE * min(height, width) / PAPER_IMAGE_SIZE))
    if noise == "square" and size > min(height, width):
        raise ValueError(
            f"size={size} is larger than the images ({height}x{width}); the square "
            "must fit inside: pass size <= min(height, width)."
        )
    if noise == "diffuse" and size**2 > height * width:
        raise ValueError(
            f"size**2={size**2} pixels is more than the images have ({height}x"
            f"{width}); pass size <= sqrt(height * width)."
        )
    if patch_size is not None and (height % patch_size or width % patch_size):
        raise ValueError(
            f"Image size {height}x{width} is not a multiple of patch_size="
            f"{patch_size}; resize the images to the model's input size (e.g. "
            "load_images(..., image_size=224)) first."
        )

    rng = check_random_state(random_state)
    channel_means = perturbed.mean(axis=(1, 2))
    channel_stds = perturbed.std(axis=(1, 2))
    pixel_masks = np.empty((n_images, height, width), dtype=bool)
    for i in range(n_images):
        if noise == "square":
            pixel_masks[i] = _square_mask(height, width, size, rng)
        else:
            pixel_masks[i] = _diffuse_mask(height, width, size, cluster_scale, rng)
        n_roi = int(pixel_masks[i].sum())
        roi_noise = rng.normal(
            channel_means[i], channel_stds[i], size=(n_roi, n_channels)
        )
        if clip:
            roi_noise = np.clip(roi_noise, 0.0, 1.0)
        perturbed[i][pixel_masks[i]] = roi_noise.astype(perturbed.dtype)

    if grey:
        perturbed = perturbed[..., 0]
    if patch_size is None:
        return perturbed, pixel_masks
    token_masks = pixel_to_token_masks(
        pixel_masks, patch_size, min_fraction=min_fraction
    )
    return perturbed, pixel_masks, token_masks

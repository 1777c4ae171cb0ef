"""Tests for sklearn_arb.metrics: each metric against hand-computed values."""

import numpy as np
import pytest

from sklearn_arb.metrics import (
    mean_in_roi,
    mean_percentile_in_roi,
    nonzero_percentage_in_roi,
    pvalue_srmsd,
    select_by_roi_z,
    sensitivity,
    specificity,
    suppression_factor,
)


def _mean_percentile_loop(maps, roi, reference):
    """One image at a time, straight from the definition."""
    out = []
    for values, mask, ref in zip(maps, roi, reference, strict=True):
        rest = ref[~mask]
        out.append(np.mean([100 * np.sum(rest < v) / rest.size for v in values[mask]]))
    return np.array(out)


def test_mean_percentile_hand_case():
    before = np.array([[0.1, 0.2, 0.3, 0.4, 0.25, 0.2]])
    roi = np.array([[False, False, False, True, True, True]])
    # 0.4 beats 3/3 rest, 0.25 beats 2/3, 0.2 beats 1/3 (the tie does not count).
    np.testing.assert_allclose(mean_percentile_in_roi(before, roi), [200 / 3])
    after = np.array([[0.1, 0.0, 0.3, 0.4, 0.0, 0.0]])
    # After: rest of *before* is the reference; 0.4 -> 100, zeros -> 0.
    np.testing.assert_allclose(
        mean_percentile_in_roi(after, roi, reference=before), [100 / 3]
    )


def test_mean_percentile_matches_definition_on_random_maps_with_ties():
    rng = np.random.default_rng(0)
    before = rng.integers(1, 20, size=(7, 49)).astype(float)  # many ties
    after = np.where(rng.random(before.shape) < 0.5, 0.0, before)
    roi = rng.random(before.shape) < 0.3
    roi[:, 0], roi[:, 1] = True, False
    np.testing.assert_allclose(
        mean_percentile_in_roi(before, roi), _mean_percentile_loop(before, roi, before)
    )
    np.testing.assert_allclose(
        mean_percentile_in_roi(after, roi, reference=before),
        _mean_percentile_loop(after, roi, before),
    )


def test_mean_percentile_of_pixel_maps_equals_token_maps_for_whole_patches():
    rng = np.random.default_rng(1)
    tokens = rng.random((3, 4, 4))
    roi = np.zeros((3, 4, 4), dtype=bool)
    roi[:, 1:3, 0:2] = True
    # Nearest-neighbour upsampling repeats every token equally: same percentiles.
    pixels = tokens.repeat(4, axis=1).repeat(4, axis=2)
    pixel_roi = roi.repeat(4, axis=1).repeat(4, axis=2)
    np.testing.assert_allclose(
        mean_percentile_in_roi(pixels, pixel_roi),
        mean_percentile_in_roi(tokens.reshape(3, 16), roi.reshape(3, 16)),
    )


def test_nonzero_percentage_hand_case():
    maps = [[0.0, 0.3, 0.0, 0.2], [0.1, 0.1, 0.1, 0.0]]
    roi = [[True, True, True, False], [True, False, False, True]]
    np.testing.assert_allclose(nonzero_percentage_in_roi(maps, roi), [100 / 3, 50])


def test_sensitivity_specificity_hand_case_and_identities():
    before = np.array([[0.1, 0.3, 0.4, 0.2], [0.25, 0.25, 0.25, 0.25]])
    after = np.array([[0.1, 0.0, 0.2, 0.0], [0.25, 0.0, 0.25, 0.25]])
    roi = np.array([[False, True, True, False], [True, True, False, False]])
    # image 0: ROI 0.7 -> 0.2; rest 0.3 -> 0.1. image 1: ROI 0.5 -> 0.25; rest kept.
    np.testing.assert_allclose(sensitivity(before, after, roi), [1 - 2 / 7, 0.5])
    np.testing.assert_allclose(specificity(before, after, roi), [1 / 3, 1.0])
    # No regularisation: nothing removed, everything kept.
    np.testing.assert_allclose(sensitivity(before, before, roi), 0.0)
    np.testing.assert_allclose(specificity(before, before, roi), 1.0)
    # Everything zeroed: all noise removed, no signal kept.
    np.testing.assert_allclose(sensitivity(before, 0 * before, roi), 1.0)
    np.testing.assert_allclose(specificity(before, 0 * before, roi), 0.0)


def test_sensitivity_specificity_when_a_region_holds_no_attention():
    before = np.array([[0.0, 0.0, 0.5, 0.5], [0.2, 0.3, 0.5, 0.0]])
    after = np.array([[0.0, 0.0, 0.5, 0.0], [0.0, 0.3, 0.5, 0.0]])
    no_roi = np.zeros((2, 4), dtype=bool)
    roi = np.array([[True, True, False, False], [False, False, False, True]])
    # ROI without attention (zero scores or empty ROI): nothing to remove -> 1.
    np.testing.assert_allclose(sensitivity(before, after, roi), [1.0, 1.0])
    np.testing.assert_allclose(sensitivity(before, after, no_roi), [1.0, 1.0])
    # Rest without attention -> specificity 1.
    all_roi = np.ones((2, 4), dtype=bool)
    np.testing.assert_allclose(specificity(before, after, all_roi), [1.0, 1.0])
    assert np.all(np.isfinite(specificity(before, after, roi)))


def test_suppression_factor_hand_case():
    # Sums: after 20, before 100. Var of the sums (n * var ddof 1): 64 and 400,
    # their covariance -160.
    D, err = suppression_factor([60.0, 40.0], [6.0, 14.0])
    assert D == pytest.approx(0.2)
    assert err == pytest.approx(np.sqrt(64 / 1e4 + 400 * 400 / 1e8 + 6400 / 1e6))
    D, err = suppression_factor([60.0, 40.0], [6.0, 14.0], error="independent")
    assert err == pytest.approx(np.sqrt(64 / 1e4 + 400 * 400 / 1e8))


def test_suppression_factor_of_a_constant_ratio_has_no_paired_error():
    before = np.array([10.0, 50.0, 30.0, 80.0])
    D, err = suppression_factor(before, 0.25 * before)
    assert D == pytest.approx(0.25) and err == pytest.approx(0.0, abs=1e-6)
    assert suppression_factor(before, 0.25 * before, error="independent")[1] > 0


def test_suppression_factor_errors():
    with pytest.raises(ValueError, match="at least 2"):
        suppression_factor([50.0], [10.0])
    with pytest.raises(ValueError, match="sum to 0"):
        suppression_factor([0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="same length"):
        suppression_factor([1.0, 2.0], [1.0])


def test_pvalue_srmsd_hand_cases_and_sign():
    uniform = [[0.125, 0.375, 0.625, 0.875]]
    np.testing.assert_allclose(pvalue_srmsd(uniform), [0.0], atol=1e-15)
    # Shifted down by 0.125 everywhere: |sRMSD| = 0.125, median 0.375 -> positive.
    np.testing.assert_allclose(pvalue_srmsd([[0.0, 0.25, 0.5, 0.75]]), [0.125])
    # Shifted up: negative.
    np.testing.assert_allclose(pvalue_srmsd([[0.25, 0.5, 0.75, 1.0]]), [-0.125])
    # All p = 0 for many values: the bound 1/sqrt(3).
    np.testing.assert_allclose(pvalue_srmsd(np.zeros((1, 10_000))), [3**-0.5], 1e-4)


def test_pvalue_srmsd_with_masks_uses_only_masked_values():
    pvalues = np.array([[0.9, 0.125, 0.375, 0.625, 0.875], [0.0, 0.0, 0.25, 0.5, 0.75]])
    masks = np.array([[False, True, True, True, True], [False, True, True, True, True]])
    np.testing.assert_allclose(pvalue_srmsd(pvalues, masks), [0.0, 0.125], atol=1e-15)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pvalue_srmsd([[0.5, 1.5]])


def test_mean_in_roi_and_z_selection():
    z = np.array([[5.0, 1.0, -1.0], [5.0, 1.0, 1.0], [0.0, 2.0, 0.5], [0.0, -2, -1]])
    roi = np.array([[False, True, True]] * 4)
    np.testing.assert_allclose(mean_in_roi(z, roi), [0.0, 1.0, 1.25, -1.5])
    np.testing.assert_array_equal(select_by_roi_z(z, roi), [True, True, False, False])
    np.testing.assert_array_equal(
        select_by_roi_z(z, roi, max_abs_mean_z=1.5), [True, True, True, True]
    )


def test_metrics_reject_bad_input():
    maps = np.ones((2, 4))
    roi = np.array([[True, False, False, False]] * 2)
    with pytest.raises(TypeError, match="boolean"):
        mean_in_roi(maps, roi.astype(int))
    with pytest.raises(ValueError, match="do not match"):
        mean_in_roi(maps, roi[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        mean_in_roi(np.full((2, 4), np.nan), roi)
    with pytest.raises(ValueError, match="newaxis"):
        nonzero_percentage_in_roi(np.ones(4), roi[0])
    with pytest.raises(ValueError, match=r"Images \[1\] have no ROI"):
        mean_percentile_in_roi(
            maps, np.array([[True, False, False, False], [False] * 4])
        )
    with pytest.raises(ValueError, match="outside the ROI"):
        mean_percentile_in_roi(maps, np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="same images"):
        sensitivity(maps, np.ones((3, 4)), roi)

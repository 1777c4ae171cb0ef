"""Tests for localisation: boxes to token masks, the metrics and their scorer."""

from itertools import permutations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image
from sklearn.metrics import roc_auc_score

from sklearn_arb import CumulativeMass
from sklearn_arb.evaluation import (
    boxes_of_files,
    boxes_to_token_masks,
    localisation_auc,
    make_localisation_scorer,
    model_boxes_of_files,
    pointing_game,
    read_boxes,
    relevance_mass,
    relevance_rank_accuracy,
    selection_scores,
    summarize_scores,
    token_masks_for_files,
)

HEADER = "file,class_index,original_width,original_height,x0,y0,x1,y1\n"


def _masks(n_images=3, n_tokens=16, seed=0):
    """Random token masks with at least one token in and one out per image."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n_images, n_tokens)) < 0.4
    masks[:, 0], masks[:, 1] = True, False
    return masks


# -------------------------------------------------------------- known answers


def test_a_map_equal_to_the_mask_scores_perfectly():
    masks = _masks()
    maps = masks.astype(float)
    assert_array_equal(pointing_game(maps, masks), 1.0)
    assert_array_equal(relevance_mass(maps, masks), 1.0)
    assert_array_equal(relevance_rank_accuracy(maps, masks), 1.0)
    assert_array_equal(localisation_auc(maps, masks), 1.0)
    scores = selection_scores(maps, masks)
    for name in ("precision", "recall", "iou"):
        assert_array_equal(scores[name], 1.0)
    assert_array_equal(scores.size, masks.mean(axis=1))
    assert_array_equal(scores.chance, masks.mean(axis=1))


def test_an_all_zero_map_abstains_and_is_never_a_hit():
    masks = _masks(n_images=2)
    maps = masks.astype(float)
    maps[1] = 0.0
    hits = pointing_game(maps, masks)
    assert_array_equal(hits, [1.0, np.nan])
    summary = summarize_scores(hits)
    assert (summary.mean, summary.n_scored, summary.n_abstained) == (1.0, 1, 1)
    assert np.isnan(relevance_mass(maps, masks)[1])
    scores = selection_scores(maps, masks)
    assert np.isnan(scores.precision[1])
    assert (scores.recall[1], scores.iou[1], scores.size[1]) == (0.0, 0.0, 0.0)
    # Ranks of an all-tied map: chance for the rank accuracy, 0.5 for the AUC.
    assert relevance_rank_accuracy(maps, masks)[1] == pytest.approx(scores.chance[1])
    assert localisation_auc(maps, masks)[1] == 0.5


def test_a_map_with_only_negative_scores_abstains_like_a_zero_map():
    masks = _masks(n_images=1)
    assert np.isnan(pointing_game(-np.ones((1, 16)), masks)[0])
    assert np.isnan(relevance_mass(-np.ones((1, 16)), masks)[0])


def test_tied_maxima_hit_only_when_all_lie_inside():
    masks = np.array([[True, True, False, False]] * 3)
    maps = np.array([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.5, 0.0], [0.2, 0.9, 0.9, 0.9]])
    assert_array_equal(pointing_game(maps, masks), [0.0, 1.0, 0.0])


def test_signed_maps_enter_by_their_positive_part():
    masks = np.array([[True, False, False, False]])
    signed = np.array([[0.5, -3.0, 0.5, 0.0]])
    assert_allclose(relevance_mass(signed, masks), [0.5])
    # A selection is every kept (nonzero) token, whatever its sign: ARB can keep
    # a negative score significantly above its null, and selection_faithfulness
    # removes it with the others.
    scores = selection_scores(signed, masks)
    assert_array_equal(scores.size, [0.75])
    assert_array_equal(scores.precision, [1 / 3])
    assert_allclose(
        localisation_auc(signed, masks), [roc_auc_score(masks[0], [0.5, 0, 0.5, 0])]
    )


def test_localisation_auc_equals_roc_auc_score_per_image_with_ties():
    rng = np.random.default_rng(1)
    masks = _masks(n_images=6, n_tokens=30, seed=1)
    maps = np.round(rng.normal(size=(6, 30)), 1)  # ties, and negative scores
    expected = [
        roc_auc_score(mask, np.maximum(row, 0))
        for row, mask in zip(maps, masks, strict=True)
    ]
    assert_allclose(localisation_auc(maps, masks), expected)


def test_relevance_rank_accuracy_is_the_top_k_share_without_ties():
    rng = np.random.default_rng(2)
    masks = _masks(n_images=5, n_tokens=20, seed=2)
    maps = rng.random((5, 20))
    expected = [
        mask[np.argsort(-row)[: mask.sum()]].mean()
        for row, mask in zip(maps, masks, strict=True)
    ]
    assert_allclose(relevance_rank_accuracy(maps, masks), expected)


def test_relevance_rank_accuracy_averages_ties_at_the_boundary():
    # K = 3: token 0, then two of the three tokens tied at 0.4, two of which are
    # inside: 1 + 2 * 2/3 expected inside, over 3.
    masks = np.array([[True, False, True, True, False]])
    maps = np.array([[0.9, 0.4, 0.4, 0.4, 0.1]])
    assert_allclose(relevance_rank_accuracy(maps, masks), [(1 + 2 * 2 / 3) / 3])
    # Brute force: the mean over every order of the tied tokens.
    shares = [masks[0][[0, *order][:3]].mean() for order in permutations([1, 2, 3])]
    assert_allclose(relevance_rank_accuracy(maps, masks), [np.mean(shares)])


def test_selection_scores_known_values():
    masks = np.array([[True, True, True, False, False, False, False, False]])
    maps = np.array([[0.3, 0.1, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0]])
    scores = selection_scores(maps, masks)
    assert_allclose(
        [scores.precision, scores.recall, scores.iou, scores.size, scores.chance],
        [[2 / 3], [2 / 3], [2 / 4], [3 / 8], [3 / 8]],
    )


def test_empty_masks_make_undefined_scores_nan():
    masks = np.zeros((1, 4), dtype=bool)
    maps = np.array([[0.5, 0.2, 0.0, 0.0]])
    assert pointing_game(maps, masks)[0] == 0.0
    assert relevance_mass(maps, masks)[0] == 0.0
    assert np.isnan(relevance_rank_accuracy(maps, masks)[0])
    assert np.isnan(localisation_auc(maps, masks)[0])
    assert np.isnan(selection_scores(maps, masks).recall[0])


def test_bad_inputs_raise_clear_errors_and_inputs_are_not_modified():
    maps = np.array([[0.5, -0.2, 0.1, 0.0]])
    before = maps.copy()
    with pytest.raises(TypeError, match="masks must be boolean"):
        pointing_game(maps, np.array([[1, 0, 0, 0]]))
    with pytest.raises(ValueError, match="do not match the maps"):
        relevance_mass(maps, np.ones((1, 5), dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        localisation_auc(np.full((1, 4), np.nan), np.ones((1, 4), dtype=bool))
    selection_scores(maps, np.array([[True, False, False, True]]))
    assert_array_equal(maps, before)


# -------------------------------------------------------------------- scorer


def test_the_scorer_is_the_mean_over_images_that_did_not_abstain():
    observed = np.array([[0.5, 0.3, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0]])
    masks = np.array([[True, False, False, True], [True, True, False, False]])
    rule = CumulativeMass(0.6, n_bootstrap=0).fit(observed)
    scorer = make_localisation_scorer("all")
    scores = scorer(rule, observed, masks)
    # Image 1 keeps nothing: no precision, recall 0; the pointing game abstains.
    assert scores["precision"] == 0.5 and scores["recall"] == 0.25
    assert scores["pointing_game"] == 1.0
    assert make_localisation_scorer("pointing_game")(rule, observed, masks) == 1.0
    per_image_auc = localisation_auc(rule.transform(observed), masks)
    assert make_localisation_scorer()(rule, observed, masks) == pytest.approx(
        per_image_auc.mean()
    )
    assert make_localisation_scorer(relevance_mass)(rule, observed, masks) == 0.625
    with pytest.raises(ValueError, match="need y"):
        scorer(rule, observed, None)
    with pytest.raises(ValueError, match="metric"):
        make_localisation_scorer("accuracy")


# ------------------------------------------------------------ boxes to masks


def test_boxes_to_token_masks_overlap_rule():
    # 8 x 8 image, patches of 4: the box [0, 6] x [0, 2] covers pixel centres
    # x in 0.5..5.5 (6 columns), y in 0.5..1.5 (2 rows).
    boxes = [np.array([[0.0, 0.0, 6.0, 2.0]])]
    # Token 0: 4 x 2 of 16 pixels; token 1: 2 x 2 of 16.
    assert_array_equal(boxes_to_token_masks(boxes, 8, 4, 0.5)[0], [1, 0, 0, 0])
    assert_array_equal(boxes_to_token_masks(boxes, 8, 4, 0.25)[0], [1, 1, 0, 0])
    # Two boxes, their union; an image without box.
    two = [np.array([[0.0, 0.0, 4.0, 4.0], [4.0, 4.0, 8.0, 8.0]]), np.empty((0, 4))]
    assert_array_equal(boxes_to_token_masks(two, 8, 4), [[1, 0, 0, 1], [0, 0, 0, 0]])


def test_read_boxes_and_match_files(tmp_path):
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text(
        HEADER + "a/1.JPEG,0,500,375,0,0,112,224\n"
        "b/2.JPEG,3,500,375,112,112,224,224\n"
        "a/1.JPEG,0,500,375,112,0,224,112\n"
    )
    boxes = read_boxes(csv_path)
    assert boxes.files == ["a/1.JPEG", "b/2.JPEG"]
    assert_array_equal(boxes.class_index, [0, 3, 0])
    files = [tmp_path / "b" / "2.JPEG", tmp_path / "data" / "a" / "1.JPEG"]
    for file in files:
        file.parent.mkdir(parents=True)
        Image.fromarray(np.zeros((224, 224, 3), np.uint8)).save(file)
    masks = token_masks_for_files(files, boxes, image_size=32, patch_size=16)
    assert_array_equal(masks, [[0, 0, 0, 1], [1, 1, 1, 0]])
    found = boxes_of_files(files, boxes)
    assert_array_equal(found.class_index, [3, 0])
    assert_array_equal(found.boxes[1], boxes.boxes[[0, 2]])
    with pytest.raises(ValueError, match=r"1 file\(s\) have no box.*c/3.JPEG"):
        token_masks_for_files(["c/3.JPEG"], boxes, image_size=32, patch_size=16)


def test_boxes_are_scaled_from_each_file_s_own_size_x_and_y_apart(tmp_path):
    # A wide file, a tall file and a square one, each with the box of its right
    # half (in its own pixels), to a square model image and to a wide one.
    sizes = {"wide.png": (224, 448), "tall.png": (300, 100), "square.png": (64, 64)}
    rows = []
    for name, (height, width) in sizes.items():
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(tmp_path / name)
        rows.append(f"{name},0,{width},{height},{width / 2},0,{width},{height}\n")
    (tmp_path / "boxes.csv").write_text(HEADER + "".join(rows))
    boxes = read_boxes(tmp_path / "boxes.csv")
    files = [tmp_path / name for name in sizes]
    right_half = np.tile([False, True], 2)  # 2 x 2 grid
    masks = token_masks_for_files(files, boxes, image_size=32, patch_size=16)
    assert_array_equal(masks, np.tile(right_half, (3, 1)))
    wide = token_masks_for_files(files, boxes, image_size=(32, 64), patch_size=16)
    assert_array_equal(wide, np.tile([0, 0, 1, 1], (3, 2)))  # 2 x 4 grid
    assert_array_equal(
        model_boxes_of_files(files[:2], boxes, (32, 64)),
        [[[32.0, 0.0, 64.0, 32.0]]] * 2,
    )


def test_read_boxes_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,x0,y0,x1,y1\na,0,0,1,1\n")
    with pytest.raises(ValueError, match="lacks the column"):
        read_boxes(bad)
    bad.write_text(HEADER + "a,0,1,1,5,0,1,1\n")
    with pytest.raises(ValueError, match="x1 < x0"):
        read_boxes(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_boxes(tmp_path / "none.csv")


def _direct_token_share(image_boxes, patch_size=16, image_size=224, min_fraction=0.5):
    """Token masks by counting, token by token, the pixel centres in any box."""
    side = image_size // patch_size
    mask = np.zeros(side * side, dtype=bool)
    for token in range(side * side):
        row, col = divmod(token, side)
        inside = 0
        for r in range(row * patch_size, (row + 1) * patch_size):
            for c in range(col * patch_size, (col + 1) * patch_size):
                inside += any(
                    x0 <= c + 0.5 <= x1 and y0 <= r + 0.5 <= y1
                    for x0, y0, x1, y1 in image_boxes
                )
        mask[token] = inside >= min_fraction * patch_size**2
    return mask


def test_real_boxes_cover_the_stated_share_of_tokens(imagenette_paths):
    imagenette_dir = imagenette_paths[0].parents[1]
    boxes = read_boxes(imagenette_dir / "boxes.csv")
    assert len(boxes.files) == 134 and len(boxes.boxes) == 211
    paths = [imagenette_dir / file for file in boxes.files]
    masks = token_masks_for_files(paths, boxes, image_size=224, patch_size=16)
    assert masks.shape == (134, 196)
    # The documented share: 44.6% of the tokens on average (min_fraction 0.5).
    assert masks.mean() == pytest.approx(0.4462, abs=5e-4)
    # One box; 11 overlapping boxes; a golf ball of 8 x 8 pixels, under half of
    # any patch: an image with no token inside (its recall and AUC are NaN).
    assert not masks[107].any()
    several = boxes.boxes[boxes.file == boxes.files[45]]
    for box in several:  # the union holds every box's own tokens
        single = boxes_to_token_masks([box[np.newaxis]], 224, 16)[0]
        assert not (single & ~masks[45]).any()
    for index in (0, 45, 107):
        image_boxes = boxes.boxes[boxes.file == boxes.files[index]]
        assert_array_equal(masks[index], _direct_token_share(image_boxes))

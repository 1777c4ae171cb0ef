"""Faithfulness by perturbation: ROAD imputation, deletion/insertion curves,
comprehensiveness and sufficiency, the faithfulness scorer. Known answers from
a tiny model whose logit is a linear function of its patches' means."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from torch import nn

from sklearn_arb import (
    AttentionExtractor,
    BootstrapAttentionRegularizer,
    TopFraction,
)
from sklearn_arb.evaluation import (
    as_classifier,
    cascading_randomisation,
    curve_auc,
    deletion_curve,
    insertion_curve,
    make_faithfulness_scorer,
    perturbation_curve,
    randomise_top_blocks,
    remove_tokens,
    selection_faithfulness,
    token_order,
)

# 32 x 32 images, 8 px patches: a 4 x 4 grid of 16 tokens.
SIZE, PATCH, N_TOKENS = 32, 8, 16
CENTRE = [5, 6, 9, 10]  # the four tokens away from the image border


class PatchLinear(nn.Module):
    """Two classes; logit 1 = sum_t w_t * (mean pixel of patch t), logit 0 = 0.
    So p(class 1) = sigmoid(sum_t w_t m_t) in closed form."""

    def __init__(self, weights):
        super().__init__()
        self.weights = nn.Parameter(torch.as_tensor(weights, dtype=torch.float32))

    def forward(self, images):
        means = F.avg_pool2d(images, PATCH).mean(dim=1).flatten(1)  # (n, 16)
        logit = means @ self.weights
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


def _classifier(weights):
    return as_classifier(
        PatchLinear(weights),
        image_size=SIZE,
        patch_size=PATCH,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _plane(a=0.01, b=-0.005, c=0.3):
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    channels = [c + a * cols + b * rows, 0.8 - 0.02 * cols, 0.1 + 0.015 * rows]
    return np.stack(channels, axis=-1)[None]


def _removed(tokens, n_images=1):
    removed = np.zeros((n_images, N_TOKENS), dtype=bool)
    removed[:, tokens] = True
    return removed


# --- ROAD imputation --------------------------------------------------------


def test_road_reproduces_a_linear_ramp_exactly_without_noise():
    plane = _plane()
    filled = remove_tokens(plane, _removed(CENTRE), PATCH, noise=0.0)
    assert np.abs(filled - plane).max() < 1e-10


def test_road_noise_is_gaussian_with_the_stated_std_and_seeded():
    plane = _plane()
    removed = _removed(CENTRE)
    filled = remove_tokens(plane, removed, PATCH, noise=0.01, random_state=3)
    again = remove_tokens(plane, removed, PATCH, noise=0.01, random_state=3)
    np.testing.assert_array_equal(filled, again)
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[8:24, 8:24] = True
    error = (filled - plane)[0][inside]  # 256 pixels x 3 channels
    assert np.abs(error).max() < 5 * 0.01
    assert 0.009 < error.std() < 0.011
    assert abs(error.mean()) < 0.002
    np.testing.assert_array_equal(filled[0][~inside], plane[0][~inside])


def _random_removal(shape, fraction, seed):
    """Row-major token indices of a random removal of ``fraction`` of a grid."""
    n_tokens = shape[0] * shape[1]
    rng = np.random.default_rng(seed)
    return rng.permutation(n_tokens)[: round(fraction * n_tokens)].tolist()


@pytest.mark.parametrize(
    ("shape", "patch", "tokens"),
    [
        ((SIZE, SIZE), PATCH, [0, 1, 4, 15]),  # corner, edge and opposite corner
        ((SIZE, SIZE), PATCH, [0, 1, 4, 5, 10, 11, 14, 15]),  # two 2 x 2 squares
        # 8 x 8 tokens: a 4 x 4 square, a 2 x 2 square and single tokens.
        ((64, 64), PATCH, [r * 8 + c for r in range(4) for c in range(4)]
         + [36, 37, 44, 45, 7]),
        # A 4 x 4 square off the 4-token grid, against the bottom and right
        # border, with a 2 x 2 square against the bottom border beside it.
        ((64, 64), PATCH, [r * 8 + c for r in range(4, 8) for c in range(3, 8)]
         + [r * 8 + c for r in range(6, 8) for c in range(0, 2)]),
        ((64, 64), PATCH, _random_removal((8, 8), 0.5, 0)),
        ((64, 64), PATCH, _random_removal((8, 8), 0.95, 1)),  # all but 3 tokens
        ((48, 80), PATCH, _random_removal((6, 10), 0.7, 2)),  # not square
        ((24, 24), 2, _random_removal((12, 12), 0.8, 3)),  # 1-pixel interiors
        ((12, 12), 1, _random_removal((12, 12), 0.6, 4)),  # no interiors
        # Grids narrower than the largest square: 3 x 3 and 2 x 8 tokens.
        ((24, 24), PATCH, [0, 1, 3, 4, 8]),
        ((16, 64), PATCH, _random_removal((2, 8), 0.7, 5)),
    ],
)  # fmt: skip
def test_road_solves_the_neighbour_mean_equations(shape, patch, tokens):
    """Each removed pixel is the weighted mean of its neighbours inside the
    image (1/6 direct, 1/12 diagonal, renormalised at the border), checked
    pixel by pixel against a plain loop, whatever squares cover the removal."""
    height, width = shape
    image = np.random.default_rng(0).random((1, height, width, 3))
    grid = (height // patch, width // patch)
    removed = np.zeros((1, grid[0] * grid[1]), dtype=bool)
    removed[0, tokens] = True
    filled = remove_tokens(image, removed, patch, noise=0.0)[0]
    mask = np.kron(removed[0].reshape(grid), np.ones((patch, patch), bool))
    worst = 0.0
    for r, c in zip(*np.nonzero(mask), strict=True):
        total, weight = np.zeros(3), 0.0
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if (dr, dc) == (0, 0):
                    continue
                if 0 <= r + dr < height and 0 <= c + dc < width:
                    w = 1 / 12 if dr and dc else 1 / 6
                    total += w * filled[r + dr, c + dc]
                    weight += w
        worst = max(worst, np.abs(filled[r, c] - total / weight).max())
    assert worst < 1e-10
    np.testing.assert_array_equal(filled[~mask], image[0][~mask])


def test_road_in_float32_is_the_float64_solution_to_float32_precision():
    """The float32 path (what load_images gives) factorises in float32; its
    fill stays within a few float32 roundings of the float64 solution even
    where nearly every token is removed (the system is then at its largest)."""
    image = np.random.default_rng(5).random((1, 64, 64, 3))
    removed = np.zeros((1, 64), dtype=bool)
    removed[0, _random_removal((8, 8), 0.9, 6)] = True
    exact = remove_tokens(image, removed, PATCH, noise=0.0)
    single = remove_tokens(image.astype(np.float32), removed, PATCH, noise=0.0)
    assert single.dtype == np.float32
    assert np.abs(single - exact).max() < 2e-5


@pytest.mark.parametrize("n_threads", [1, 4])
def test_road_of_a_batch_is_each_image_alone_bit_for_bit(monkeypatch, n_threads):
    """The images of a batch are filled in parallel: whatever the number of
    threads, each image's fill (noise included) is what it gets alone, given
    the seeds drawn in turn from the same random_state."""
    from sklearn_arb.evaluation import _imputation

    images = np.random.default_rng(0).random((5, 64, 64, 3)).astype(np.float32)
    removed = np.zeros((5, 64), dtype=bool)
    for i, fraction in enumerate([0.1, 0.5, 0.9, 1.0, 0.0]):
        removed[i, _random_removal((8, 8), fraction, i)] = True
    monkeypatch.setattr(_imputation, "cpu_count", lambda: n_threads)
    batch = remove_tokens(images, removed, PATCH, random_state=np.random.RandomState(5))
    alone_rng = np.random.RandomState(5)
    alone = [
        remove_tokens(image[None], mask[None], PATCH, random_state=alone_rng)[0]
        for image, mask in zip(images, removed, strict=True)
    ]
    np.testing.assert_array_equal(batch, np.stack(alone))


def test_road_of_every_token_is_the_background_and_input_is_untouched():
    image = np.random.default_rng(0).random((2, SIZE, SIZE, 3)).astype(np.float32)
    before = image.copy()
    filled = remove_tokens(
        image, _removed(list(range(N_TOKENS)), 2), PATCH, noise=0.0, background=0.25
    )
    assert filled.dtype == np.float32
    np.testing.assert_array_equal(filled, 0.25)
    np.testing.assert_array_equal(image, before)


def test_black_and_blur_fill_only_the_removed_tokens():
    image = np.random.default_rng(0).random((1, SIZE, SIZE, 3))
    removed = _removed([0, 5])
    mask = np.kron(removed[0].reshape(4, 4), np.ones((PATCH, PATCH), bool))
    black = remove_tokens(image, removed, PATCH, method="black")[0]
    assert (black[mask] == 0).all()
    np.testing.assert_array_equal(black[~mask], image[0][~mask])
    blur = remove_tokens(image, removed, PATCH, method="blur", blur_sigma=2.0)[0]
    expected = gaussian_filter(image[0], sigma=(2.0, 2.0, 0), mode="reflect")
    np.testing.assert_allclose(blur[mask], expected[mask])
    np.testing.assert_array_equal(blur[~mask], image[0][~mask])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "zero"}, "method must be one of"),
        ({"patch_size": 5}, "does not divide"),
        ({"removed": np.zeros((1, 15), bool)}, r"shape \(n_images, n_tokens\)"),
        ({"removed": np.zeros((1, 16))}, "boolean"),
    ],
)
def test_remove_tokens_refuses_bad_input(kwargs, match):
    arguments = {"removed": _removed([0]), "patch_size": PATCH, **kwargs}
    removed = arguments.pop("removed")
    patch_size = arguments.pop("patch_size")
    with pytest.raises(ValueError, match=match):
        remove_tokens(_plane(), removed, patch_size, **arguments)


# --- order and AUC ------------------------------------------------------------


def test_curve_auc_of_known_curves():
    fractions = np.linspace(0, 1, 11)
    assert curve_auc(fractions, 1 - fractions) == pytest.approx(0.5)
    assert curve_auc([0, 0.5, 1], [1, 1, 0]) == pytest.approx(0.75)
    fine = np.linspace(0, 1, 1001)
    assert curve_auc(fine, fine**2) == pytest.approx(1 / 3, abs=1e-6)
    np.testing.assert_allclose(curve_auc([0, 1], [[0, 1], [1, 1]]), [0.5, 1.0])


def test_ties_are_in_random_order_never_raster_order():
    zeros = np.zeros((400, N_TOKENS))
    order = token_order(zeros, random_state=0)
    np.testing.assert_array_equal(order, token_order(zeros, random_state=0))
    assert not (order == np.arange(N_TOKENS)).all(axis=1).any()
    # Every token comes first about equally often (400 / 16 = 25 each).
    first = np.bincount(order[:, 0], minlength=N_TOKENS)
    assert first.min() >= 8 and first.max() <= 45
    # Scores order before ties; equal scores stay together, in random order.
    maps = np.zeros((50, N_TOKENS))
    maps[:, 7], maps[:, 3] = 2.0, 1.0
    morf = token_order(maps, random_state=1)
    assert (morf[:, :2] == [7, 3]).all()
    lerf = token_order(maps, order="lerf", random_state=1)
    assert (lerf[:, -2:] == [3, 7]).all()
    assert len({tuple(row) for row in morf[:, 2:]}) == 50


# --- curves on the tiny model: closed forms -----------------------------------

WEIGHTS = np.linspace(-1.5, 2.0, N_TOKENS)[np.random.default_rng(0).permutation(16)]


def _expected_curve(kind, order, n_tokens):
    """p(class 1) of an all-ones image with tokens blacked out in ``order``."""
    curve = []
    for n in n_tokens:
        first = np.zeros(N_TOKENS, dtype=bool)
        first[order[:n]] = True
        kept = ~first if kind == "deletion" else first
        curve.append(_sigmoid(WEIGHTS[kept].sum()))
    return np.array(curve)


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_black_curves_of_the_patch_linear_model_are_known(kind, order):
    images = np.ones((1, SIZE, SIZE, 3))
    maps = WEIGHTS[None]  # the map is the model's own weights: exact ranks
    curves = perturbation_curve(
        _classifier(WEIGHTS), images, maps, kind=kind, order=order,
        removal="black", target=1,
    )  # fmt: skip
    ranked = np.argsort(-WEIGHTS if order == "morf" else WEIGHTS)
    expected = _expected_curve(kind, ranked, curves.n_tokens)
    np.testing.assert_allclose(curves.probabilities[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(
        curves.n_tokens, [0, 2, 3, 5, 6, 8, 10, 11, 13, 14, 16]
    )
    assert curves.auc[0] == pytest.approx(curve_auc(curves.fractions, expected))
    if kind == "deletion" and order == "morf":
        # The faithful map: deletion falls below every other order's curve.
        lerf = _expected_curve(kind, np.argsort(WEIGHTS), curves.n_tokens)
        assert curves.auc[0] < curve_auc(curves.fractions, lerf)


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_blur_curves_are_remove_tokens_then_the_model(kind):
    """The curve blurs each image once for all its steps: the same
    probabilities as remove_tokens' blur at each step, then the model."""
    rng = np.random.default_rng(0)
    images = rng.random((2, SIZE, SIZE, 3)).astype(np.float32)
    maps = rng.random((2, N_TOKENS))
    classifier = _classifier(WEIGHTS)
    curves = perturbation_curve(
        classifier, images, maps, kind=kind, removal="blur", blur_sigma=2.0,
        target=1, batch_size=3,
    )  # fmt: skip
    order = np.argsort(-maps, axis=1)
    for step, n in enumerate(curves.n_tokens):
        removed = np.zeros((2, N_TOKENS), dtype=bool)
        first = order[:, :n]
        np.put_along_axis(removed, first, True, axis=1)
        if kind == "insertion":
            removed = ~removed
        perturbed = remove_tokens(images, removed, PATCH, method="blur",
                                  blur_sigma=2.0)  # fmt: skip
        expected = classifier.probabilities(perturbed)[:, 1]
        np.testing.assert_array_equal(curves.probabilities[:, step], expected)


def test_road_deletion_of_a_constant_image_keeps_the_probability():
    """ROAD fills from the kept pixels, so a constant image stays constant until
    every token is removed (then the normalisation mean, here 0)."""
    images = np.ones((1, SIZE, SIZE, 3))
    curves = deletion_curve(
        _classifier(WEIGHTS), images, WEIGHTS[None], target=1, noise=0.0
    )
    full = _sigmoid(WEIGHTS.sum())
    np.testing.assert_allclose(curves.probabilities[0, :-1], full, rtol=1e-6)
    assert curves.probabilities[0, -1] == pytest.approx(0.5)


def test_tied_zero_maps_follow_the_stated_random_order():
    """A map of zeros (what ARB gives where nothing is significant): the curve is
    the one of token_order's random order with the same seed, and the model
    (which reads the top row only) does not lose the top row first."""
    top_row = np.zeros(N_TOKENS)
    top_row[:4] = 1.0
    images = np.ones((3, SIZE, SIZE, 3))
    maps = np.zeros((3, N_TOKENS))
    curves = deletion_curve(
        _classifier(top_row), images, maps, removal="black", target=1, random_state=7
    )
    order = token_order(maps, random_state=7)
    for i in range(3):
        expected = [
            _sigmoid(top_row[np.setdiff1d(np.arange(16), order[i, :n])].sum())
            for n in curves.n_tokens
        ]
        np.testing.assert_allclose(curves.probabilities[i], expected, rtol=1e-6)
    raster = _expected_curve("deletion", np.arange(N_TOKENS), curves.n_tokens)
    assert not np.allclose(curves.probabilities, raster[None])


def test_deletion_and_insertion_meet_at_the_intact_image():
    images = np.random.default_rng(0).random((2, SIZE, SIZE, 3))
    maps = np.random.default_rng(1).random((2, N_TOKENS))
    classifier = _classifier(WEIGHTS)
    deleted = deletion_curve(classifier, images, maps, random_state=0)
    inserted = insertion_curve(classifier, images, maps, random_state=0)
    intact = classifier.probabilities(images)[:, 1]
    np.testing.assert_allclose(deleted.probabilities[:, 0], intact)
    np.testing.assert_allclose(inserted.probabilities[:, -1], intact)
    assert (deleted.targets == inserted.targets).all()


def test_curves_do_not_depend_on_the_batch_size():
    images = np.random.default_rng(0).random((3, SIZE, SIZE, 3))
    maps = np.random.default_rng(1).random((3, N_TOKENS))
    classifier = _classifier(WEIGHTS)
    one = deletion_curve(classifier, images, maps, batch_size=1, random_state=2)
    many = deletion_curve(classifier, images, maps, batch_size=64, random_state=2)
    np.testing.assert_allclose(one.probabilities, many.probabilities, rtol=1e-6)


def test_selection_faithfulness_of_the_patch_linear_model_is_known():
    images = np.ones((2, SIZE, SIZE, 3))
    maps = np.zeros((2, N_TOKENS))
    maps[0, [1, 4, 9]] = [0.3, 0.2, 0.1]  # image 1 selects nothing
    scores = selection_faithfulness(
        _classifier(WEIGHTS), images, maps, removal="black", target=1
    )
    full = _sigmoid(WEIGHTS.sum())
    selected = np.zeros(N_TOKENS, dtype=bool)
    selected[[1, 4, 9]] = True
    np.testing.assert_allclose(
        scores.comprehensiveness,
        [full - _sigmoid(WEIGHTS[~selected].sum()), 0.0],
        rtol=1e-6,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        scores.sufficiency,
        [full - _sigmoid(WEIGHTS[selected].sum()), full - 0.5],
        rtol=1e-6,
    )
    np.testing.assert_array_equal(scores.size, [3, 0])


def test_bad_maps_and_targets_are_refused():
    images = np.ones((2, SIZE, SIZE, 3))
    classifier = _classifier(WEIGHTS)
    with pytest.raises(ValueError, match=r"\(2, 16\)"):
        deletion_curve(classifier, images, np.zeros((2, 32)))
    with pytest.raises(ValueError, match="target classes"):
        deletion_curve(classifier, images, np.zeros((2, 16)), target=5)
    with pytest.raises(ValueError, match="fractions"):
        deletion_curve(classifier, images, np.zeros((2, 16)), fractions=[0.5, 0.2])
    with pytest.raises(ValueError, match="removal"):
        deletion_curve(classifier, images, np.zeros((2, 16)), removal="grey")


# --- the model of an extractor, the scorer ------------------------------------


def test_classifier_of_an_extractor_is_its_vit_with_its_preprocessing(
    make_tiny_vit,
):
    vit = make_tiny_vit(num_classes=4)
    extractor = AttentionExtractor(vit, image_size=SIZE).fit()
    classifier = as_classifier(extractor)
    images = np.random.default_rng(0).random((2, SIZE, SIZE, 3)).astype(np.float32)
    mean = torch.tensor(extractor.mean_).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std_).view(1, 3, 1, 1)
    with torch.inference_mode():
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2)
        expected = torch.softmax(vit((pixels - mean) / std), dim=1).numpy()
    np.testing.assert_allclose(classifier.probabilities(images), expected, rtol=1e-5)
    assert classifier.patch_size == PATCH


def test_named_weights_are_loaded_again_with_their_classifier(tmp_path):
    import timm

    torch.manual_seed(0)
    checkpoint = tmp_path / "test_vit.pth"
    torch.save(timm.create_model("test_vit").state_dict(), checkpoint)
    extractor = AttentionExtractor(
        "test_vit", checkpoint_path=checkpoint, image_size=SIZE
    ).fit()
    assert extractor.model_.num_classes == 0  # the attention source drops it
    module = as_classifier(extractor).module
    assert module.num_classes == 1000
    weights = module.state_dict()
    assert all(
        torch.equal(weights[name], value)
        for name, value in extractor.model_.state_dict().items()
    )
    # The head is the checkpoint's, not a fresh draw.
    head = torch.load(checkpoint, weights_only=True)["head.weight"]
    assert torch.equal(weights["head.weight"], head)


def test_a_classifier_without_head_is_refused(make_tiny_vit):
    extractor = AttentionExtractor(make_tiny_vit(num_classes=0), image_size=SIZE)
    with pytest.raises(ValueError, match="no classification head"):
        as_classifier(extractor.fit())


def test_faithfulness_scorer_in_grid_search_scores_the_pipelines_maps(
    make_tiny_vit,
):
    vit = make_tiny_vit(num_classes=4)
    images = np.random.default_rng(0).random((4, SIZE, SIZE, 3))
    pipe = Pipeline(
        [
            ("extractor", AttentionExtractor(vit, image_size=SIZE, n_bootstrap=4,
                                             random_state=0)),
            ("regularizer", BootstrapAttentionRegularizer()),
        ]
    )  # fmt: skip
    scorer = make_faithfulness_scorer("all", removal="black", random_state=0)
    search = GridSearchCV(
        pipe,
        {"regularizer": [BootstrapAttentionRegularizer(), TopFraction(0.25)]},
        scoring=scorer,
        refit="neg_deletion_auc",
        cv=2,
    ).fit(images)
    assert np.isfinite(search.cv_results_["mean_test_insertion_auc"]).all()
    # The scorer is the mean of the curve functions on the Pipeline's maps.
    fitted = search.best_estimator_
    maps = fitted.transform(images)
    curves = deletion_curve(fitted, images, maps, removal="black", random_state=0)
    selection = selection_faithfulness(
        fitted, images, maps, removal="black", random_state=0
    )
    scores = scorer(fitted, images)
    assert scores["neg_deletion_auc"] == pytest.approx(-curves.auc.mean())
    assert scores["comprehensiveness"] == pytest.approx(
        selection.comprehensiveness.mean()
    )


def test_faithfulness_scorer_follows_labels_when_asked(make_tiny_vit):
    vit = make_tiny_vit(num_classes=4)
    images = np.random.default_rng(0).random((2, SIZE, SIZE, 3))
    pipe = Pipeline(
        [("extractor", AttentionExtractor(vit, image_size=SIZE, n_bootstrap=0))]
    ).fit(images)
    labels = np.array([0, 3])
    scorer = make_faithfulness_scorer("insertion_auc", removal="black", target="y")
    maps = pipe.transform(images)
    curves = insertion_curve(pipe, images, maps, target=labels, removal="black",
                             random_state=0)  # fmt: skip
    assert scorer(pipe, images, labels) == pytest.approx(curves.auc.mean())
    with pytest.raises(ValueError, match="one class label per image"):
        scorer(pipe, images, None)


# --- cascading randomisation ----------------------------------------------------


def test_randomise_top_blocks_copies_and_changes_only_the_top_blocks(make_tiny_vit):
    vit = make_tiny_vit(depth=3)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    state = torch.random.get_rng_state()
    random = randomise_top_blocks(vit, 2, random_state=0)
    torch.testing.assert_close(torch.random.get_rng_state(), state)
    for name, value in vit.state_dict().items():
        torch.testing.assert_close(value, before[name])  # the user's model
    changed = {
        name.split(".")[1]
        for name, value in random.state_dict().items()
        if not torch.equal(value, before[name])
    }
    assert changed == {"1", "2"}
    # Cascading: k + 1 blocks extend the k-block model with the same seed.
    one = randomise_top_blocks(vit, 1, random_state=0)
    torch.testing.assert_close(
        one.blocks[2].state_dict(), random.blocks[2].state_dict()
    )
    with pytest.raises(ValueError, match="n_blocks must lie in"):
        randomise_top_blocks(vit, 4)


def test_cascading_randomisation_against_the_trained_model(make_tiny_vit):
    vit = make_tiny_vit(depth=2)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    extractor = AttentionExtractor(
        vit, image_size=SIZE, n_bootstrap=8, random_state=0
    ).fit()
    fitted = {k: v.clone() for k, v in extractor.model_.state_dict().items()}
    images = np.random.default_rng(0).random((4, SIZE, SIZE, 3))
    regularizer = BootstrapAttentionRegularizer()
    result = cascading_randomisation(
        extractor, images, regularizer=regularizer, random_state=0
    )
    np.testing.assert_array_equal(result.n_randomised, [0, 1, 2])
    np.testing.assert_allclose(result.spearman[:, 0], 1.0)
    assert (result.spearman[:, 1:] < 0.999).all()
    # The user's module and the extractor's fitted model are unchanged.
    for name, value in vit.state_dict().items():
        torch.testing.assert_close(value, before[name])
    for name, value in extractor.model_.state_dict().items():
        torch.testing.assert_close(value, fitted[name])
    # Column 0 is the regularizer on the trained model's maps.
    maps = extractor.transform(images)
    selected = regularizer.fit(maps).transform(maps) != 0
    np.testing.assert_allclose(result.significant_share[:, 0], selected.mean(axis=1))
    has = selected.any(axis=1)
    np.testing.assert_allclose(result.significant_kept[has, 0], 1.0)
    assert np.isnan(result.significant_kept[~has]).all()
    again = cascading_randomisation(extractor, images, random_state=0)
    np.testing.assert_allclose(again.spearman, result.spearman)
    assert again.significant_share is None


def test_a_module_in_training_mode_is_copied_not_switched():
    module = PatchLinear(WEIGHTS).train()
    classifier = as_classifier(
        module, image_size=SIZE, patch_size=PATCH, mean=(0, 0, 0), std=(1, 1, 1)
    )
    assert module.training  # the user's module keeps its mode
    assert not classifier.module.training and classifier.module is not module
    with pytest.raises(ValueError, match="image_size is not known"):
        as_classifier(PatchLinear(WEIGHTS))


def test_a_sparse_map_removes_the_stated_number_of_tokens_not_a_percentile():
    """A map with most tokens tied at zero (ARB's output): at each fraction the
    curve removes floor(f * P + 0.5) tokens, never every token tied at the
    percentile (which would remove all 14 zeros at once)."""
    ones = np.ones(N_TOKENS)  # logit = number of kept (all-ones) patches
    maps = np.zeros((1, N_TOKENS))
    maps[0, :2] = [0.9, 0.4]  # two selected tokens, fourteen zeros
    curves = deletion_curve(
        _classifier(ones), np.ones((1, SIZE, SIZE, 3)), maps, removal="black",
        target=1, random_state=0,
    )  # fmt: skip
    expected = _sigmoid(N_TOKENS - curves.n_tokens)
    np.testing.assert_allclose(curves.probabilities[0], expected, rtol=1e-6)


def test_real_attention_deletes_faster_most_relevant_first(
    deit_weights, imagenette_paths
):
    """DeiT-Tiny on Imagenette with ROAD: removing the tokens its CLS attention
    ranks first lowers the predicted class's probability faster than removing
    the last-ranked ones (the sanity a faithfulness metric must pass)."""
    extractor = AttentionExtractor(
        "deit_tiny_patch16_224", checkpoint_path=deit_weights, n_bootstrap=0
    ).fit()
    files = imagenette_paths[::50][:4]
    maps = extractor.transform(files)
    fractions = [0.0, 0.25, 0.5, 0.75, 1.0]
    morf, lerf = (
        deletion_curve(extractor, files, maps, order=order, fractions=fractions,
                       random_state=0)
        for order in ("morf", "lerf")
    )  # fmt: skip
    assert morf.auc.mean() < lerf.auc.mean()  # 0.10 against 0.14 here
    np.testing.assert_array_equal(morf.targets, lerf.targets)

"""The evaluation study: selections, faithfulness read off the curves, the report
against direct computations, resume, and ``sklearn-arb evaluate``."""

import csv
import shutil

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer, MapLayout
from sklearn_arb._layout import with_layout
from sklearn_arb.cli import main
from sklearn_arb.evaluation import (
    EvaluationSettings,
    _study,
    boxes_to_token_masks,
    perturbation_curve,
    run_evaluation,
    selection_faithfulness,
    selection_scores,
)
from sklearn_arb.evaluation._classifier import as_classifier
from sklearn_arb.evaluation._study import image_faithfulness, is_upper_set, select

BOX_HEADER = "file,class_index,original_width,original_height,x0,y0,x1,y1\n"


def _lognormal_maps(n_images=12, n_tokens=49, seed=0):
    rng = np.random.default_rng(seed)
    observed = rng.lognormal(-4, 0.5, (n_images, n_tokens))
    observed[:, :5] *= rng.uniform(2, 20, (n_images, 1))  # a few strong tokens
    null = rng.lognormal(-4, 0.5, (n_images, n_tokens))
    return with_layout(np.hstack([observed, null]), MapLayout(n_tokens, 1))


def test_selections_are_the_rules_and_arb_as_the_library_gives_them():
    maps = _lognormal_maps()
    selections = select(maps, "attention", EvaluationSettings(sources=("attention",)))
    masks = selections.masks
    arb = BootstrapAttentionRegularizer().fit(maps).compute_statistics(maps)
    np.testing.assert_array_equal(masks["arb_p"], arb.keep_mask)
    arb_sizes = masks["arb_p"].sum(axis=1)
    # TopFraction at ARB p's mean size keeps floor(mean * P + 1/2) everywhere.
    fraction = selections.parameters["top_fraction"]
    assert fraction == pytest.approx(arb_sizes.mean() / 49)
    assert set(masks["top_fraction"].sum(axis=1)) == {int(arb_sizes.mean() + 0.5)}
    # The matched mass gives the mean size closest to ARB p's.
    matched = masks["cumulative_mass_matched"].sum(axis=1).mean()
    assert abs(matched - arb_sizes.mean()) <= 1.0
    # The random selection has ARB p's size in every image.
    np.testing.assert_array_equal(masks["random"].sum(axis=1), arb_sizes)
    # Every rule keeps an upper set of the raw scores (what faithfulness reads).
    for method, mask in masks.items():
        if method != "random":
            assert is_upper_set(selections.observed, mask).all(), method


def test_settings_refuse_unknown_names_and_add_arb_p_where_needed():
    with pytest.raises(ValueError, match="Unknown method"):
        EvaluationSettings(methods=("nope",))
    with pytest.raises(ValueError, match="fractions must increase from 0 to 1"):
        EvaluationSettings(fractions=(0.0, 0.5))
    assert EvaluationSettings(methods=("top_fraction",)).methods == (
        "arb_p",
        "top_fraction",
    )


def test_faithfulness_read_off_the_curves_equals_removing_the_selection(
    make_tiny_vit,
):
    vit = make_tiny_vit(num_classes=5)
    classifier = as_classifier(vit)
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 3)).astype(np.float32)
    observed = rng.random(16)
    sizes = np.array([3, 7])
    random_mask = np.zeros(16, dtype=bool)
    random_mask[[1, 5, 9]] = True
    settings = EvaluationSettings(fractions=(0, 0.5, 1), removal="black")
    record = image_faithfulness(
        classifier, image, observed, sizes, random_mask, settings, seed=0
    )
    for k in sizes:
        top_k = np.where(observed >= np.sort(observed)[-k], observed, 0.0)
        direct = selection_faithfulness(
            classifier, image[None], top_k[None], removal="black"
        )
        step = int(np.searchsorted(record["counts"], k))
        assert record["counts"][step] == k
        np.testing.assert_allclose(
            record["deletion"][step], direct.removed_probability[0], rtol=1e-6
        )
        np.testing.assert_allclose(
            record["insertion"][step], direct.kept_probability[0], rtol=1e-6
        )
    direct = selection_faithfulness(
        classifier, image[None], random_mask[None].astype(float), removal="black"
    )
    np.testing.assert_allclose(
        record["random_removed"], direct.removed_probability, rtol=1e-6
    )
    # The curves' steps: floor(f * 16 + 1/2) for f in 0, 0.5, 1, and the sizes.
    assert record["counts"].tolist() == [0, 3, 7, 8, 16]


@pytest.fixture
def tiny_study(tmp_path, make_tiny_vit):
    """Four random images with boxes, a tiny classifier ViT, fast settings."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = [BOX_HEADER]
    for index in range(4):
        name = f"im{index}.png"
        # Files of 224 px; the model sees 32 px.
        pixels = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
        x0 = 56 * (index % 2)
        lines.append(f"{name},0,224,224,{x0},0,{x0 + 112},168\n")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("".join(lines))
    extractor = AttentionExtractor(make_tiny_vit(num_classes=5), image_size=32)
    settings = EvaluationSettings(
        sources=("attention",), fractions=(0, 0.5, 1), removal="black"
    )
    return folder, boxes, extractor, settings


def _read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_numbers_equal_the_library_functions_and_a_rerun_computes_nothing(
    tiny_study, tmp_path, monkeypatch, forward_passes
):
    folder, boxes, extractor, settings = tiny_study
    output = tmp_path / "out"
    run_evaluation(folder, boxes, output, extractor=extractor, settings=settings)
    for name in ("per_image.csv", "summary.csv", "tests.csv", "curves.csv"):
        assert (output / name).is_file(), name
    assert (output / "calibration.csv").is_file()
    assert (output / "precision_recall.png").is_file()
    assert (output / "examples_attention.png").is_file()

    # Direct: the maps, ARB p's selection, the masks, selection_scores.
    maps = (
        extractor.set_params(random_state=0)
        .fit()
        .transform(sorted(folder.glob("*.png")))
    )
    kept = BootstrapAttentionRegularizer().fit(maps).transform(maps)
    masks = boxes_to_token_masks(
        [[[0, 0, 16, 24]], [[8, 0, 24, 24]], [[0, 0, 16, 24]], [[8, 0, 24, 24]]],
        image_size=32,
        patch_size=8,
    )
    direct = selection_scores(kept, masks)
    rows = {
        (row["source"], row["method"], row["metric"]): row
        for row in _read_rows(output / "summary.csv")
    }
    for metric in ("precision", "recall", "size"):
        row = rows["attention", "arb_p", metric]
        assert float(row["mean"]) == pytest.approx(np.nanmean(direct[metric]), rel=1e-5)
    assert float(rows["attention", "arb_p", "precision"]["chance"]) == pytest.approx(
        masks.mean(), rel=1e-5
    )
    # Faithfulness has a chance level only at the random selection's sizes
    # (ARB p's, per image); MeanThreshold keeps other sizes: none.
    random_row = rows["attention", "random", "comprehensiveness"]
    assert rows["attention", "arb_p", "comprehensiveness"]["chance"] == random_row[
        "mean"
    ]
    assert rows["attention", "mean_threshold", "size"]["mean"] != rows[
        "attention", "arb_p", "size"
    ]["mean"]
    assert np.isnan(float(rows["attention", "mean_threshold", "sufficiency"]["chance"]))
    per_image = [
        row for row in _read_rows(output / "per_image.csv") if row["method"] == "arb_p"
    ]
    assert [float(row["size"]) for row in per_image] == pytest.approx(direct.size)

    # A rerun reads everything back: no map, no perturbed image is computed.
    def fail(*args, **kwargs):
        raise AssertionError("a rerun computed a perturbation")

    monkeypatch.setattr(_study, "perturbation_curve", fail)
    monkeypatch.setattr(_study, "selection_faithfulness", fail)
    monkeypatch.setattr(_study, "noise_calibration", fail)
    forward_passes.clear()
    before = (output / "summary.csv").read_text()
    run_evaluation(folder, boxes, output, extractor=extractor, settings=settings)
    assert forward_passes == []
    assert (output / "summary.csv").read_text() == before


def test_a_new_removal_revision_computes_the_stored_perturbations_again(
    tiny_study, tmp_path, monkeypatch
):
    """Stored perturbation results are keyed on the removal's revision: after
    the imputation's output changes they are computed again, never read back
    as current."""
    folder, boxes, extractor, settings = tiny_study
    output = tmp_path / "out"
    run_evaluation(folder, boxes, output, extractor=extractor, settings=settings)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return perturbation_curve(*args, **kwargs)

    monkeypatch.setattr(_study, "perturbation_curve", counted)
    run_evaluation(folder, boxes, output, extractor=extractor, settings=settings)
    assert calls == []
    revision = _study.REMOVAL_REVISIONS[settings.removal]
    monkeypatch.setitem(_study.REMOVAL_REVISIONS, settings.removal, revision + 1)
    run_evaluation(folder, boxes, output, extractor=extractor, settings=settings)
    assert calls


def test_faithfulness_every_leaves_the_other_images_unmeasured(tiny_study, tmp_path):
    folder, boxes, extractor, settings = tiny_study
    settings = EvaluationSettings(
        sources=("attention",),
        fractions=(),
        removal="black",
        calibration=False,
        faithfulness_every=2,
    )
    output = tmp_path / "out"
    run_evaluation(folder, boxes, output, extractor=extractor, settings=settings)
    rows = [
        row for row in _read_rows(output / "per_image.csv") if row["method"] == "arb_p"
    ]
    measured = [row["comprehensiveness"] not in ("", "nan") for row in rows]
    assert measured == [True, False, True, False]
    assert not (output / "curves.csv").exists()


@pytest.fixture
def two_real_images(tmp_path, imagenette_paths):
    """Two ImageNet val images with their boxes, in a folder of their own."""
    boxes_file = imagenette_paths[0].parents[1] / "boxes.csv"
    chosen = [p for p in imagenette_paths if p.name.startswith("ILSVRC2012_val")][:2]
    folder = tmp_path / "images"
    lines = [BOX_HEADER]
    for path in chosen:
        key = f"{path.parent.name}/{path.name}"
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / key)
        with open(boxes_file) as handle:
            lines += [line for line in handle if line.startswith(key + ",")]
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("".join(lines))
    return folder, boxes


def test_cli_evaluate_writes_results_and_resumes(
    two_real_images, deit_weights, tmp_path, monkeypatch, capsys
):
    folder, boxes = two_real_images
    output = tmp_path / "out"
    argv = [
        "evaluate",
        str(folder),
        "--boxes",
        str(boxes),
        "--weights",
        str(deit_weights),
        "--source",
        "attention",
        "--methods",
        "top_fraction",  # brings arb_p: two selections, few perturbed images
        "--steps",
        "0",
        "--removal",
        "black",
        "--no-calibration",
        "--output",
        str(output),
        "--quiet",
    ]
    assert main(argv) == 0
    for name in ("per_image.csv", "summary.csv", "tests.csv", "summary.txt"):
        assert (output / name).is_file(), name
    assert "ARB p" in capsys.readouterr().out

    def fail(*args, **kwargs):
        raise AssertionError("a rerun computed a perturbation")

    monkeypatch.setattr(_study, "perturbation_curve", fail)
    assert main(argv) == 0


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("file,x0\na.png,1\n", "lacks the column"),
    ],
)
def test_cli_evaluate_bad_boxes_is_one_line(tmp_path, capsys, content, message):
    boxes = tmp_path / "boxes.csv"
    if content is not None:
        boxes.write_text(content)
    status = main(["evaluate", str(tmp_path), "--boxes", str(boxes)])
    assert status == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("sklearn-arb evaluate: error: --boxes:")
    assert message in error


def test_one_image_with_calibration_fails_before_any_map(
    two_real_images, deit_weights, tmp_path, capsys
):
    folder, boxes = two_real_images
    second = sorted(folder.rglob("*.JPEG"))[1]
    second.unlink()  # one image left: the calibration's pooled null needs two
    output = tmp_path / "out"
    argv = ["evaluate", str(folder), "--boxes", str(boxes), "--weights",
            str(deit_weights), "--output", str(output), "--quiet"]  # fmt: skip
    assert main(argv) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "at least 2 images" in error and "--no-calibration" in error
    assert not list(output.glob("maps_*.npz"))  # failed before computing maps


def test_target_label_makes_cdam_and_the_perturbations_follow_the_labels(
    tiny_study, tmp_path
):
    folder, boxes, extractor, _ = tiny_study
    labels = [1, 3, 0, 4]
    rows = boxes.read_text().splitlines(keepends=True)
    boxes.write_text(
        rows[0]
        + "".join(
            row.replace(",0,224,224,", f",{label},224,224,", 1)
            for row, label in zip(rows[1:], labels, strict=True)
        )
    )
    paths = sorted(folder.glob("*.png"))
    found = {}
    for target in ("predicted", "label"):
        output = tmp_path / target
        run_evaluation(
            folder,
            boxes,
            output,
            extractor=extractor,
            settings=EvaluationSettings(
                sources=("cdam",),
                fractions=(0, 1),
                removal="black",
                calibration=False,
                target=target,
            ),
        )
        assert f"target {target} class" in (output / "summary.txt").read_text()
        records = [np.load(output / "faithfulness" / "cdam" / f"{p.name}.npz")
                   for p in paths]  # fmt: skip
        found[target] = [int(record["target"][0]) for record in records]
        stored = np.load(output / "maps_cdam.npz")["maps"]
        direct = (
            clone(extractor)
            .set_params(source="cdam", target=labels if target == "label" else target,
                        random_state=0)
            .fit()
            .transform(paths)
        )  # fmt: skip
        np.testing.assert_array_equal(stored, np.asarray(direct))
    classifier = as_classifier(AttentionExtractor(extractor.model, image_size=32).fit())
    predictions = classifier.probabilities(classifier.load(paths)).argmax(axis=1)
    assert found["label"] == labels
    assert found["predicted"] == predictions.tolist()
    assert found["predicted"] != labels  # the two runs did follow different classes

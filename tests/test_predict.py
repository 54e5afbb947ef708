"""Stage 7 and 8: predicting on images a user would bring, and the ONNX export."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mnistseg
from mnistseg.checkpoint import load_model
from mnistseg.data import class_names, load_arrays
from mnistseg.picture import ImageInputError, prepare_image, to_grayscale
from mnistseg.predict import WIDE_SHARE, describe_mask, join_pieces, predict
from mnistseg.scenes import make_scenes, touching_offset

NAMES = class_names()


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnistseg", *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def digits(data_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return load_arrays(data_root, train=False)


def dark_on_light(digit: torch.Tensor, size: int) -> Image.Image:
    """An MNIST digit scaled up and inverted: dark ink on white paper."""
    return Image.fromarray(255 - digit.numpy()).resize((size, size), Image.BICUBIC)


def page_of(digits: torch.Tensor, indices: list[int], size: int = 112) -> np.ndarray:
    """Several digits side by side on light grey paper, RGB uint8."""
    page = np.full((size + 80, len(indices) * (size + 20) + 40, 3), 235, np.uint8)
    for position, index in enumerate(indices):
        left = 20 + position * (size + 20)
        ink = np.asarray(dark_on_light(digits[index], size))[..., None]
        page[40 : 40 + size, left : left + size] = np.minimum(page[40 : 40 + size, left : left + size], ink)
    return page


def test_a_scanned_digit_as_jpeg(trained_checkpoint: Path, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    model, _ = load_model(trained_checkpoint)
    images, labels = digits
    buffer = io.BytesIO()
    dark_on_light(images[0], 300).save(buffer, format="JPEG", quality=80)
    photo = Image.open(io.BytesIO(buffer.getvalue()))
    mask = mnistseg.predict(photo, model)  # the package-level API
    assert mask.shape == (300, 300) and mask.dtype == torch.int64
    assert describe_mask(mask, NAMES)["digits"] == [labels[0].item()]  # a 7


def test_several_digits_on_a_page_come_back_left_to_right(
    trained_checkpoint: Path, digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    model, _ = load_model(trained_checkpoint)
    images, labels = digits
    indices = [1, 2, 3, 4, 7]  # 2 1 0 4 9
    summary = describe_mask(predict(page_of(images, indices), model), NAMES)
    assert summary["digits"] == [labels[index].item() for index in indices]
    assert [region["bbox"][0] for region in summary["regions"]] == sorted(r["bbox"][0] for r in summary["regions"])


def test_a_photo_like_colour_image(trained_checkpoint: Path, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    # Blue ink on warm, uneven, noisy paper, as a phone photo would give.
    model, _ = load_model(trained_checkpoint)
    images, labels = digits
    generator = np.random.default_rng(0)
    ink = np.asarray(dark_on_light(images[4], 200), dtype=np.float32) / 255  # 1 paper, 0 ink
    shade = np.linspace(0.85, 1.0, 200)[None, :, None]
    paper = np.array([0.98, 0.92, 0.80])[None, None, :] * shade
    blue = np.array([0.10, 0.15, 0.55])[None, None, :]
    photo = paper * ink[..., None] + blue * (1 - ink[..., None]) + generator.normal(0, 0.02, (200, 200, 3))
    photo = (np.clip(photo, 0, 1) * 255).astype(np.uint8)
    assert describe_mask(predict(photo, model), NAMES)["digits"] == [labels[4].item()]  # a 4


@pytest.mark.parametrize("shape", [(1, 1), (5, 300), (333, 77), (64, 64, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_preparation_accepts_any_size_and_dtype(shape: tuple[int, ...], dtype: type) -> None:
    generator = np.random.default_rng(1)
    high = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    image = (generator.random(shape) * high).astype(dtype)
    prepared = prepare_image(image)
    assert prepared.original_size == shape[:2]
    assert (
        prepared.tensor.dtype == torch.float32
        and prepared.tensor.shape[-2] % 4 == 0
        and prepared.tensor.shape[-1] % 4 == 0
    )
    assert 0.0 <= prepared.tensor.min() and prepared.tensor.max() <= 1.0
    gray = to_grayscale(image)
    assert gray.shape == shape[:2] and gray.dtype == np.float32


def test_a_speck_on_a_large_image_is_not_scaled_past_the_cap() -> None:
    image = np.zeros((1024, 1024), np.uint8)
    image[500:502, 500:502] = 255  # 2 px tall: a digit-height scale would be 20 / 2 = 10x, 10,240 px a side
    # The cap wins: scale = sqrt(cap / 1024**2); 1024 * sqrt(1e6 / 1024**2) = 1000, 1024 * sqrt(4e6 / 1024**2) = 2000.
    assert prepare_image(image, max_scaled_pixels=1_000_000).scaled_size == (1000, 1000)
    assert prepare_image(image).scaled_size == (2000, 2000)  # the default cap, 4 million pixels
    assert prepare_image(image[480:522, 480:522]).scaled_size == (420, 420)  # small enough: 42 px x 10, uncapped


def test_empty_images_are_refused() -> None:
    with pytest.raises(ImageInputError, match="shape"):
        to_grayscale(np.zeros((0, 10)))
    with pytest.raises(ValueError, match="invert"):
        prepare_image(np.zeros((4, 4)), invert="sometimes")


def test_the_cli_reports_bad_files_and_still_processes_the_good_ones(
    trained_checkpoint: Path, digits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path, native_precision: str
) -> None:
    images, labels = digits
    good = tmp_path / "page.png"
    Image.fromarray(page_of(images, [0, 1])).save(good)
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 5000), 255).save(huge)  # 45 million pixels, a tiny file
    out = tmp_path / "out"
    result = run_cli(
        "predict", good, not_image, truncated, huge, tmp_path, "--checkpoint", trained_checkpoint, "--out", out
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"model: {trained_checkpoint} (PyTorch, cpu, {native_precision}, region vote)",
        f"{good}: {labels[0].item()} {labels[1].item()}",
    ]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 4 and "Traceback" not in result.stderr
    for name, reason in (
        (not_image, "not an image"),
        (truncated, "truncated"),
        (huge, "pixels; more than 40,000,000 is refused"),
        (tmp_path, "folder"),
    ):
        assert any(line.startswith(f"mnistseg predict: error: {name}:") and reason in line for line in errors), errors
    summary = json.loads((out / "page.json").read_text())
    assert summary["digits"] == [labels[0].item(), labels[1].item()]
    assert set(summary["areas"]) == set(NAMES[1:]) and all(r["area"] > 0 for r in summary["regions"])
    with Image.open(good) as original, Image.open(out / "page_mask.png") as mask:
        assert mask.size == original.size and mask.mode == "L"  # the mask at the input's full size
        assert set(np.unique(np.asarray(mask))) <= set(range(11))
    with Image.open(out / "page_overlay.png") as overlay:
        overlay.verify()


def test_onnx_export_matches_pytorch_and_serves_predict(
    trained_checkpoint: Path, digits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    from mnistseg.export import export_onnx
    from mnistseg.inference import OnnxModel

    path = export_onnx(trained_checkpoint, tmp_path / "model.onnx")
    model, _ = load_model(trained_checkpoint)
    engine = OnnxModel(path)
    images, labels = digits
    batch = images[:64].unsqueeze(1).float() / 255  # MNIST inputs (64, 1, 28, 28)
    scenes = make_scenes(images[:300], labels[:300], 16, seed=0)[0].unsqueeze(1).float() / 255  # (16, 1, 64, 64)
    page = prepare_image(page_of(images, [5, 6, 8])).tensor  # a page, any size
    for inputs in (batch, scenes, page):
        with torch.inference_mode():
            expected = model(inputs)
        actual = engine(inputs)
        assert actual.shape == expected.shape
        assert (actual - expected).abs().max() < 1e-3
        agreement = (actual.argmax(1) == expected.argmax(1)).float().mean().item()
        assert agreement >= 0.9999, agreement
    assert (
        describe_mask(predict(page_of(images, [1, 2]), engine), NAMES)["digits"]
        == describe_mask(predict(page_of(images, [1, 2]), model), NAMES)["digits"]
    )


def test_the_readme_examples(trained_checkpoint: Path, tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[1] / "docs" / "examples"
    result = run_cli(
        "predict", examples / "page.png", examples / "photo.jpg", "--checkpoint", trained_checkpoint, "--out", tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [f"{examples / 'page.png'}: 6 6 1 7 3 8 0", f"{examples / 'photo.jpg'}: 9"]


def test_one_inference_path_for_predict_serve_and_evaluate(
    trained_checkpoint: Path, data_root: Path, digits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    from mnistseg.evaluate import evaluate, evaluate_checkpoint
    from mnistseg.inference import load_for_inference
    from mnistseg.predict import segment
    from mnistseg.serve import load_segmenter

    # A checkpoint whose recipe asks for test-time shift averaging, as the `best` preset's does.
    folder = tmp_path / "with-tta"
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        (folder / name).write_bytes((trained_checkpoint / name).read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["inference"]["tta"] = True
    (folder / "config.json").write_text(json.dumps(config))

    images, labels = digits
    page = page_of(images, [3, 4, 5])
    Image.fromarray(page).save(tmp_path / "page.png")
    model = load_for_inference(folder)
    assert model.tta and load_for_inference(folder, tta=False).tta is False
    expected = predict(page, model).numpy()
    # The shifts change the network's own pixels (the vote may hide that in the final mask):
    # the comparisons below can fail.
    shifted, plain = segment(page, model).raw_mask, segment(page, load_for_inference(folder, tta=False)).raw_mask
    assert not torch.equal(shifted, plain)

    result = run_cli("predict", tmp_path / "page.png", "--checkpoint", folder, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "test-time shifts" in result.stdout.splitlines()[0]
    summary = json.loads((tmp_path / "out" / "page.json").read_text())
    assert summary["tta"] is True
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "page_mask.png")), expected)

    segmenter = load_segmenter(folder)
    buffer = io.BytesIO()
    Image.fromarray(page).save(buffer, format="PNG")
    answer = segmenter.segment_image(buffer.getvalue())
    assert answer["tta"] is True and segmenter.info()["tta"] is True
    served = np.frombuffer(base64.b64decode(answer["mask"]), dtype=np.uint8).reshape(page.shape[:2])
    assert np.array_equal(served, expected)

    test = evaluate_checkpoint(folder, data_root, torch.device("cpu"), json_path=tmp_path / "test.json",
                               figure_path=tmp_path / "test.png")  # fmt: skip
    assert test["tta"] is True and json.loads((tmp_path / "test.json").read_text())["tta"] is True

    # evaluate's loop, given the page as predict prepared it and the checkpoint's own masks of it as
    # the truth, finds not one pixel off: it makes its masks as predict and serve do (shifts, vote).
    prepared = segment(page, model).prepared.tensor  # (1, 1, h, w)
    truth = model.masks(prepared)
    same = evaluate(model.network, [(prepared, truth)], 11, model.device, model.precision, model.channels_last,
                    model.policy).confusion  # fmt: skip
    assert int(same.sum() - same.trace()) == 0
    plain = evaluate(model.network, [(prepared, truth)], 11, model.device, model.precision, model.channels_last)
    assert int(plain.confusion.sum() - plain.confusion.trace()) > 0  # the network alone differs: the check can fail

    # A checkpoint whose recipe refuses the vote (as scenes do) is not voted by predict either.
    config["inference"]["vote"] = "none"
    (folder / "config.json").write_text(json.dumps(config))
    unvoted = segment(page, load_for_inference(folder))
    assert torch.equal(unvoted.mask, unvoted.raw_mask) and not torch.equal(unvoted.mask, torch.from_numpy(expected))


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def drawn_digits_module():  # the generator of benchmarks/pen_widths.py, imported from its folder
    sys.path.insert(0, str(BENCHMARKS))
    import drawn_digits

    return drawn_digits


def test_digits_drawn_with_any_pen_read_right(tmp_path: Path) -> None:
    from mnistseg.checkpoint import BUNDLED_MODEL
    from mnistseg.inference import load_for_inference

    drawn = drawn_digits_module()
    # Without the model's test-time shifts, 5x quicker: the pen's normalisation is under test here.
    model = load_for_inference(BUNDLED_MODEL, tta=False)
    items = list(drawn.drawn_digits())
    styles = {item.style for item in items}
    if len(styles) == 1:
        print("no TrueType font found (Debian: fonts-liberation); the stroke digits only")
    read_right = [describe_mask(predict(item.image, model), NAMES)["digits"] == [item.digit] for item in items]
    assert sum(read_right) >= 0.95 * len(items), f"{sum(read_right)}/{len(items)}"
    thinnest = [right for item, right in zip(items, read_right, strict=True) if item.pen_share == min(drawn.PEN_SHARES)]
    assert sum(thinnest) >= 0.9 * len(thinnest)

    # The case that broke before: 4, 7 and 1 drawn 270 pixels tall with a 6-pixel pen.
    page = drawn.digits_in_a_row([4, 7, 1], height=270, pen=6)
    page.save(tmp_path / "thin.png")
    result = run_cli("predict", tmp_path / "thin.png", "--checkpoint", BUNDLED_MODEL, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == f"{tmp_path / 'thin.png'}: 4 7 1"
    summary = json.loads((tmp_path / "out" / "thin.json").read_text())
    assert summary["strokes"] == "thickened" and 4 <= summary["stroke_width"] <= 7
    for region in summary["regions"]:  # one class per region, and how its pixels voted
        assert sum(region["votes"].values()) >= region["area"] * 0.9 and 0.5 < region["agreement"] <= 1
    # The mask lies on the strokes as drawn, not on the thickened ones the network saw.
    with Image.open(tmp_path / "out" / "thin_mask.png") as mask, Image.open(tmp_path / "thin.png") as drawing:
        on_mask = np.asarray(mask) > 0
        assert (np.asarray(drawing)[on_mask] < 128).mean() > 0.9
    # The overlay is drawn on the picture as given: dark ink on white paper stays so.
    with Image.open(tmp_path / "out" / "thin_overlay.png") as overlay:
        assert np.asarray(overlay.convert("L")).mean() > 200


def test_specks_are_dropped_and_thick_pens_thinned() -> None:
    from mnistseg.checkpoint import BUNDLED_MODEL
    from mnistseg.inference import load_for_inference
    from mnistseg.predict import segment

    drawn = drawn_digits_module()
    model = load_for_inference(BUNDLED_MODEL)
    seven = np.asarray(drawn.digits_in_a_row([7], height=200, pen=16)).copy()  # white page, dark ink
    seven[20:24, 20:24] = 0  # a speck of 4x4 pixels in a corner
    seven[-30:-28, -40:-37] = 0  # and another
    found = segment(Image.fromarray(seven), model)
    assert found.prepared.specks_removed == 2
    assert describe_mask(found.mask, NAMES)["digits"] == [7]
    assert set(found.mask.unique().tolist()) == {0, 8}  # no stray class anywhere

    thick = drawn.digits_in_a_row([3], height=200, pen=60)  # a marker: 30% of the height
    found = segment(thick, model)
    assert found.prepared.stroke_change == "thinned"
    assert describe_mask(found.mask, NAMES)["digits"] == [3]


def test_stroke_width_is_measured_from_the_distance_transform() -> None:
    from mnistseg.picture import stroke_width

    bars = np.zeros((40, 40), dtype=bool)
    bars[5:35, 5:10] = True  # a bar 5 pixels wide
    bars[5:35, 20:27] = True  # and one 7 wide
    assert stroke_width(bars) == pytest.approx(5.0, abs=1.0)
    assert stroke_width(np.zeros((5, 5), dtype=bool)) == 0.0


def test_thick_strokes_thin_to_centre_lines_in_one_piece() -> None:
    from scipy import ndimage

    from mnistseg.picture import centre_lines, normalise_strokes

    bar = np.zeros((20, 30), dtype=bool)
    bar[5:12, 3:25] = True  # 7 rows thick: the centre line is row 8
    lines = centre_lines(bar)
    assert lines.any(axis=1).nonzero()[0].tolist() == [8]
    assert (lines <= bar).all()
    # A ring drawn like a bold serif 0: sides 9 pixels thick, top and bottom 2. Shaving 3 pixels
    # off every edge would leave the two sides alone, a "()" read as two 1s; the centre lines
    # keep the ring closed, and the pen redrawn along them is one piece with a hole.
    rows, columns = np.mgrid[:60, :50]
    ring = ((rows - 30) / 26) ** 2 + ((columns - 25) / 20) ** 2 <= 1
    ring &= ~(((rows - 30) / 24) ** 2 + ((columns - 25) / 11) ** 2 <= 1)
    assert ndimage.label(centre_lines(ring), structure=np.ones((3, 3)))[1] == 1
    thinned, width, change = normalise_strokes(ring.astype(np.float32), target=3.0)
    assert change == "thinned" and width > 1.6 * 3.0
    assert ndimage.label(thinned > 0.5, structure=np.ones((3, 3)))[1] == 1
    assert ndimage.label(thinned <= 0.5)[1] == 2  # the paper outside and the hole inside
    # The same ring photographed 8 times larger is thinned at a third of its size (where
    # MNIST's pen of 24 pixels is THINNING_PEN = 8 wide) and comes back at its own size: one
    # piece with a hole, its pen 24 pixels wide give or take the soft edges.
    large = np.kron(ring, np.ones((8, 8), dtype=bool))
    thinned, width, change = normalise_strokes(large.astype(np.float32), target=24.0)
    assert change == "thinned" and thinned.shape == large.shape
    assert ndimage.label(thinned > 0.5, structure=np.ones((3, 3)))[1] == 1
    assert ndimage.label(thinned <= 0.5)[1] == 2
    middle_row = thinned[30 * 8] > 0.5  # crosses both sides of the ring
    runs = [len(run) for run in np.split(middle_row, np.flatnonzero(np.diff(middle_row)) + 1) if run[0]]
    assert runs == [pytest.approx(24, abs=4)] * 2


def test_describe_mask_reads_two_touching_classes_as_two_digits() -> None:
    # A 2 (class 3) in columns 0-5 touching a 7 (class 8) in columns 6-11, rows 0-9: one region
    # of foreground but two of a class each; and a 1-pixel speck of a 5 (class 6), under 8% of
    # the largest region (60 pixels: 4.8), which is not read as a digit.
    mask = torch.zeros(12, 14, dtype=torch.int64)
    mask[:10, :6], mask[:10, 6:12], mask[11, 13] = 3, 8, 6
    summary = describe_mask(mask, NAMES)
    assert summary["digits"] == [2, 7]
    assert [region["area"] for region in summary["regions"]] == [60, 60]
    assert summary["areas"]["2"] == 60 and summary["areas"]["5"] == 1


def test_describe_mask_reads_the_pieces_of_one_digit_as_one() -> None:
    # A 5 (class 6) whose top bar (rows 2-4, columns 10-19: 30 px) lies 2 rows above its body
    # (rows 7-19, columns 8-15: 104 px); the tallest part is 13 rows, so up to 0.2 x 13 = 2.6 rows
    # may lie between pieces: one 5 of 134 px. Beside it, a 5 in columns 22-27 shares no column
    # with either: a second 5. A 3 (class 4) in two halves 4 rows apart (over 2.6): two 3s.
    mask = torch.zeros(40, 40, dtype=torch.int64)
    mask[2:5, 10:20], mask[7:20, 8:16], mask[7:20, 22:28] = 6, 6, 6
    mask[22:28, 30:36], mask[32:38, 30:36] = 4, 4
    summary = describe_mask(mask, NAMES)
    assert summary["digits"] == [5, 5, 3, 3]
    assert [region["area"] for region in summary["regions"]] == [134, 78, 36, 36]
    assert summary["regions"][0]["bbox"] == [8, 2, 20, 20]
    assert join_pieces(np.array([[1, 0, 2]]), np.array([0, 3, 3])).tolist() == [0, 1, 2]  # side by side: apart
    # A 1-pixel part just under a 20-pixel one, in its columns: a piece, unless under the share (1/20 < 0.08).
    speck_under = np.array([[1] * 10, [1] * 10, [0] * 9 + [2]])
    assert join_pieces(speck_under, np.array([0, 3, 3])).tolist() == [0, 1, 1]
    assert join_pieces(speck_under, np.array([0, 3, 3]), min_share=0.08).tolist() == [0, 1, 2]


def test_describe_mask_parts_a_patch_where_split_says_two_digits() -> None:
    # One patch of 5s (class 6): two blocks of rows 0-9 x 10 columns (0-9 and 11-20) joined by a
    # 2-row bridge in column 10 (100 + 2 + 100 = 202 px), and a 1-pixel speck of a 5 at (11, 22),
    # under 8% of the largest: never asked. split says the patch parts at column 11.
    mask = torch.zeros(12, 23, dtype=torch.int64)
    mask[:10, :10], mask[4:6, 10], mask[:10, 11:21], mask[11, 22] = 6, 6, 6, 6
    asked: list[tuple[int, int]] = []

    def split(region: np.ndarray, class_id: int) -> int | None:
        asked.append((int(region.sum()), class_id))
        return 11

    summary = describe_mask(mask, NAMES, split=split)
    assert asked == [(202, 6)]
    assert summary["digits"] == [5, 5]
    assert [region["bbox"] for region in summary["regions"]] == [[0, 0, 11, 10], [11, 0, 21, 10]]
    assert [region["area"] for region in summary["regions"]] == [102, 100]
    assert describe_mask(mask, NAMES, split=lambda region, class_id: None)["digits"] == [5]
    assert describe_mask(mask, NAMES)["digits"] == [5]  # without split: the mask alone, one patch one digit


def test_two_touching_fives_read_as_two(tmp_path: Path, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Two 5s whose ink touches are one patch of one class; predict and the web page read them as 5 5."""
    from mnistseg.checkpoint import BUNDLED_MODEL
    from mnistseg.inference import load_for_inference
    from mnistseg.predict import read_segmentation, segment
    from mnistseg.serve import Segmenter

    images, labels = digits
    first, second = (images[index].numpy().astype(np.float32) / 255 for index in (23, 45))
    assert labels[23] == labels[45] == 5
    offset = touching_offset(first > 0.2, second > 0.2) - 1  # touching, then 1 pixel more
    row = np.zeros((28, offset + 28), dtype=np.float32)
    row[:, :28] = first
    row[:, offset:] = np.maximum(row[:, offset:], second)
    Image.fromarray(np.uint8(255 - np.pad(row, 8) * 255)).save(tmp_path / "fives.png")  # dark on white

    model = load_for_inference(BUNDLED_MODEL)
    found = segment(Image.open(tmp_path / "fives.png"), model)
    assert describe_mask(found.mask, NAMES)["digits"] == [5]  # one patch of the class
    wide = found.mask.numpy() > 0
    columns, rows = np.flatnonzero(wide.any(axis=0)), np.flatnonzero(wide.any(axis=1))
    assert np.ptp(columns) > WIDE_SHARE * np.ptp(rows)
    summary = read_segmentation(found, model, NAMES)
    assert summary["digits"] == [5, 5]
    assert summary["regions"][0]["bbox"][2] == summary["regions"][1]["bbox"][0]  # parted at one column

    result = run_cli("predict", tmp_path / "fives.png", "--checkpoint", BUNDLED_MODEL, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == f"{tmp_path / 'fives.png'}: 5 5"
    page = Segmenter(model, tuple(NAMES), "bundled").segment_image((tmp_path / "fives.png").read_bytes())
    assert page["digits"] == [5, 5] and page["regions"] == summary["regions"]

"""Datasets: layouts, label mapping, errors, and the synthetic street generator."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_datasets import (
    H,
    W,
    label_values,
    make_ade20k,
    make_camvid,
    make_cityscapes,
    make_mapillary,
    write_image,
    write_label,
)
from PIL import Image

from conftest import results_script
from softseg.data import (
    ADE20K,
    CAMVID_INFO,
    CITYSCAPES_INFO,
    DATASETS,
    CamVid,
    Cityscapes,
    DatasetInfo,
    FolderDataset,
    LabelMapping,
    MapillaryVistas,
    SegmentationFolder,
    SyntheticStreets,
    build_dataset,
    load_image,
    load_label,
    parse_split,
    select_frames,
)
from softseg.data.synthetic import POLE, SIGN

REAL_CAMVID = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid"


def check_item(item, size=(H, W)):
    image, label, name = item
    assert image.dtype == torch.uint8 and image.shape == (3, *size)
    assert label.dtype == torch.uint8 and label.shape == size
    assert isinstance(name, str)
    return image, label, name


# --------------------------------------------------------------------------- DatasetInfo
def test_info_is_frozen_and_consistent():
    assert CAMVID_INFO.num_classes == len(CAMVID_INFO.classes) == len(CAMVID_INFO.colors) == 11
    assert CAMVID_INFO.ignore_index == 255
    with pytest.raises(dataclasses.FrozenInstanceError):
        CAMVID_INFO.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="2 classes but 1 colors"):
        DatasetInfo("bad", ("a", "b"), ((0, 0, 0),))
    with pytest.raises(ValueError, match="ignore_index 1"):
        DatasetInfo("bad", ("a", "b"), ((0, 0, 0), (1, 1, 1)), ignore_index=1)


# --------------------------------------------------------------------------- CamVid
def test_camvid_layout_pairs_and_mapping(tmp_path):
    make_camvid(tmp_path)
    train, val = CamVid(tmp_path, "train"), CamVid(tmp_path, "val")
    assert (len(train), len(val)) == (3, 2)
    assert train.info.num_classes == 11 and train.info.classes[2] == "pole"
    for (image_path, label_path), i in zip(train.pairs, range(3), strict=True):
        assert image_path.name == label_path.name and label_path.parent.name == "trainannot"
        _, label, name = check_item(train[i])
        assert name == image_path.stem == f"0001TP_train_{i:03d}"
    expected = label_values((0, 3, 10, 11)).astype(np.int64)
    expected[expected == 11] = 255  # void
    assert np.array_equal(train[0][1].numpy(), expected)


def test_camvid_missing_split_lists_present(tmp_path):
    make_camvid(tmp_path)
    with pytest.raises(ValueError, match=r"'test'.*splits present: 'train', 'val'"):
        CamVid(tmp_path, "test")


def test_camvid_reads_its_compact_jpeg_copy(tmp_path):
    original = make_camvid(tmp_path / "png", sequences=("0001TP", "0006R0"))
    written = results_script("pack_camvid").pack(
        original, tmp_path / "jpeg", ("train", "val"), quality=95
    )
    assert written > 0
    for split in ("train", "val"):
        png, jpeg = CamVid(original, split), CamVid(tmp_path / "jpeg", split)
        assert [p.suffix for p, _ in jpeg.pairs] == [".jpg"] * len(png)
        assert [p.stem for p, _ in jpeg.pairs] == [p.stem for p, _ in png.pairs]
        for i in range(len(png)):
            (x, y, name), (xj, yj, name_j) = png[i], jpeg[i]
            assert name == name_j and torch.equal(y, yj)  # labels copied byte for byte
            assert (x.float() - xj.float()).abs().mean() < 8  # JPEG at quality 95: close, not equal
    # the sequence filter of the cross-sequence folds works on the copy too
    assert len(build_dataset("camvid", tmp_path / "jpeg", "train+val:0006R0")) == 5


def test_camvid_refuses_a_split_with_png_and_jpeg_frames(tmp_path):
    make_camvid(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "extra.jpg")
    with pytest.raises(ValueError, match=r"train holds both PNG \(3\) and JPEG \(1\) frames"):
        CamVid(tmp_path, "train")


def test_camvid_real_data():
    if not REAL_CAMVID.is_dir():
        pytest.skip(f"real CamVid not found at {REAL_CAMVID}")
    train, val = CamVid(REAL_CAMVID, "train"), CamVid(REAL_CAMVID, "val")
    assert (len(train), len(val)) == (367, 101)
    image, label, _ = check_item(train[0], size=(360, 480))
    values = set(torch.unique(label).tolist())
    assert values <= set(range(11)) | {255}


# --------------------------------------------------------------------------- Cityscapes
def test_cityscapes_label_ids_to_train_ids(tmp_path):
    make_cityscapes(tmp_path, values=(0, 7, 26, 33, 1, 24))
    ds = Cityscapes(tmp_path, "train")
    assert len(ds) == 3
    assert ds.info.num_classes == 19 == len(ds.info.colors)
    assert ds.info.classes[13] == "car" and CITYSCAPES_INFO.classes[0] == "road"
    image_path, label_path = ds.pairs[0]
    assert image_path.parent.name == label_path.parent.name == "aachen"
    _, label, name = check_item(ds[0])
    assert name == "aachen_000000_000019_leftImg8bit"
    assert label.flatten()[:6].tolist() == [255, 0, 13, 18, 255, 11]


def test_cityscapes_undefined_label_id_is_an_error(tmp_path):
    make_cityscapes(tmp_path, values=(7, 40))
    with pytest.raises(ValueError, match=r"aachen_000000_000019_gtFine_labelIds\.png.*\b40\b"):
        Cityscapes(tmp_path)[0]


# --------------------------------------------------------------------------- ADE20K
@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize(("split", "n"), [("train", 3), ("training", 3), ("val", 2)])
def test_ade20k_roots_aliases_and_mapping(tmp_path, nested, split, n):
    make_ade20k(tmp_path)
    root = tmp_path if nested else tmp_path / "ADEChallengeData2016"
    ds = ADE20K(root, split)
    assert len(ds) == n and ds.info.num_classes == 150 == len(set(ds.info.classes))
    assert ds.info.classes[:5] == ("wall", "building", "sky", "floor", "tree")
    assert ds.pairs[0][0].suffix == ".jpg"
    _, label, name = check_item(ds[0])
    assert name == ds.pairs[0][0].stem
    assert label.flatten()[:3].tolist() == [255, 0, 149]


def test_ade20k_value_above_150_is_an_error(tmp_path):
    make_ade20k(tmp_path, values=(0, 151))
    with pytest.raises(ValueError, match=r"ADE_train_00000000\.png.*151.*0\.\.150"):
        ADE20K(tmp_path)[0]


def test_ade20k_bad_root_explains(tmp_path):
    with pytest.raises(FileNotFoundError, match="ADEChallengeData2016"):
        ADE20K(tmp_path)


# --------------------------------------------------------------------------- Mapillary
def test_mapillary_with_config(tmp_path):
    make_mapillary(tmp_path)
    ds = MapillaryVistas(tmp_path, "train")
    assert len(ds) == 2 and len(MapillaryVistas(tmp_path, "val")) == 3
    assert ds.info.num_classes == 65 and ds.info.classes[3] == "Label 3"
    assert ds.info.colors[2] == (2, 4, 6)
    _, label, _ = check_item(ds[0])
    assert label.flatten()[:3].tolist() == [0, 64, 255]


def test_mapillary_without_config_and_bad_value(tmp_path):
    make_mapillary(tmp_path, with_config=False, values=(0, 66))
    ds = MapillaryVistas(tmp_path, "training")
    assert ds.info.classes[0] == "class_0" and ds.info.num_classes == 65
    assert len(set(ds.info.colors)) == 65  # generated colours are distinct
    with pytest.raises(ValueError, match=r"imgt0\.png.*\b66\b"):
        ds[0]


def test_mapillary_missing_split(tmp_path):
    make_mapillary(tmp_path)
    with pytest.raises(ValueError, match=r"'testing'.*'training', 'validation'"):
        MapillaryVistas(tmp_path, "testing")


# --------------------------------------------------------------------------- generic folder
def make_folder(root: Path, stems=("a", "b", "c"), suffixes=(".png", ".jpg", ".bmp")) -> Path:
    for i, (stem, suffix) in enumerate(zip(stems, suffixes, strict=False)):
        write_image(root / "images" / f"{stem}{suffix}", seed=i)
        write_label(root / "masks" / f"{stem}.png", (0, 1, 2, 255))
    return root


def test_folder_yaml_list(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "classes.yaml").write_text("- background\n- cat\n- dog\n")
    ds = FolderDataset(tmp_path, "train")
    assert len(ds) == 3 and ds.info.classes == ("background", "cat", "dog")
    assert [check_item(ds[i])[2] for i in range(3)] == ["a", "b", "c"]
    assert ds[1][1].flatten()[:4].tolist() == [0, 1, 2, 255]
    assert len(FolderDataset(tmp_path, "val")) == 3  # no split folders: one set for every split


def test_folder_json_mapping_remaps_ignore(tmp_path):
    make_folder(tmp_path)
    for stem in "abc":
        write_label(tmp_path / "masks" / f"{stem}.png", (0, 1, 9))
    spec = {"classes": ["x", "y"], "colors": [[1, 2, 3], [4, 5, 6]], "ignore_index": 9}
    (tmp_path / "classes.json").write_text(json.dumps(spec))
    ds = FolderDataset(tmp_path)
    assert ds.info.colors == ((1, 2, 3), (4, 5, 6)) and ds.info.ignore_index == 255
    assert ds[0][1].flatten()[:3].tolist() == [0, 1, 255]


def test_folder_split_subfolders(tmp_path):
    make_folder(tmp_path / "train", stems=("t1", "t2"))
    make_folder(tmp_path / "val", stems=("v1",))
    (tmp_path / "classes.yaml").write_text("classes: [a, b, c]\n")
    assert [n for _, _, n in FolderDataset(tmp_path, "train")] == ["t1", "t2"]
    assert [n for _, _, n in FolderDataset(tmp_path, "val")] == ["v1"]


def test_folder_missing_mask_names_stem(tmp_path):
    make_folder(tmp_path)
    write_image(tmp_path / "images" / "lonely.jpeg")
    (tmp_path / "classes.yaml").write_text("[a, b, c]")
    with pytest.raises(FileNotFoundError, match=r"lonely.*lonely\.png"):
        FolderDataset(tmp_path)


def test_folder_value_outside_classes(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "classes.yaml").write_text("[a, b]")  # masks hold 2: one class too many
    with pytest.raises(ValueError, match=r"a\.png.*value\(s\) 2 .*0\.\.1, 255"):
        FolderDataset(tmp_path)[0]


def test_folder_without_class_list_explains(tmp_path):
    make_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="classes.yaml"):
        FolderDataset(tmp_path)


# --------------------------------------------------------------------------- errors on access
@pytest.fixture
def camvid(tmp_path):
    return make_camvid(tmp_path, splits=(("train", 2),))


def test_missing_file(tmp_path):
    ds = SegmentationFolder([(tmp_path / "nope.png", tmp_path / "nope_L.png")], CAMVID_INFO)
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        ds[0]


def test_unreadable_file(camvid):
    broken = camvid / "train" / "0001TP_train_001.png"
    broken.write_bytes(b"this is not a PNG")
    with pytest.raises(ValueError, match=r"cannot read .*0001TP_train_001\.png"):
        CamVid(camvid)[1]


def test_size_mismatch_names_both_files_and_sizes(camvid):
    write_label(camvid / "trainannot" / "0001TP_train_000.png", (0,), size=(8, 10))
    pattern = r"train/0001TP_train_000\.png is 12x8.*annot/0001TP_train_000\.png is 10x8"
    with pytest.raises(ValueError, match=pattern):
        CamVid(camvid)[0]


def test_value_outside_classes(camvid):
    write_label(camvid / "trainannot" / "0001TP_train_000.png", (0, 12, 200))
    with pytest.raises(ValueError, match=r"0001TP_train_000\.png.*12, 200.*0\.\.11, 255"):
        CamVid(camvid)[0]


def test_unmapped_labels_are_range_checked(tmp_path):
    info = DatasetInfo("toy", ("a", "b", "c"), ((0, 0, 0),) * 3)
    write_image(tmp_path / "p.png")
    write_label(tmp_path / "p_L.png", (0, 2, 255))
    write_label(tmp_path / "q_L.png", (1, 7, 255))
    good = SegmentationFolder([(tmp_path / "p.png", tmp_path / "p_L.png")], info)
    np.testing.assert_array_equal(good[0][1].numpy(), label_values((0, 2, 255)))
    bad = SegmentationFolder([(tmp_path / "p.png", tmp_path / "q_L.png")], info)
    with pytest.raises(
        ValueError, match=r"q_L\.png \('toy', 3 classes\).*values \[7\] outside \[0, 3\)"
    ):
        bad[0]


def test_label_not_single_channel(camvid):
    path = camvid / "trainannot" / "0001TP_train_001.png"
    Image.new("RGB", (W, H)).save(path)
    with pytest.raises(ValueError, match=r"0001TP_train_001\.png.*'RGB'.*single-channel"):
        CamVid(camvid)[1]


def test_missing_label_file(camvid):
    (camvid / "trainannot" / "0001TP_train_001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"trainannot/0001TP_train_001\.png"):
        CamVid(camvid)


def test_empty_split_names_directory_and_pattern(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "trainannot").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"\*\.png.*{re.escape(str(tmp_path / 'train'))}"):
        CamVid(tmp_path)
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"\*/\*_leftImg8bit\.png.*leftImg8bit/val"):
        Cityscapes(tmp_path, "val")


# --------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_load_image_converts_any_mode_to_rgb(tmp_path, mode):
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    Image.new(mode, (W, H)).save(path)
    image = load_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, H, W)


def test_load_label_palette_and_raw_lut(tmp_path):
    pal = Image.fromarray(label_values((0, 1, 2))).convert("P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    pal.save(tmp_path / "p.png")
    raw = load_label(tmp_path / "p.png")
    assert raw.dtype == torch.uint8 and raw.flatten()[:3].tolist() == [0, 1, 2]
    # A bare 256-entry uint8 array works as a mapping too.
    write_image(tmp_path / "p.jpg")
    lut = np.full(256, 255, np.uint8)
    lut[1] = 0
    ds = SegmentationFolder([(tmp_path / "p.jpg", tmp_path / "p.png")], CAMVID_INFO, lut)
    assert ds[0][1].flatten()[:3].tolist() == [255, 0, 255]
    assert isinstance(ds.mapping, LabelMapping)
    lut[2] = 40  # no class 40 in CamVid
    with pytest.raises(ValueError, match=r"p\.png: raw value\(s\) 2 map to train id\(s\) 40"):
        SegmentationFolder([(tmp_path / "p.jpg", tmp_path / "p.png")], CAMVID_INFO, lut)[0]


# --------------------------------------------------------------------------- by name
def test_registry_and_build_dataset(tmp_path):
    assert set(DATASETS) == {"camvid", "cityscapes", "ade20k", "mapillary", "folder", "synthetic"}
    make_camvid(tmp_path)
    assert len(build_dataset("camvid", tmp_path, "val")) == 2
    with pytest.raises(ValueError, match=r"'kitti'.*ade20k, camvid, cityscapes"):
        build_dataset("kitti", tmp_path)
    with pytest.raises(ValueError, match="root="):
        build_dataset("camvid")


def test_build_synthetic_splits():
    train, val = build_dataset("synthetic"), build_dataset("synthetic", split="val")
    assert (len(train), len(val)) == (64, 16) and train.seed != val.seed
    small = build_dataset("synthetic", root="ignored", num_images=3, size=(32, 48), seed=7)
    assert len(small) == 3 and small[0][0].shape == (3, 32, 48) and small.seed == 7
    assert small.info.name == "synthetic" and small.info.classes == CAMVID_INFO.classes
    with pytest.raises(ValueError, match="unknown synthetic split"):
        build_dataset("synthetic", split="holdout")


# --------------------------------------------------------------------------- split expressions
@pytest.mark.parametrize(
    ("expression", "parts", "prefixes"),
    [
        ("val", ["val"], []),
        ("train+val", ["train", "val"], []),
        ("val+train", ["val", "train"], []),
        (" train + val : 0001TP , 0006R0 ", ["train", "val"], ["0001TP", "0006R0"]),
    ],
)
def test_parse_split(expression, parts, prefixes):
    assert parse_split(expression) == (parts, prefixes)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "bad split ''"),
        ("train+", r"SPLIT\[\+SPLIT"),
        ("+val", "bad split"),
        ("train:", "bad split 'train:'"),
        (":0001TP", "bad split"),
        ("train:0001TP,,0006R0", "bad split"),
        ("train+val+train", "'train' named more than once"),
    ],
)
def test_parse_split_refuses_bad_expressions(expression, message):
    with pytest.raises(ValueError, match=message):
        parse_split(expression)


def test_parse_split_needs_a_string():
    with pytest.raises(TypeError, match="split must be a string"):
        parse_split(["train", "val"])


@pytest.fixture
def sequences(tmp_path):
    """CamVid-like: train has 2 frames and val 1 frame of each of three driving sequences."""
    seqs = ("0001TP", "0006R0", "0016E5")
    return make_camvid(tmp_path, splits=(("train", 2), ("val", 1)), sequences=seqs)


def names(ds) -> list[str]:
    return [image.stem for image, _ in ds.pairs]


def test_split_union_keeps_split_order(sequences):
    train, val = names(build_dataset("camvid", sequences, "train")), names(CamVid(sequences, "val"))
    joined = build_dataset("camvid", sequences, "train+val")
    assert names(joined) == train + val and joined.split == "train+val"
    assert names(build_dataset("camvid", sequences, "val+train")) == val + train
    assert isinstance(joined, SegmentationFolder) and joined.info is CAMVID_INFO
    _, label, name = check_item(joined[len(train)])  # the first val frame, mapped like CamVid's
    assert name == val[0] and 255 in label.unique().tolist() and 11 not in label.unique().tolist()


def test_split_prefix_filter_keeps_matching_frames_in_order(sequences):
    held_out = build_dataset("camvid", sequences, "train+val:0016E5")
    assert names(held_out) == ["0016E5_train_000", "0016E5_train_001", "0016E5_val_000"]
    two = build_dataset("camvid", sequences, "train+val:0006R0,0001TP")
    # frames keep the splits' order; the order of the prefixes does not matter
    assert names(two) == [
        "0001TP_train_000", "0001TP_train_001", "0006R0_train_000", "0006R0_train_001",
        "0001TP_val_000", "0006R0_val_000",
    ]  # fmt: skip
    assert names(build_dataset("camvid", sequences, "val:0001")) == ["0001TP_val_000"]


def test_split_unknown_prefix_is_named(sequences):
    # one typo ("O" for "0") must not silently drop a whole sequence from the frames kept
    with pytest.raises(ValueError, match=r"no image name starts with '0006RO'.*names look like"):
        build_dataset("camvid", sequences, "train:0001TP,0006RO")


def test_split_expression_with_a_missing_split(sequences):
    with pytest.raises(ValueError, match=r"split 'test' not found.*'train', 'val'"):
        build_dataset("camvid", sequences, "train+test")


def test_select_frames_needs_datasets_read_from_disk():
    with pytest.raises(ValueError, match="read from disk"):
        build_dataset("synthetic", split="train+val")
    with pytest.raises(ValueError, match="read from disk"):
        select_frames([], [], "train")


# --------------------------------------------------------------------------- synthetic
@pytest.fixture(scope="module")
def synth():
    ds = SyntheticStreets(6, size=(128, 256), seed=3)
    return ds, [ds[i] for i in range(len(ds))]


def test_synthetic_is_deterministic_and_varied(synth):
    ds, items = synth
    again = SyntheticStreets(6, size=(128, 256), seed=3)[2]
    assert torch.equal(items[2][0], again[0]) and torch.equal(items[2][1], again[1])
    assert items[2][2] == again[2] == "synthetic_s3_00002"
    assert not torch.equal(items[0][1], items[1][1])
    other = SyntheticStreets(6, size=(128, 256), seed=4)[2]
    assert not torch.equal(items[2][1], other[1])
    with pytest.raises(IndexError):
        ds[6]


def test_synthetic_labels_and_thin_poles(synth):
    _, items = synth
    void_seen = False
    for image, label, _ in items:
        check_item((image, label, ""), size=(128, 256))
        values = set(torch.unique(label).tolist())
        assert values <= set(range(11)) | {255}
        void_seen |= 255 in values
        pole = (label == POLE).numpy()
        assert pole.any()
        # Thin: along some row the pole occupies a run of 1-3 pixels, and that run is tall.
        padded = np.pad(pole, ((0, 0), (1, 1))).astype(np.int8)
        starts = np.argwhere(np.diff(padded, axis=1) == 1)
        ends = np.argwhere(np.diff(padded, axis=1) == -1)
        widths = ends[:, 1] - starts[:, 1]
        assert widths.min() <= 3
        assert pole.sum(axis=0).max() >= 10  # a column holding a long vertical pole run
    assert void_seen
    assert any((label == SIGN).any() for _, label, _ in items)


def test_synthetic_colour_predicts_class(synth):
    # Nearest class-mean colour, fitted on some scenes and tested on another, must beat chance
    # by far: the image really is a (noisy) function of the label.
    _, items = synth
    fit = [(img.reshape(3, -1).T.float(), lb.flatten()) for img, lb, _ in items[:5]]
    pixels, labels = torch.cat([p for p, _ in fit]), torch.cat([lb for _, lb in fit])
    present = [c for c in range(11) if (labels == c).any()]
    means = torch.stack([pixels[labels == c].mean(0) for c in present])
    img, lb, _ = items[5]
    test_pixels, test_labels = img.reshape(3, -1).T.float(), lb.flatten()
    keep = test_labels != 255
    pred = torch.tensor(present)[torch.cdist(test_pixels[keep], means).argmin(1)]
    assert (pred == test_labels[keep]).float().mean() > 0.6


def test_synthetic_collates_in_a_dataloader():
    loader = torch.utils.data.DataLoader(SyntheticStreets(4, size=(32, 64)), batch_size=2)
    images, labels, names = next(iter(loader))
    assert images.shape == (2, 3, 32, 64) and labels.shape == (2, 32, 64) and len(names) == 2

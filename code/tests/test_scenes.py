"""dlcv.scenes: the generated COCO-format scenes are reproducible, read back unchanged by
pycocotools and by read_coco (the loader a real COCO folder goes through), self-consistent
(box = the mask's extent, keypoints on the mask), verified by checksum, and malformed
annotations are named in the error."""
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from dlcv import scenes


@pytest.fixture(scope="module")
def val_on_disk(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    images, coco = scenes.generate_split("val")
    ann = scenes.write_coco(folder, images, coco, "val")
    return folder, ann, images, coco


def test_generation_is_reproducible_and_matches_the_checksum(val_on_disk):
    _, _, images, coco = val_on_disk
    assert scenes._digest(images, coco) == scenes.SHA256["val"]
    assert images.shape == (scenes.SPLITS["val"], 128, 128, 3) and images.dtype == np.uint8
    assert {a["category_id"] for a in coco["annotations"]} == {c["id"] for c in scenes.CATEGORIES}


def test_pycocotools_reads_the_json_unchanged(val_on_disk, capsys):
    _, ann, _, coco = val_on_disk
    api = COCO(str(ann))
    assert len(api.getImgIds()) == len(coco["images"])
    a = api.loadAnns(api.getAnnIds(imgIds=[1]))[0]
    mask = api.annToMask(a)
    assert mask.sum() == a["area"]


def test_read_coco_is_self_consistent(val_on_disk):
    folder, ann, images, coco = val_on_disk
    s = scenes.read_coco(folder / "val", ann)
    assert len(s) == len(images) and torch.equal(s.images[0], torch.from_numpy(images[0]).permute(2, 0, 1))
    for t in s.targets[:50]:
        for box, mask, kps in zip(t["boxes"], t["masks"], t["keypoints"]):
            rows, cols = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [cols.min().item(), rows.min().item(),
                                    cols.max().item() + 1, rows.max().item() + 1]
            assert kps.shape == (4, 3) and (kps[:, 2] == 2).all()
            on_mask = mask[(kps[:, 1] - 0.5).long(), (kps[:, 0] - 0.5).long()]
            assert on_mask.all()
            assert kps[0, 1] - 0.5 == rows.min() and kps[1, 1] - 0.5 == rows.max()
            assert kps[2, 0] - 0.5 == cols.min() and kps[3, 0] - 0.5 == cols.max()
    masks = torch.cat([t["masks"] for t in s.targets[:50]])
    assert masks.any(dim=(1, 2)).all()


def test_objects_of_the_test_split_come_from_other_images():
    train_pools, test_pools = scenes._object_pools("train"), scenes._object_pools("test")
    for cat in train_pools:
        a = {x.tobytes() for x in train_pools[cat][:300]}
        assert not a & {x.tobytes() for x in test_pools[cat]}


def corrupt(folder, ann, tmp_path, edit):
    raw = json.loads(ann.read_text())
    edit(raw)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    return scenes.read_coco(folder / "val", bad)


def test_malformed_annotations_are_named(val_on_disk, tmp_path):
    folder, ann, _, _ = val_on_disk

    def negative_width(raw):
        raw["annotations"][3]["bbox"][2] = -4

    def unknown_category(raw):
        raw["annotations"][5]["category_id"] = 99

    def wrong_mask_size(raw):
        raw["annotations"][7]["segmentation"]["size"] = [64, 64]

    for edit, words in [(negative_width, "annotation 4 .*width or height <= 0"),
                        (unknown_category, "annotation 6 .*unknown category_id 99"),
                        (wrong_mask_size, "annotation 8 .*mask size")]:
        with pytest.raises(ValueError, match=words):
            corrupt(folder, ann, tmp_path, edit)
    with pytest.raises(ValueError, match="not COCO-format"):
        corrupt(folder, ann, tmp_path, lambda raw: raw.pop("annotations"))


def test_load_scenes_caches_verifies_and_regenerates(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCV_DATA", str(tmp_path))
    first = scenes.load_scenes("val")
    assert scenes._cached_digest("val") == scenes.SHA256["val"]
    png = scenes.scenes_dir() / "val" / "000001.png"
    from PIL import Image
    pixels = np.asarray(Image.open(png)).copy()
    pixels[0, 0] ^= 255
    Image.fromarray(pixels).save(png)
    with pytest.warns(UserWarning, match="do not match their checksum"):
        again = scenes.load_scenes("val")
    assert torch.equal(first.images, again.images)
    with pytest.raises(ValueError, match="unknown split"):
        scenes.load_scenes("validation")

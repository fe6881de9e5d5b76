"""Scenes for detection and segmentation (Chapters 13 and 14), in COCO format, built offline.

No detection dataset can be downloaded where the book is built, so the package makes one from
real images it already has, deterministically from a seed: Fashion-MNIST garments and MNIST
digits, scaled and pasted (possibly overlapping) onto crops of the scikit-image photographs.
Each object's instance mask comes from its own pixels (what is left visible after the objects
pasted over it), its box from the mask, its category from its label, and four keypoints from
the mask's extreme points (top, bottom, left, right). The result is written as COCO writes
datasets, a folder of PNG images plus ``instances_<split>.json`` with ``images``,
``categories`` and ``annotations`` (``bbox`` as ``[x, y, width, height]``, ``segmentation``
as run-length encoding, ``area``, ``keypoints`` as ``[x, y, visibility] * 4``,
``category_id``), so pycocotools reads it unchanged, and ``read_coco`` reads a real COCO or
Pascal VOC (converted to COCO JSON) folder the same way.

Splits: ``train`` (1,200 images), ``val`` (200) and ``test`` (300), each 128 x 128 RGB with one
to four objects. The objects of ``test`` come from the test images of Fashion-MNIST and
MNIST, those of ``train`` and ``val`` from disjoint parts of their training images; the
backgrounds are random crops of the same seven photographs in every split.

``load_scenes(split)`` generates the split on first use (a few seconds) into the data cache
(``dlcv.data.cache_dir() / "scenes-v1"``), verifies it against a SHA-256 of its images and
annotations, and returns a ``SceneSet``. A cached split whose files no longer match is
discarded and generated again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .boxes import xywh_to_xyxy

__all__ = ["CATEGORIES", "KEYPOINT_NAMES", "SPLITS", "IMAGE_SIZE", "SceneSet", "load_scenes",
           "read_coco", "generate_split", "write_coco", "scenes_dir", "draw_scene"]

VERSION = "scenes-v1"
IMAGE_SIZE = 128
SPLITS = {"train": 1200, "val": 200, "test": 300}
SEEDS = {"train": 1301, "val": 1302, "test": 1303}
KEYPOINT_NAMES = ["top", "bottom", "left", "right"]
# (category id, name, source dataset, label in it)
_SOURCES = [(1, "T-shirt", "fashion-mnist", 0), (2, "trouser", "fashion-mnist", 1),
            (3, "bag", "fashion-mnist", 8), (4, "sneaker", "fashion-mnist", 7),
            (5, "zero", "mnist-10k", 0), (6, "one", "mnist-10k", 1),
            (7, "four", "mnist-10k", 4), (8, "seven", "mnist-10k", 7)]
CATEGORIES = [{"id": i, "name": name, "supercategory": "garment" if src == "fashion-mnist"
               else "digit", "keypoints": KEYPOINT_NAMES, "skeleton": []}
              for i, name, src, _ in _SOURCES]
# SHA-256 of each split's images and annotation JSON, as generate_split makes them
SHA256 = {
    "train": "068d7997f5be37b356b4b855ee8f2f6034fe89f21df5ecc1ade4c83f5d5f34cb",
    "val": "b471f8e65b10352cf38592de6db3856d670e751e180d0c980cceed0d98f5fa35",
    "test": "0495f12b13235c9e26914704925e835147bedd8399fcdbdbe9b1725b161fc431",
}
_MIN_VISIBLE = 0.6          # a pasted object may hide at most 40% of one pasted before it
_SIZE_RANGE = (22, 56)      # the longer side of a pasted object, in pixels


def scenes_dir() -> Path:
    """Where the generated splits live: ``dlcv.data.cache_dir() / "scenes-v1"``."""
    return data.cache_dir() / VERSION


# ----------------------------------------------------------------------------- generation
def _object_pools(split: str) -> dict[int, np.ndarray]:
    """Category id -> the 28 x 28 source images ``uint8 [n, 28, 28]`` this split draws from."""
    pools = {}
    for cat, _, source, label in _SOURCES:
        ds = data.load_dataset(source, verbose=False)
        if split == "test":
            x, y = ds.x_test, ds.y_test
        else:
            cut = int(0.8 * len(ds.x_train))       # train: first 80%, val: the rest
            x, y = ((ds.x_train[:cut], ds.y_train[:cut]) if split == "train"
                    else (ds.x_train[cut:], ds.y_train[cut:]))
        pools[cat] = x[y == label]
    return pools


def _photos() -> list[np.ndarray]:
    out = []
    for name in data.PHOTOS:
        p = data.photo(name).astype(np.float32) / 255
        out.append(np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p[..., :3])
    return out


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Antialiased bilinear resize of ``[H, W]`` or ``[H, W, C]`` float arrays."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    r = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    return (r[0] if a.ndim == 2 else r.permute(1, 2, 0)).numpy()


def _background(rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    p = photos[rng.integers(len(photos))]
    short = min(p.shape[:2])
    side = int(rng.integers(short // 4, int(short / 1.5)))
    top, left = rng.integers(p.shape[0] - side + 1), rng.integers(p.shape[1] - side + 1)
    crop = p[top:top + side, left:left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return _resize(crop, IMAGE_SIZE, IMAGE_SIZE)


def _extreme_points(mask: np.ndarray) -> list[float]:
    """COCO keypoints ``[x, y, 2] * 4``: the top, bottom, left and right extremes of a mask
    (the middle pixel where several share the extreme row or column), at pixel centres."""
    rows, cols = np.nonzero(mask)
    out = []
    for sel, along in ((rows == rows.min(), cols), (rows == rows.max(), cols),
                       (cols == cols.min(), rows), (cols == cols.max(), rows)):
        i = np.flatnonzero(sel)[np.argsort(along[sel], kind="stable")[sel.sum() // 2]]
        out += [float(cols[i]) + 0.5, float(rows[i]) + 0.5, 2]
    return out


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def generate_split(split: str) -> tuple[np.ndarray, dict]:
    """Make a split from its fixed seed: images ``uint8 [N, 128, 128, 3]`` and the COCO
    dictionary of its annotations (image ``file_name`` = ``"%06d.png" % id``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; the scenes have {', '.join(SPLITS)}")
    rng = np.random.default_rng(SEEDS[split])
    pools, photos = _object_pools(split), _photos()
    cat_ids = [c["id"] for c in CATEGORIES]
    images, infos, anns = [], [], []
    for image_id in range(1, SPLITS[split] + 1):
        canvas = _background(rng, photos)
        owner = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.int64)   # which object shows, 0: none
        full_area, placed = {}, []
        for _ in range(int(rng.integers(1, 5))):
            cat = int(rng.choice(cat_ids))
            src = pools[cat][rng.integers(len(pools[cat]))].astype(np.float32) / 255
            ys, xs = np.nonzero(src > 0.12)
            src = src[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            scale = rng.uniform(*_SIZE_RANGE) / max(src.shape)
            h, w = max(int(round(src.shape[0] * scale)), 3), max(int(round(src.shape[1] * scale)), 3)
            obj = np.clip(_resize(src, h, w), 0, 1)
            mask = obj > 0.35
            colour = np.clip(rng.uniform(0.15, 1.0, 3) + (0.5 if rng.random() < 0.5 else 0), 0, 1)
            for _try in range(30):
                top, left = rng.integers(IMAGE_SIZE - h + 1), rng.integers(IMAGE_SIZE - w + 1)
                region = owner[top:top + h, left:left + w]
                hidden = np.bincount(region[mask], minlength=len(placed) + 1)[1:]
                if all(((owner == k + 1).sum() - hidden[k]) >= _MIN_VISIBLE * full_area[k + 1]
                       for k in range(len(placed))):
                    break
            else:
                continue                                   # no room: leave this object out
            alpha = np.clip(obj / 0.6, 0, 1)[..., None]
            shade = (0.55 + 0.45 * obj)[..., None] * colour
            patch = canvas[top:top + h, left:left + w]
            canvas[top:top + h, left:left + w] = patch * (1 - alpha) + shade * alpha
            placed.append(cat)
            full_area[len(placed)] = int(mask.sum())
            region[mask] = len(placed)
        image = np.clip(np.round(canvas * 255), 0, 255).astype(np.uint8)
        images.append(image)
        infos.append({"id": image_id, "file_name": f"{image_id:06d}.png",
                      "width": IMAGE_SIZE, "height": IMAGE_SIZE})
        for k, cat in enumerate(placed, start=1):
            visible = owner == k
            rows, cols = np.nonzero(visible)
            x, y = int(cols.min()), int(rows.min())
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat,
                         "bbox": [x, y, int(cols.max()) + 1 - x, int(rows.max()) + 1 - y],
                         "area": int(visible.sum()), "iscrowd": 0,
                         "segmentation": _rle(visible),
                         "keypoints": _extreme_points(visible), "num_keypoints": 4})
    coco = {"info": {"description": f"dlcv scenes ({VERSION}), split {split}",
                     "version": VERSION},
            "licenses": [], "images": infos, "annotations": anns, "categories": CATEGORIES}
    return np.stack(images), coco


def _digest(images: np.ndarray, coco: dict) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    h.update(json.dumps(coco, sort_keys=True).encode())
    return h.hexdigest()


def write_coco(folder: Path, images: np.ndarray, coco: dict, split: str) -> Path:
    """Write ``images`` as PNGs under ``folder/split/`` and the annotations as
    ``folder/annotations/instances_<split>.json``; returns the JSON's path."""
    from PIL import Image

    image_dir, ann_dir = Path(folder) / split, Path(folder) / "annotations"
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for info, image in zip(coco["images"], images):
        Image.fromarray(image).save(image_dir / info["file_name"], optimize=False)
    path = ann_dir / f"instances_{split}.json"
    path.write_text(json.dumps(coco))
    return path


# ----------------------------------------------------------------------------- reading
@dataclass
class SceneSet:
    """A COCO-format detection set in memory.

    ``images``: ``uint8 [N, 3, H, W]``; ``targets[i]``: a dict with ``boxes [K, 4]`` float
    (x1, y1, x2, y2), ``labels [K]`` int64 category ids, ``masks [K, H, W]`` bool (absent
    when the file has no segmentations, as a box-only set has none),
    ``keypoints [K, P, 3]`` float (x, y, visibility; P = 0 without keypoints), ``area [K]``
    (the annotation's, which COCO's area ranges use) and ``annotation_ids [K]``, all for the
    ordinary objects, which a model trains on; and ``crowd_boxes [C, 4]`` with
    ``crowd_labels [C]``, the crowd regions that evaluation ignores rather than counts (a
    target is a ground-truth entry of ``dlcv.detection_eval.evaluate`` as it is).
    ``image_ids``: COCO ids of the images in order; ``coco``: the pycocotools ``COCO`` object
    of those images (for ``COCOeval``); ``categories``: id -> name."""
    images: torch.Tensor
    targets: list[dict]
    image_ids: list[int]
    coco: object
    categories: dict[int, str]

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        n = sum(len(t["labels"]) for t in self.targets)
        return (f"SceneSet({len(self)} images {tuple(self.images.shape[1:])}, {n} objects, "
                f"{len(self.categories)} categories)")


def _validate(ann: dict, image: dict, cat_ids: set[int]) -> None:
    """Raise a ValueError naming the annotation if it cannot be right."""
    name = f"annotation {ann.get('id')!r} (image {ann.get('image_id')!r})"
    if ann.get("category_id") not in cat_ids:
        raise ValueError(f"{name}: unknown category_id {ann.get('category_id')!r}; the file's "
                         f"categories are {sorted(cat_ids)}")
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4):
        raise ValueError(f"{name}: bbox must be [x, y, width, height], got {bbox!r}")
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise ValueError(f"{name}: bbox {bbox} has a width or height <= 0 (COCO boxes are "
                         "[x, y, width, height], not corners)")
    x, y, w, h = bbox
    if x < -1 or y < -1 or x + w > image["width"] + 1 or y + h > image["height"] + 1:
        raise ValueError(f"{name}: bbox {bbox} lies outside its {image['width']} x "
                         f"{image['height']} image")
    seg = ann.get("segmentation")
    if isinstance(seg, dict) and list(seg.get("size", [])) != [image["height"], image["width"]]:
        raise ValueError(f"{name}: mask size {seg.get('size')} does not match the image's "
                         f"[height, width] = [{image['height']}, {image['width']}]")
    kp = ann.get("keypoints")
    if kp is not None and len(kp) % 3:
        raise ValueError(f"{name}: keypoints must be [x, y, visibility] triples, got {len(kp)} "
                         "numbers")


def read_coco(image_dir: str | Path, annotation_file: str | Path,
              max_images: int | None = None) -> SceneSet:
    """Read a COCO-format detection set: the images in ``image_dir`` and the annotations of
    ``annotation_file`` (COCO's ``instances_*.json`` or ``person_keypoints_*.json``, or Pascal
    VOC converted to that format). Crowd annotations are kept apart (``crowd_boxes``, see
    ``SceneSet``); masks come from RLE or polygons through pycocotools. Every annotation is checked first, and a malformed one (a box
    of negative width, an unknown category, a mask of the wrong size) raises a ValueError that
    names it. ``max_images`` reads only the first images (sorted by id), for a quick look at a
    large set such as COCO's val2017; ``coco`` then holds only those, so that COCOeval scores
    the images read."""
    import contextlib
    import io

    from PIL import Image
    from pycocotools.coco import COCO

    image_dir, annotation_file = Path(image_dir), Path(annotation_file)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"no annotation file {annotation_file}")
    raw = json.loads(annotation_file.read_text())
    for key in ("images", "annotations", "categories"):
        if key not in raw:
            raise ValueError(f"{annotation_file} is not COCO-format: it has no {key!r}")
    raw.setdefault("info", {})
    cat_ids = {c["id"] for c in raw["categories"]}
    by_id = {im["id"]: im for im in raw["images"]}
    for ann in raw["annotations"]:
        if ann.get("image_id") not in by_id:
            raise ValueError(f"annotation {ann.get('id')!r}: image_id {ann.get('image_id')!r} "
                             "is not in the file's images")
        _validate(ann, by_id[ann["image_id"]], cat_ids)
    with_masks = ["segmentation" in a for a in raw["annotations"]]
    has_masks = all(with_masks)
    if any(with_masks) and not has_masks:
        ann = raw["annotations"][with_masks.index(False)]
        raise ValueError(f"annotation {ann.get('id')!r} (image {ann.get('image_id')!r}) has no "
                         "segmentation while others have one: give every annotation a mask, or "
                         "none (a box-only set such as converted Pascal VOC)")
    image_ids = sorted(by_id)[:max_images]
    if max_images is not None:            # the COCO object holds just the images read
        chosen = set(image_ids)
        raw = {**raw, "images": [by_id[i] for i in image_ids],
               "annotations": [a for a in raw["annotations"] if a["image_id"] in chosen]}
    with contextlib.redirect_stdout(io.StringIO()):      # pycocotools prints progress
        coco = COCO()
        coco.dataset = raw
        coco.createIndex()
    images, targets = [], []
    for image_id in image_ids:
        info = by_id[image_id]
        path = image_dir / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"image {image_id} is listed as {info['file_name']!r} but "
                                    f"{path} does not exist")
        images.append(torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1))
        anns = [a for a in coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        crowds = [a for a in coco.imgToAnns[image_id] if a.get("iscrowd", 0)]
        boxes, crowd_boxes = (xywh_to_xyxy(torch.tensor([a["bbox"] for a in group],
                                                        dtype=torch.float32).reshape(-1, 4))
                              for group in (anns, crowds))
        H, W = info["height"], info["width"]
        masks = None
        if has_masks:
            with warnings.catch_warnings():     # pycocotools 2.0.x and numpy 2: a harmless
                warnings.simplefilter("ignore", DeprecationWarning)   # __array__(copy=) notice
                masks = (torch.from_numpy(np.stack([coco.annToMask(a) for a in anns])).bool()
                         if anns else torch.zeros(0, H, W, dtype=torch.bool))
        n_kp = max((len(a.get("keypoints", [])) // 3 for a in anns), default=0)
        kps = torch.tensor([a.get("keypoints", [0] * 3 * n_kp) for a in anns],
                           dtype=torch.float32).reshape(len(anns), n_kp, 3)
        targets.append({"boxes": boxes, "labels": torch.tensor([a["category_id"] for a in anns],
                                                               dtype=torch.int64),
                        **({"masks": masks} if has_masks else {}), "keypoints": kps,
                        "area": torch.tensor([float(a.get("area", (b[2] - b[0]) * (b[3] - b[1])))
                                              for a, b in zip(anns, boxes.tolist())],
                                             dtype=torch.float64),
                        "annotation_ids": torch.tensor([a["id"] for a in anns], dtype=torch.int64),
                        "crowd_boxes": crowd_boxes,
                        "crowd_labels": torch.tensor([a["category_id"] for a in crowds],
                                                     dtype=torch.int64)})
    sizes = {tuple(im.shape) for im in images}
    stacked = torch.stack(images) if len(sizes) == 1 else images
    return SceneSet(stacked, targets, image_ids, coco,
                    {c["id"]: c["name"] for c in raw["categories"]})


def _split_paths(split: str) -> tuple[Path, Path]:
    return scenes_dir() / split, scenes_dir() / "annotations" / f"instances_{split}.json"


def _cached(split: str) -> tuple[SceneSet | None, str | None]:
    """The cached split read once, and the SHA-256 of what was read (``(None, None)`` when
    there is no readable cache)."""
    image_dir, ann = _split_paths(split)
    if not ann.is_file():
        return None, None
    try:
        scene_set = read_coco(image_dir, ann)
    except (OSError, ValueError, KeyError):
        return None, None
    images = scene_set.images.permute(0, 2, 3, 1).numpy()     # back to [N, H, W, 3]
    return scene_set, _digest(images, scene_set.coco.dataset)


def _cached_digest(split: str) -> str | None:
    return _cached(split)[1]


def load_scenes(split: str = "train", *, verbose: bool = False) -> SceneSet:
    """The scenes of one split (``train``, ``val`` or ``test``), generated into the cache on
    first use and verified by SHA-256 (see the module's docstring).

    First used in section 13.1, *From what to where*.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; the scenes have {', '.join(SPLITS)}")
    with _lock(split):                 # chapters built in parallel may ask at the same time
        scene_set = _ensure(split, verbose)
    return scene_set


class _lock:
    """An exclusive lock file per split (fcntl; no locking where fcntl is missing)."""

    def __init__(self, split: str):
        scenes_dir().mkdir(parents=True, exist_ok=True)
        self.path = scenes_dir() / f".{split}.lock"

    def __enter__(self):
        self.file = open(self.path, "w")
        try:
            import fcntl

            fcntl.flock(self.file, fcntl.LOCK_EX)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        self.file.close()              # closing releases the lock


def _ensure(split: str, verbose: bool) -> SceneSet:
    """The verified split, read from the cache once, or generated, written and read."""
    image_dir, ann = _split_paths(split)
    expected = SHA256[split]
    scene_set, got = _cached(split)
    if got is None or (expected is not None and got != expected):
        if got is not None:
            warnings.warn(f"cached scenes {split!r} do not match their checksum; generating "
                          "them again", stacklevel=2)
        shutil.rmtree(image_dir, ignore_errors=True)
        images, coco = generate_split(split)
        digest = _digest(images, coco)
        if expected is not None and digest != expected:
            warnings.warn(f"the scenes {split!r} generated here differ from the book's (SHA-256 "
                          f"{digest[:12]}... instead of {expected[:12]}...): a different version "
                          "of numpy, PyTorch or scikit-image draws them differently, so numbers "
                          "will not match the published ones exactly", stacklevel=2)
        write_coco(scenes_dir(), images, coco, split)
        if verbose:
            print(f"scenes: generated {split} ({len(images)} images) in {scenes_dir()}")
        scene_set = read_coco(image_dir, ann)
    return scene_set


# ----------------------------------------------------------------------------- drawing
def draw_scene(ax, image: torch.Tensor, boxes=None, labels=None, scores=None, masks=None,
               keypoints=None, categories: dict[int, str] | None = None, colour_by: str = "instance",
               linewidth: float = 1.5, fontsize: float = 7) -> None:
    """Draw an image ``uint8 [3, H, W]`` with any of: boxes ``[K, 4]`` (x1, y1, x2, y2) labelled
    with their category name (``labels [K]`` ids, ``categories`` id -> name) and score, masks
    ``[K, H, W]`` tinted, keypoints ``[K, P, 3]`` as white crosses. Colours follow the instance
    (``colour_by="instance"``) or the category (``"category"``).

    First used in section 13.1, *From what to where*.
    """
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Rectangle

    from .plotting import PALETTE

    img = image.permute(1, 2, 0).cpu().numpy().astype(np.float32) / 255
    k = 0 if boxes is None else len(boxes)
    k = max(k, 0 if masks is None else len(masks))

    def colour(i):
        key = int(labels[i]) if colour_by == "category" and labels is not None else i
        return PALETTE[key % len(PALETTE)]

    if masks is not None:
        for i, m in enumerate(masks):
            m = m.cpu().numpy().astype(bool)
            img[m] = 0.45 * img[m] + 0.55 * np.array(to_rgb(colour(i)))
    ax.imshow(img)
    if boxes is not None:
        for i, b in enumerate(boxes.tolist()):
            ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False,
                                   ec=colour(i), lw=linewidth))
            text = []
            if labels is not None:
                text.append((categories or {}).get(int(labels[i]), str(int(labels[i]))))
            if scores is not None:
                text.append(f"{float(scores[i]):.2f}")
            if text:
                ax.text(b[0], b[1] - 1.5, " ".join(text), color="white", fontsize=fontsize,
                        va="bottom", bbox=dict(facecolor=colour(i), pad=0.8, lw=0))
    if keypoints is not None:
        for kp in keypoints:
            ax.plot(kp[:, 0] - 0.5, kp[:, 1] - 0.5, "w+", ms=5, mew=1.2)
    ax.set_xlim(-0.5, image.shape[-1] - 0.5)
    ax.set_ylim(image.shape[-2] - 0.5, -0.5)
    ax.set_axis_off()

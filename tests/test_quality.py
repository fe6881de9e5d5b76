"""The quality targets of the book's demonstrations, checked on the numbers its pages print.

Each target is a number a chapter computes with the book's own classifiers and glues under the
name below (rates as fractions); this reads the glued values back from the executed notebooks
in the execution cache, so the number on the page is the number checked. The targets hold at
the scales a reader's build runs (small on a CPU, large on a GPU), not at the smoke scale.
"""
from __future__ import annotations

import json

import pytest

from test_site import ROOT
import build_notes  # noqa: I001  (tools/, put on the path by test_site)

# page -> {glued name: the least value it may have}
TARGETS = {
    "book/ch12_transformers": {"q_resnet_acc": 0.85, "q_vit_acc": 0.84},
    "book/ch14_segmentation": {"q_unet_miou": 0.45, "q_unet_min_class_iou": 0.15},
    "book/ch15_generative": {
        "q_digit_classifier_acc": 0.97,
        "q_gan_confident_rate": 0.7,
        "q_pixelcnn_label_rate": 0.6,
        "q_vae_grid_digits": 9,
    },
    "book/ch16a_translation": {
        "q_digit_classifier_acc": 0.97,
        "q_cyclegan_target_rate": 0.7,
        "q_cyclegan_keeps_rate": 0.8,
    },
    "book/ch16b_diffusion": {
        "q_digit_classifier_acc": 0.97,
        "q_diffusion_label_rate": 0.85,
        "q_pixel_diffusion_label_rate": 0.5,
    },
    "book/ch16c_nerf": {"q_nerf_psnr": 24.0},
}
PREFIX = "application/papermill.record/"


def glued_values(page: str) -> tuple[dict, dict]:
    """``(record, {name: value})`` of ``page``'s cached execution: the build record and the
    values it glued (``text/plain`` read as a Python literal where it is one)."""
    from jupyter_cache import get_cache

    from execute import read_notebook

    cache = get_cache(str(ROOT / "_build" / ".jupyter_cache"))
    entry = cache.match_cache_notebook(read_notebook(ROOT / f"{page}.md"))
    nb = cache.get_cache_bundle(entry.pk).nb
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            text = out.get("data", {}).get(PREFIX + "text/plain")
            if name and text is not None:
                try:
                    values[name] = json.loads(text)
                except ValueError:
                    values[name] = text
    return (entry.data or {}).get("dlcv_build") or {}, values


@pytest.mark.parametrize("page", sorted(TARGETS))
def test_quality_targets_hold_on_the_page(page):
    record, values = glued_values(page)
    if record.get("scale") == "smoke":
        pytest.skip(f"{page} was executed at the smoke scale")
    for name, least in TARGETS[page].items():
        assert name in values, f"{page} does not glue {name}"
        assert isinstance(values[name], (int, float)), f"{page}: {name} is {values[name]!r}, not a number"
        assert values[name] >= least, f"{page}: {name} = {values[name]:.3f}, below its target {least}"


def test_the_reader_of_glued_values_sees_a_known_value():
    _, values = glued_values("book/ch16b_diffusion")
    assert values.get("mc_steps") == 500

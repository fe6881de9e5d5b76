"""Data tables for chapter 1: a timeline of computer vision and neural networks, and ILSVRC results.

Each row carries the key of its source in the book's bibliography (``book/references.bib``),
so that figures drawn from these tables can cite them.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event", "TIMELINE", "IlsvrcResult", "ILSVRC_CLASSIFICATION", "HUMAN_TOP5_ERROR",
           "ILSVRC2012_SPLITS", "ILSVRC_CLASSES", "PASCAL_VOC2007", "COCO_2014", "COCO2017_SPLITS",
           "ALEXNET_2012_TEST_TOP5",
           "winners", "error_reductions"]


@dataclass(frozen=True)
class Event:
    year: int
    label: str
    lane: str    # "vision" or "neural networks"
    source: str  # bibliography key


TIMELINE: tuple[Event, ...] = (
    Event(1958, "Perceptron", "neural networks", "rosenblatt1958perceptron"),
    Event(1959, "Hubel & Wiesel", "vision", "hubel1959receptive"),
    Event(1963, "Roberts: block world", "vision", "roberts1963machine"),
    Event(1979, "Generalized cylinders", "vision", "brooks1979acronym"),
    Event(1980, "Neocognitron", "neural networks", "fukushima1980neocognitron"),
    Event(1982, "Marr: Vision", "vision", "marr1982vision"),
    Event(1986, "Canny edges", "vision", "canny1986computational"),
    Event(1986, "Backpropagation", "neural networks", "rumelhart1986learning"),
    Event(1997, "Normalized cuts", "vision", "shi1997normalized"),
    Event(1998, "LeNet", "neural networks", "lecun1998gradient"),
    Event(1999, "SIFT", "vision", "lowe1999object"),
    Event(2001, "Viola–Jones faces", "vision", "viola2001rapid"),
    Event(2005, "PASCAL VOC", "vision", "everingham2010pascal"),
    Event(2006, "Deep belief nets", "neural networks", "hinton2006reducing"),
    Event(2009, "ImageNet", "vision", "deng2009imagenet"),
    Event(2012, "AlexNet", "neural networks", "krizhevsky2012imagenet"),
    Event(2015, "ResNet", "neural networks", "he2016deep"),
    Event(2017, "Transformer", "neural networks", "vaswani2017attention"),
    Event(2020, "Vision Transformer", "neural networks", "dosovitskiy2021image"),
)


@dataclass(frozen=True)
class IlsvrcResult:
    year: int
    entry: str
    top5_error: float  # percent, on the ILSVRC classification test set
    layers: int | None  # depth of the network; None for methods that are not neural networks
    source: str


# The winners of the ILSVRC classification task (and VGG, second in 2014).
ILSVRC_CLASSIFICATION: tuple[IlsvrcResult, ...] = (
    IlsvrcResult(2010, "NEC-UIUC", 28.2, None, "russakovsky2015imagenet"),
    IlsvrcResult(2011, "XRCE", 25.8, None, "russakovsky2015imagenet"),
    IlsvrcResult(2012, "AlexNet", 16.4, 8, "krizhevsky2012imagenet"),
    IlsvrcResult(2013, "ZFNet (Clarifai)", 11.7, 8, "russakovsky2015imagenet"),
    IlsvrcResult(2014, "VGG", 7.3, 19, "simonyan2015very"),
    IlsvrcResult(2014, "GoogLeNet", 6.7, 22, "szegedy2015going"),
    IlsvrcResult(2015, "ResNet", 3.57, 152, "he2016deep"),
    IlsvrcResult(2016, "Trimps-Soushen", 2.99, None, "ilsvrc2016results"),
    IlsvrcResult(2017, "SENet", 2.25, 152, "hu2018squeeze"),
)

# One trained human annotator's top-5 error on 1,500 test images (Russakovsky et al., 2015).
HUMAN_TOP5_ERROR = 5.1

# Image counts of the ILSVRC 2012–2017 classification data (Russakovsky et al., 2015, table 2).
ILSVRC2012_SPLITS = {"train": 1_281_167, "validation": 50_000, "test": 100_000}
ILSVRC_CLASSES = 1000

# PASCAL VOC 2007, the benchmark before ImageNet: images and annotated objects in all its splits,
# and classes (Everingham et al., 2010).
PASCAL_VOC2007 = {"images": 9_963, "objects": 24_640, "classes": 20}

# COCO as its paper describes it (Lin et al., 2014: "91 object types", "2.5 million labeled
# instances in 328k images"; 80 of the types have instance annotations for detection; "7.7
# instances per image" on average, its section 5, which the rounded totals put at 7.6), and
# the 2017 release's detection splits (cocodataset.org).
COCO_2014 = {"images": 328_000, "instances": 2_500_000, "types": 91, "detection_classes": 80,
             "instances_per_image": 7.7}
COCO2017_SPLITS = {"train": 118_287, "val": 5_000}

# AlexNet's (team SuperVision's) ILSVRC-2012 test top-5 errors, in % (Krizhevsky et al., 2012,
# table 2). The challenge's winning entry averaged seven networks, two of them pretrained on the
# whole ImageNet Fall 2011 release (15M images, 22k classes); the best entry trained on the
# challenge data alone averaged five. ILSVRC_CLASSIFICATION uses the latter, like the paper's text.
ALEXNET_2012_TEST_TOP5 = {"5 CNNs, challenge data only": 16.4, "7 CNNs, 2 pretrained on ImageNet Fall 2011": 15.3}


def winners(results=ILSVRC_CLASSIFICATION) -> dict[int, IlsvrcResult]:
    """Each year's best entry (lowest top-5 error), by year in increasing order.

    First used in section 1.3, *ImageNet and its challenge*.
    """
    best: dict[int, IlsvrcResult] = {}
    for r in results:
        if r.year not in best or r.top5_error < best[r.year].top5_error:
            best[r.year] = r
    return dict(sorted(best.items()))


def error_reductions(results=ILSVRC_CLASSIFICATION) -> list[tuple[int, float, float]]:
    """For each year's best entry: ``(year, best top-5 error, relative reduction vs. the year before)``.

    First used in section 1.3, *ImageNet and its challenge*.
    """
    best = {year: r.top5_error for year, r in winners(results).items()}
    years = list(best)
    out = [(years[0], best[years[0]], float("nan"))]
    for prev, year in zip(years, years[1:]):
        out.append((year, best[year], 1 - best[year] / best[prev]))
    return out

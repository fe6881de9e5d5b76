"""The package's command line: ``python -m dlcv fetch [NAME ...]`` fetches, verifies and caches
the datasets (``dlcv.data``), the sample images and the generated detection scenes
(``dlcv.scenes``), all of them by default, as ``make data`` does; ``python -m dlcv list`` lists
the datasets with their sources and licenses.

It lives here rather than in ``dlcv.data`` because the scenes are made from the datasets:
``dlcv.scenes`` imports ``dlcv.data``, and only this module imports both.
"""
from __future__ import annotations

import argparse

from . import data, scenes

__all__ = ["fetch_all", "main"]


def fetch_all(names: list[str] | None = None) -> None:
    """Fetch, verify and cache ``names`` (default: every dataset, ``samples`` and ``scenes``)."""
    for name in names or [*data.DATASETS, "samples", "scenes"]:
        if name == "samples":
            print(f"dlcv: sample images ok, in {data._foolbox_samples_dir()}")
        elif name == "scenes":       # generated from the datasets above
            for split in scenes.SPLITS:
                print(f"dlcv: scenes {split}: {scenes.load_scenes(split)!r} ok, in "
                      f"{scenes.scenes_dir()}")
        else:
            ds = data.load_dataset(name, verbose=False)
            print(f"dlcv: {ds!r} ok, in {data.cache_dir() / (name + '.npz')}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dlcv",
                                description="The companion package of Deep Learning for "
                                            "Computer Vision: its data")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="fetch, verify and cache the datasets")
    f.add_argument("names", nargs="*",
                   help=f"datasets (default: all of {', '.join(data.DATASETS)}, 'samples' and "
                        "'scenes')")
    sub.add_parser("list", help="list the datasets and their sources")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for info in data.DATASETS.values():
            print(f"{info.name}: {info.description}; license {info.license}")
        return 0
    try:
        fetch_all(args.names)
    except (data.DataUnavailableError, KeyError) as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``s2i read-attributes``: read the attributes of image files with a dataset's trained attribute
reader (the one the evaluation stage trains and saves)."""
from __future__ import annotations

import json
from pathlib import Path

EVAL_NOTEBOOK = "04_baselines"  # the notebook that trains the reader (named in CLI errors)


def reader_path(run_root: str | Path, preset: str, dataset: str) -> Path:
    """The attribute reader the evaluation stage saved for a dataset (the preset's own data folder:
    ``data/<dataset>/references/attribute_reader_<source>_<view>_<size>px.pt``). Where several exist
    (another view or size), the rendered one of the largest size is taken; none: the path a
    reader would have, so the caller can name it."""
    folder = Path(run_root) / preset / "data" / dataset / "references"
    found = sorted(folder.glob("attribute_reader_*.pt"),
                   key=lambda p: ("_rendered_" in p.name, int(p.stem.rsplit("_", 1)[-1].rstrip("px") or 0)))
    return found[-1] if found else folder / "attribute_reader_<source>_<view>_<size>px.pt"


def cmd_read_attributes(args) -> int:
    import sys

    from s2ilib.evaluation import attribute_reader as AR
    from s2ilib.models.teacher import load_image_uint8

    path = reader_path(args.run_root, args.preset, args.dataset)
    if not path.is_file():
        print(f"s2i read-attributes: {path}: no trained attribute reader for dataset {args.dataset!r} at preset "
              f"{args.preset!r}; run the evaluation notebook {EVAL_NOTEBOOK} first "
              f"(s2i study --preset {args.preset} --only 04)", file=sys.stderr)
        return 2
    reader = AR.load_attribute_reader(path)
    status = 0
    for image in args.images:
        try:
            img = load_image_uint8(image)
        except (FileNotFoundError, OSError, ValueError) as exc:
            print(f"s2i read-attributes: {image}: cannot read image ({exc})", file=sys.stderr)
            status = 1
            continue
        (read,) = AR.read_attributes(reader, img[None])
        print(json.dumps({"image": str(image),
                          "attributes": {a: {"value": v, "prob": round(p, 4)} for a, (v, p) in read.items()}}))
    return status


def add_cli(subparsers) -> None:
    """Register ``s2i read-attributes`` on an argparse subparsers object."""
    p = subparsers.add_parser("read-attributes", help="read the attributes of image files with a dataset's "
                                                      "trained attribute reader (one JSON object per image)")
    p.add_argument("--dataset", required=True, help="e.g. synth-birds")
    p.add_argument("--run-root", default="runs", help="run folder root (default: runs)")
    p.add_argument("--preset", default="small", help="preset whose reader to use (default: small)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_read_attributes)

"""``seglab data synth`` (write the built-in synthetic data set) and ``seglab data check``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="make synthetic data, check a data folder")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = sub.add_parser(
        "synth",
        help="write synthetic nuclei tiles (images/<stem>.png, labels/<stem>.tif)",
        description="Write N synthetic nuclei tiles in the folder format; deterministic per seed.",
    )
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--n", type=int, default=16, help="number of tiles (default 16)")
    synth.add_argument("--size", type=int, default=256, help="tile side in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--style", choices=("he", "fluo"), default="he", help="H&E RGB or fluorescence (default he)")
    synth.add_argument("--panoptic", action="store_true",
                       help="H&E tissue regions (glass, stroma, epithelium) and typed nuclei (tumour, lymphocyte, "
                       "stromal, epithelial) in the panoptic folder format (classes/, classes.yaml)")
    synth.set_defaults(run=run)
    check = sub.add_parser(
        "check",
        help="report counts, sizes, label statistics and every problem of a data folder",
        description="Read every file of DIR/images and DIR/labels once; exit 1 when problems are found.",
    )
    check.add_argument("dir", type=Path, metavar="DIR", help="data folder with images/ and labels/")
    check.add_argument("--task", choices=("instance", "semantic", "panoptic"), default="instance",
                       help="how labels are read (panoptic: also classes/ and classes.yaml)")
    check.add_argument("--val", type=Path, metavar="VAL", help="panoptic: validation folder whose classes.yaml must agree")
    check.set_defaults(run=run)
    conv = sub.add_parser(
        "convert",
        help="convert PanNuke, CoNIC/Lizard, COCO panoptic or QuPath GeoJSON into the panoptic folder format",
        description="Write DIR/images, DIR/labels (instance ids), DIR/classes (class per pixel) and "
        "DIR/classes.yaml from a published data set or a QuPath export.",
    )
    conv.add_argument("--from", dest="fmt", required=True, choices=("pannuke", "conic", "coco-panoptic", "geojson"),
                      help="source format: pannuke (fold with images.npy, masks.npy), conic (images.npy + "
                      "labels.npy, or Lizard Images/ + Labels/*.mat), coco-panoptic (the JSON; PNGs beside it), "
                      "geojson (images/<stem>.* + <stem>.geojson from QuPath)")
    conv.add_argument("src", type=Path, metavar="SRC", help="source folder (coco-panoptic: the JSON file)")
    conv.add_argument("--out", type=Path, required=True, help="output folder (panoptic format)")
    conv.add_argument("--images", type=Path, help="coco-panoptic: image folder (default SRC's folder/images)")
    conv.add_argument("--stuff", default="", help="geojson: comma-separated class names that are tissue regions (stuff)")
    conv.set_defaults(run=run)
    fp = sub.add_parser(
        "fingerprint",
        help="image sizes, intensities, object sizes and classes of a data folder (what train plans from)",
        description="One pass over DIR/images and DIR/labels; cached in DIR/.seglab/. Prints the "
        "summary, or the whole fingerprint as JSON with --json.",
    )
    fp.add_argument("dir", type=Path, metavar="DIR", help="data folder with images/ and labels/")
    fp.add_argument("--task", choices=("instance", "semantic"), default="instance", help="how labels are read")
    fp.add_argument("--json", action="store_true", help="print the whole fingerprint as JSON")
    fp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        from seglab.data.synthetic import write_synthetic_dataset
        from seglab.fileio import check_output_dir

        check_output_dir(args.out, "--out")
        if args.panoptic:
            from seglab.data.synthetic_panoptic import CLASSES, write_panoptic_dataset

            stems = write_panoptic_dataset(args.out, n=args.n, size=args.size, seed=args.seed)
            print(f"wrote {len(stems)} panoptic H&E tiles of {args.size} x {args.size} to {args.out} "
                  f"(images/, labels/, classes/, classes.yaml: {', '.join(c.name for c in CLASSES)})")
            return 0
        stems = write_synthetic_dataset(args.out, n=args.n, size=args.size, seed=args.seed, style=args.style)
        print(f"wrote {len(stems)} {args.style} tiles of {args.size} x {args.size} to {args.out} (images/, labels/)")
        return 0
    if args.data_command == "convert":
        from seglab.data.convert import convert
        from seglab.fileio import check_output_dir

        check_output_dir(args.out, "--out")
        options: dict = {}
        if args.fmt == "coco-panoptic" and args.images is not None:
            options["images"] = args.images
        if args.fmt == "geojson":
            options["stuff"] = [n.strip() for n in args.stuff.split(",") if n.strip()]
        done = convert(args.fmt, args.src, args.out, **options)
        print(f"wrote {done['images']} images, {done['instances']} instances to {args.out} "
              f"(classes: {', '.join(done['classes'])})")
        return 0
    if args.data_command == "fingerprint":
        import json

        from seglab.data.fingerprint import fingerprint_folder

        result = fingerprint_folder(args.dir, task=args.task)
        print(json.dumps(result.to_dict(), indent=2) if args.json else "\n".join(result.summary()))
        return 0
    if args.task == "panoptic":
        from seglab.data.panoptic_check import check_panoptic, format_panoptic

        report, lines = check_panoptic(args.dir, args.val)
        print(format_panoptic(report, lines))
        return 0 if report.ok else 1
    from seglab.data.check import check_dataset, format_report

    report = check_dataset(args.dir, task=args.task)
    print(format_report(report))
    return 0 if report.ok else 1

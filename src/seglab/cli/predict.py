"""``seglab predict``: instance / class maps, overlays, GeoJSON and COCO for images of any size."""

from __future__ import annotations

import argparse
import sys

MIN_TILE = 32  # smaller tiles are nearly all border: thousands of forward passes for no gain


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict images with a trained checkpoint",
        description=(
            "Predict a file, folder or glob of images with sliding windows; writes per image "
            "<stem>_instances.tif (or <stem>_classes.png), <stem>_overlay.png, <stem>.geojson "
            "(QuPath) and summary.csv; with --coco also coco_results.json and coco_images.json for the run."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="seglab checkpoint (.ckpt)")
    p.add_argument("--input", required=True, help="image file, folder of images, or glob pattern (quote it)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--tile", type=int, default=None, help="tile size, at least 32 and the model's stride (default: the checkpoint's patch size, at least 256; 0 = whole image at once)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction in [0, 1) (default 0.25)")
    p.add_argument("--blend", choices=("gaussian", "cosine", "constant"), default="gaussian", help="tile blending (default gaussian)")
    p.add_argument("--tta", action="store_true", help="average over flips and 90-degree rotations (8x slower)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass (default 8)")
    p.add_argument("--block", type=int, default=1024, help="instance decoding block size (default 1024)")
    p.add_argument("--margin", type=int, default=64, help="context around each block, > largest nucleus (default 64)")
    p.add_argument("--decode-workers", type=int, default=0, help="processes decoding blocks of large images while the model runs (default 0: inline; helps when a core is free)")
    p.add_argument("--coco", action="store_true", help="also write coco_results.json (COCO results: RLE masks, score = mean foreground probability) and coco_images.json (image ids, categories) for all inputs")
    p.add_argument("--skip-existing", action="store_true", help="skip images whose outputs all exist")
    p.add_argument("--workers", type=int, default=1, help="threads reading upcoming images (default 1; 0 = none)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from seglab.errors import SeglabError
    from seglab.fileio import check_output_dir
    from seglab.inference import expand_inputs, load_predictor, predict_files
    from seglab.inference.predictor import default_tile, resolve_device

    if not 0 <= args.overlap < 1:
        raise SeglabError(f"--overlap must be in [0, 1), got {args.overlap}")
    if (args.tile is not None and args.tile < 0) or args.batch_size < 1 or args.block < 1 or args.margin < 0:
        raise SeglabError("--tile, --batch-size, --block must be positive and --margin non-negative")
    try:
        resolve_device(args.device)
    except SeglabError as exc:
        raise SeglabError(f"--device: {exc}") from None
    check_output_dir(args.output, "--output")
    inputs = expand_inputs(args.input)
    predictor = load_predictor(
        args.checkpoint, device=args.device, tta=args.tta, overlap=args.overlap, batch_size=args.batch_size,
        blend=args.blend, block=args.block, margin=args.margin, decode_workers=max(args.decode_workers, 0),
    )
    smallest = max(MIN_TILE, int(getattr(predictor.model, "required_divisor", 1) or 1))
    if args.tile and args.tile < smallest:
        raise SeglabError(f"--tile: must be 0 (whole image) or >= {smallest} (at least {MIN_TILE} px and the model's stride), got {args.tile}")
    predictor.tile = default_tile(predictor.meta) if args.tile is None else (args.tile or None)
    failures: list[str] = []

    def report(exc: SeglabError) -> None:
        failures.append(str(exc))
        print(f"seglab: error: {exc}", file=sys.stderr)

    rows = predict_files(
        predictor, inputs, args.output, coco=args.coco, skip_existing=args.skip_existing,
        workers=args.workers, on_error=report,
    )
    done = len(inputs) - len(failures)
    print(f"{done}/{len(inputs)} images predicted into {args.output} ({len(rows)} rows in summary.csv)")
    return 2 if failures else 0

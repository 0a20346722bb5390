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
    p.add_argument("--backend", choices=("torch", "onnxruntime", "torchscript"), default="torch", help="what runs the network: torch (default), onnxruntime or torchscript (CPU; exported once into CHECKPOINT_STEM.export/ beside the checkpoint unless --model-file is given)")
    p.add_argument("--model-file", default=None, help="a file written by seglab export to run with --backend onnxruntime|torchscript (its sidecar FILE.json must be beside it)")
    p.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass (default 8)")
    p.add_argument("--block", type=int, default=1536, help="decoding block size; slides are predicted block by block (default 1536)")
    p.add_argument("--margin", type=int, default=64, help="context the decoder sees around each block; objects wider than it are still joined (default 64)")
    p.add_argument("--decode-workers", type=int, default=0, help="processes decoding blocks of large images while the model runs (default 0: inline; helps when a core is free)")
    p.add_argument("--coco", action="store_true", help="also write coco_results.json (COCO results: RLE masks, score = mean foreground probability) and coco_images.json (image ids, categories) for all inputs")
    p.add_argument("--skip-existing", action="store_true", help="skip images whose outputs all exist")
    p.add_argument("--workers", type=int, default=1, help="threads reading upcoming images (default 1; 0 = none)")
    p.add_argument("--tissue", default="auto", help="slides: auto (detect tissue, skip glass; default), none (predict everything) or a mask image (white = tissue, any downscaled size of the slide)")
    p.add_argument("--mpp", type=float, default=None, help="µm per pixel of the inputs' full resolution, when their files do not say it")
    p.add_argument("--devices", type=int, default=1, help="processes on this machine, each predicting whole slides (on GPUs: one per GPU; default 1)")
    p.add_argument("--num-nodes", type=int, default=1, help="machines sharing the inputs (same --output on a shared file system; default 1)")
    p.add_argument("--node-rank", type=int, default=None, help="this machine's index among --num-nodes (default: $NODE_RANK, $SLURM_NODEID or 0)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from seglab.errors import SeglabError
    from seglab.fileio import check_output_dir
    from seglab.inference import expand_inputs, predict_files
    from seglab.inference.predictor import resolve_device

    if not 0 <= args.overlap < 1:
        raise SeglabError(f"--overlap must be in [0, 1), got {args.overlap}")
    if (args.tile is not None and args.tile < 0) or args.batch_size < 1 or args.block < 1 or args.margin < 0:
        raise SeglabError("--tile, --batch-size, --block must be positive and --margin non-negative")
    try:
        resolve_device(args.device)
    except SeglabError as exc:
        raise SeglabError(f"--device: {exc}") from None
    if args.devices < 1 or args.num_nodes < 1:
        raise SeglabError("--devices and --num-nodes must be at least 1")
    if args.mpp is not None and not args.mpp > 0:
        raise SeglabError(f"--mpp must be > 0, got {args.mpp}")
    check_output_dir(args.output, "--output")
    inputs = expand_inputs(args.input)
    predictor = _load(args)
    if args.devices > 1 or args.num_nodes > 1:
        return _run_parallel(args, inputs)
    failures: list[str] = []

    def report(exc: SeglabError) -> None:
        failures.append(str(exc))
        print(f"seglab: error: {exc}", file=sys.stderr)

    rows = predict_files(
        predictor, inputs, args.output, coco=args.coco, skip_existing=args.skip_existing,
        workers=args.workers, on_error=report, tissue=args.tissue, mpp=args.mpp,
    )
    done = len(inputs) - len(failures)
    print(f"{done}/{len(inputs)} images predicted into {args.output} ({len(rows)} rows in summary.csv)")
    return 2 if failures else 0


def _load(args: argparse.Namespace):
    """The predictor the flags describe (a Mask R-CNN one for a Mask R-CNN checkpoint)."""
    from seglab.errors import SeglabError
    from seglab.inference import load_predictor
    from seglab.inference.predictor import default_tile

    predictor = load_predictor(
        args.checkpoint, device=args.device, tta=args.tta, overlap=args.overlap, batch_size=args.batch_size,
        blend=args.blend, block=args.block, margin=args.margin, decode_workers=max(args.decode_workers, 0),
        backend=args.backend, model_file=args.model_file,
    )
    smallest = max(MIN_TILE, int(getattr(predictor.model, "required_divisor", 1) or 1))
    if args.tile and args.tile < smallest:
        raise SeglabError(f"--tile: must be 0 (whole image) or >= {smallest} (at least {MIN_TILE} px and the model's stride), got {args.tile}")
    predictor.tile = default_tile(predictor.meta) if args.tile is None else (args.tile or None)
    return predictor


def _run_parallel(args: argparse.Namespace, inputs: list) -> int:
    """Several processes (``--devices``) on each of ``--num-nodes`` machines, each predicting whole
    inputs: process ``r`` of ``N`` takes inputs ``r, r + N, ...``; they share ``summary.csv``
    (merged under a lock); the COCO folder files are assembled here after all processes end."""
    import os

    import torch.multiprocessing as mp

    from seglab.errors import SeglabError

    node = args.node_rank if args.node_rank is not None else int(os.environ.get("NODE_RANK", os.environ.get("SLURM_NODEID", 0)))
    if not 0 <= node < args.num_nodes:
        raise SeglabError(f"--node-rank must be in [0, {args.num_nodes}), got {node}")
    failures = mp.get_context("spawn").Array("i", args.devices)
    mp.start_processes(_worker, args=(vars(args), [str(p) for p in inputs], node, failures), nprocs=args.devices,
                       join=True, start_method="spawn")
    if args.coco:
        from seglab.inference.slide_run import input_stem
        from seglab.inference.writers import output_paths, write_coco_folder

        write_coco_folder(args.output, [output_paths(args.output, input_stem(p), coco=True)["coco"] for p in inputs])
    world = args.devices * args.num_nodes
    mine = len([p for i, p in enumerate(inputs) if i % world // args.devices == node])
    done = mine - sum(failures)
    print(f"{done}/{mine} images predicted into {args.output} by {args.devices} processes"
          + (f" on node {node} of {args.num_nodes}" if args.num_nodes > 1 else ""))
    return 2 if sum(failures) else 0


def _worker(local_rank: int, flags: dict, inputs: list[str], node: int, failures) -> None:
    """One process of :func:`_run_parallel`: its share of the inputs, its own threads and device."""
    import os
    from pathlib import Path

    import torch

    from seglab.errors import SeglabError
    from seglab.inference import predict_files

    args = argparse.Namespace(**flags)
    if args.device.startswith("cuda") and ":" not in args.device:
        args.device = f"cuda:{local_rank}"
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.devices))
    world, rank = args.devices * args.num_nodes, node * args.devices + local_rank
    mine = [Path(p) for i, p in enumerate(inputs) if i % world == rank]
    count = 0

    def report(exc: SeglabError) -> None:
        nonlocal count
        count += 1
        print(f"seglab: error: {exc}", file=sys.stderr)

    if mine:
        predict_files(_load(args), mine, args.output, coco=args.coco, skip_existing=args.skip_existing,
                      workers=args.workers, on_error=report, tissue=args.tissue, mpp=args.mpp)
    failures[local_rank] = count

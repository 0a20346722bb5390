"""``seglab export``: a checkpoint as ONNX or TorchScript with a JSON sidecar; optional int8 ONNX."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript (+ JSON sidecar)",
        description=(
            "Write the checkpoint's network as ONNX or TorchScript (dynamic batch, height and width; height "
            "and width padded to the sidecar's pad_to) and FILE.json with the preprocessing, outputs, decoder, "
            "classes and µm/px. The export is checked against PyTorch (within 1e-4) before it is kept."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="seglab checkpoint (.ckpt)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="file format (default onnx)")
    p.add_argument("--out", required=True, help="model file to write (the sidecar is FILE.json)")
    p.add_argument("--quantize", choices=("int8",), default=None, help="int8 post-training quantization (ONNX only)")
    p.add_argument("--calibration", default=None, help="folder of images (or DIR/images + DIR/labels) to calibrate int8 on; with labels, AJI/PQ of fp32 vs int8 are printed")
    p.add_argument("--tile", type=int, default=None, help="sliding-window tile recorded in the sidecar and used for calibration (default: the checkpoint's patch size, at least 256)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from seglab.errors import SeglabError

    if args.quantize and args.format != "onnx":
        raise SeglabError("--quantize int8 needs --format onnx (ONNX Runtime runs the quantized model)")
    if args.quantize and not args.calibration:
        raise SeglabError("--quantize int8 needs --calibration DIR (images to calibrate the activation ranges on)")
    if args.tile is not None and args.tile < 32:
        raise SeglabError(f"--tile must be at least 32, got {args.tile}")
    if args.quantize:
        from seglab.export.quantize import export_int8

        result, scores = export_int8(args.checkpoint, args.out, args.calibration, tile=args.tile)
        q = result.sidecar["quantization"]
        print(f"wrote {result.model_file} (int8, {q['calibration_tiles']} calibration tiles) and {result.sidecar_file}")
        if scores is None:
            print("no labels in --calibration: AJI/PQ change not measured (give DIR/images + DIR/labels)")
        else:
            print(f"on {scores['images']} labelled images (mean per image): "
                  f"AJI fp32 {scores['aji_fp32']:.4f} int8 {scores['aji_int8']:.4f} ({scores['aji_int8'] - scores['aji_fp32']:+.4f}); "
                  f"PQ fp32 {scores['pq_fp32']:.4f} int8 {scores['pq_int8']:.4f} ({scores['pq_int8'] - scores['pq_fp32']:+.4f})")
        return 0
    from seglab.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.out, fmt=args.format, tile=args.tile)
    print(f"wrote {result.model_file} ({args.format}, {result.exporter} exporter; largest difference from PyTorch "
          f"{result.max_difference:.2g}) and {result.sidecar_file}")
    return 0

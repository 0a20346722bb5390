"""``seglab serve``: a checkpoint behind HTTP (FastAPI + uvicorn) with a web page at ``/``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a checkpoint over HTTP with a web page",
        description=(
            "POST /predict (multipart field 'file') returns instances as JSON, GeoJSON, an overlay PNG or the "
            "label TIFF (?format=json|geojson|png|tiff or Accept); GET /health, GET /model, /docs; a web page at /."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="seglab checkpoint (.ckpt)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "torchscript"), default="torch", help="what runs the network (default torch)")
    p.add_argument("--model-file", default=None, help="exported file for --backend onnxruntime|torchscript (default: exported beside the checkpoint)")
    p.add_argument("--tile", type=int, default=None, help="sliding-window tile (default: the checkpoint's patch size, at least 256)")
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest upload in MB (413 beyond; default 64)")
    p.add_argument("--max-pixels", type=int, default=64_000_000, help="largest declared image in pixels (413 beyond; default 64e6)")
    p.add_argument("--concurrency", type=int, default=1, help="predictions at once (default 1)")
    p.add_argument("--queue", type=int, default=8, help="requests waiting beyond those running (503 beyond; default 8)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request may wait in the queue (503 after; default 120)")
    p.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads per prediction (default: torch's)")
    p.add_argument("--allow-paths", nargs="*", default=None, metavar="DIR", help="folders whose files POST /predict may name (form field 'path')")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from seglab.errors import SeglabError

    if args.concurrency < 1 or args.queue < 0 or args.timeout <= 0 or args.max_upload_mb <= 0 or args.max_pixels < 1:
        raise SeglabError("--concurrency and --max-pixels must be >= 1, --queue >= 0, --timeout and --max-upload-mb > 0")
    try:
        import uvicorn
    except ImportError:
        raise SeglabError("seglab serve needs the serve extra: pip install 'seglab[serve]'") from None
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from seglab.inference import load_predictor
    from seglab.inference.predictor import default_tile
    from seglab.serve.app import create_app
    from seglab.serve.limits import Limits

    predictor = load_predictor(args.checkpoint, backend=args.backend, model_file=args.model_file)
    predictor.tile = args.tile or default_tile(predictor.meta)
    limits = Limits(max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels, concurrency=args.concurrency,
                    queue=args.queue, timeout=args.timeout)
    app = create_app(predictor, checkpoint=args.checkpoint, limits=limits, allow_paths=args.allow_paths)
    print(f"seglab serve: {args.checkpoint} ({predictor.meta['model']['name']}, backend {args.backend}) on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0

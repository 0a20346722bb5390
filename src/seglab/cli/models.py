"""``seglab models``: list the models, or analyse one (memory, receptive field, FLOPs).

Examples:
    seglab models
    seglab models --analyze allconv --size 512
    seglab models --analyze unet --size 256 --encoder resnet34 --batch 8
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list models (parameters, MACs at 256 x 256) or analyse one",
        description="List every model with its parameters and MACs at 256 x 256 (default config, "
        "num_classes=2), or with --analyze print the parameter vs activation memory of one training "
        "step, the theoretical receptive field and the FLOPs, measured on the real module graph.",
    )
    parser.add_argument("--analyze", metavar="NAME", help="model to analyse")
    parser.add_argument("--size", type=int, default=256, help="input height = width (default 256)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the training step (default 1)")
    parser.add_argument("--encoder", help="backbone for models that take one (e.g. resnet34, timm:efficientnet_b0)")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    parser.set_defaults(run=run)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def run(args: argparse.Namespace) -> int:
    import torch

    from seglab.analysis import count_flops, count_parameters, memory_profile, receptive_field
    from seglab.errors import ConfigError
    from seglab.models import DETECTION_MODELS, MODELS, create_model

    if args.size < 1 or args.batch < 1:
        raise ConfigError("--size and --batch must be positive")
    if args.in_channels < 1:
        raise ConfigError(f"--in-channels: must be >= 1, got {args.in_channels}")
    if args.analyze is None:
        print(f"{'model':<15}{'parameters':>14}{'GMACs@256':>12}  class")
        for name, cls in MODELS.items():
            with torch.device("meta"):
                model = create_model(name, num_classes=2)
            macs = count_flops(model, 256) / 2
            print(f"{name:<15}{count_parameters(model):>14,}{macs / 1e9:>12.2f}  {cls.__module__}.{cls.__name__}")
        for name, where in DETECTION_MODELS.items():  # data-dependent graph: no MAC count
            with torch.device("meta"):
                model = create_model(name, num_classes=2)
            print(f"{name:<15}{count_parameters(model):>14,}{'-':>12}  {where.replace(':', '.')}")
        return 0

    if args.analyze in DETECTION_MODELS:
        raise ConfigError(f"--analyze takes a segmentation model; {args.analyze!r} is a detection model")
    kwargs = {} if args.encoder is None else {"encoder": args.encoder}
    with torch.device("meta"):
        model = create_model(args.analyze, in_channels=args.in_channels, num_classes=2, **kwargs)
    mem = memory_profile(model, args.size, args.batch)
    rf = receptive_field(model, in_channels=args.in_channels, size=args.size)
    flops = count_flops(model, args.size, args.batch)
    label = args.analyze + (f" (encoder={args.encoder})" if args.encoder else "")
    print(f"{label}: one training step at {args.batch} x {args.in_channels} x {args.size} x {args.size}, float32")
    print(f"  parameters        {count_parameters(model):>14,}")
    print(f"  parameter memory  {_mib(mem.parameter_bytes):>14}  (+ as much for gradients, 2x for Adam state)")
    print(f"  activation memory {_mib(mem.activation_bytes):>14}  (saved for backward; {mem.activation_to_parameter_ratio:.1f}x the parameters)")
    print(f"  receptive field   {rf!s:>14}")
    print(f"  forward FLOPs     {flops / 1e9:>11.2f} G  ({flops / 2e9:.2f} GMACs)")
    return 0

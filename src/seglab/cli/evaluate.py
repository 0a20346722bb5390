"""``seglab evaluate``: score a folder of predictions against ground truth, print a table."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predicted label maps against ground truth",
        description="Pair files by stem (<stem>_instances.tif, <stem>_classes.png or <stem>.*) and print "
        "per-image scores plus the mean over images and the pooled aggregate. Instance: AJI, AJI+, PQ, "
        "SQ, DQ, F1 (IoU > 0.5), foreground Dice. Semantic: mIoU, pixel accuracy, Dice (255 ignored). "
        "Panoptic (GT a panoptic folder; predictions <stem>_instances.tif + <stem>_classes.png): per-class "
        "PQ/SQ/DQ and PQ, PQ_th, PQ_st (panopticapi), mPQ+ (CoNIC), mPQ and bPQ (PanNuke).",
    )
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted label maps")
    p.add_argument("--gt", required=True, metavar="DIR", help="ground-truth folder (its labels/ if present)")
    p.add_argument("--task", required=True, metavar="instance|semantic|panoptic", help="what the labels hold")
    p.add_argument("--num-classes", type=int, metavar="K", help="semantic classes (default: from the labels)")
    p.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from seglab.fileio import check_output_file, write_json_atomic
    from seglab.metrics.evaluate import evaluate_folders, format_table

    if args.json:
        check_output_file(args.json, "--json")
    report = evaluate_folders(args.pred, args.gt, task=args.task, num_classes=args.num_classes)
    print(format_table(report))
    if args.json:
        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    return 0

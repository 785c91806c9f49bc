"""Overfitting the four annotated photos: ``rtmo train`` from random weights, validated on the photos it trains on.

Not a test (it runs ~40 minutes on two cores): it shows that the whole training path learns — SimOTA targets, the
losses, AdamW, the schedule, EMA, both mode switches — by COCO keypoint AP of the EMA weights (what ``best.pth``
holds) on those photos, from ~0 before the first step. The defaults are what fitting four photos from random
weights takes (README, training): lr 2e-4, flip off, 256 px, and the RTMO switch with its lr bump in the last
epochs. Prints the curve as a table and, last, one JSON line.

    python -m rtmo_bench.overfit                       # 4 000 epochs, AP every 250
    python -m rtmo_bench.overfit --rtmo-switch-epoch 2701 --out runs/overfit
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from rtmo_bench.paths import ANNOTATIONS, PHOTOS

TARGET_AP = 0.5
# A twentieth of the recipe's 0.004 (a batch of 256; this is a batch of 4), and the schedule's eta_min, so the
# cosines hold it: at 0.004 the DCC's heatmaps lock on wrong bins, at 4e-4 it fits, then drifts off (dcc_fit).
OVERFIT_LR = 2e-4
# The validation photos are not flipped; with flip the model must fit their mirror images as well.
OVERFIT_FLIP_PROB = 0.0


class _ValidationLines(io.StringIO):
    """The training log, of which the validation lines also go to stderr: progress over a long run."""

    def write(self, text: str) -> int:
        if text.startswith("validation AP"):
            print(text, file=sys.stderr, flush=True)
        return super().write(text)


def main(argv: list[str] | None = None) -> int:
    from rtmo.train.checkpoints import initial_model
    from rtmo.train.pipeline import FLIP_PROB
    from rtmo.train.trainer import TrainOptions, train, validation_ap

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", default="random:tiny", help="zoo name, checkpoint or random:<size>")
    parser.add_argument("--epochs", type=int, default=4000, help="one iteration per epoch (batch of all four photos)")
    parser.add_argument("--val-every", type=int, default=250, help="epochs between AP measurements")
    parser.add_argument("--input-size", type=int, default=256, help="training and validation side")
    parser.add_argument(
        "--lr",
        type=float,
        default=OVERFIT_LR,
        help="base lr (default: %(default)s; the recipe's 0.004 belongs to a batch of 256, this is a batch of 4)",
    )
    parser.add_argument(
        "--rtmo-switch-epoch",
        type=int,
        default=None,
        help="as rtmo train's (default: the third-last epoch, the latest the schedule allows: the bump's 2.5x lr "
        "undoes a memorised fit)",
    )
    parser.add_argument("--no-rtmo-switch", action="store_true", help="as rtmo train's")
    parser.add_argument(
        "--flip-prob",
        type=float,
        default=OVERFIT_FLIP_PROB,
        help=f"RandomFlip's probability (default: %(default)s; the recipe's {FLIP_PROB})",
    )
    parser.add_argument("--out", type=Path, default=None, help="keep last.pth and best.pth here (default: discarded)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipe-pipeline",
        action="store_true",
        help="stage 1 with Mosaic, affine, MixUp and random resize, as the recipe (default: stage 2's pipeline at one "
        "size throughout, which is what fitting four photos needs)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rtmo_switch_epoch is None and not args.no_rtmo_switch:
        args.rtmo_switch_epoch = args.epochs - 2  # 1-based: the bump, the second cosine and the last stage after it

    model, _ = initial_model(args.source, num_keypoints=17, seed=args.seed)
    start = validation_ap(model, ANNOTATIONS, PHOTOS, input_size=args.input_size)
    assert start is not None  # COCO's 17 keypoints: the evaluator knows them
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        summary = train(
            TrainOptions(
                annotations=ANNOTATIONS,
                images=PHOTOS,
                val_annotations=ANNOTATIONS,
                val_images=PHOTOS,
                val_interval=args.val_every,
                out_dir=out,
                source=args.source,
                epochs=args.epochs,
                batch_size=4,
                lr=args.lr,
                input_size=args.input_size,
                seed=args.seed,
                resume=False,
                checkpoint_interval=args.epochs,
                strong_augmentation=args.recipe_pipeline,
                random_resize=args.recipe_pipeline,
                rtmo_switch_epoch=args.rtmo_switch_epoch,
                rtmo_mode_switch=not args.no_rtmo_switch,
                flip_prob=args.flip_prob,
            ),
            log=_ValidationLines(),
        )
    seconds = time.perf_counter() - started
    losses = summary["history"]["loss"]
    curve = [dict(epoch=0, AP=start["AP"], AP50=start["AP .5"], loss=None)] + [
        dict(epoch=row["epoch"], AP=row["AP"], AP50=row["AP .5"], loss=losses[row["epoch"] - 1])
        for row in summary["history"]["val"]
    ]
    schedule = summary["schedule"]
    print(
        f"{args.source}, 4 photos, {args.epochs} epochs (1 iteration each), lr {args.lr:g}, flip {args.flip_prob:g}; "
        + ("no RTMO switch" if args.no_rtmo_switch else f"RTMO switch from epoch {schedule.rtmo_switch_epoch + 1}")
        + f", YOLOX-Pose switch from epoch {schedule.yoloxpose_switch_epoch + 1}; {seconds:.0f} s"
    )
    print(f"{'epoch':>6} {'loss':>8} {'AP':>7} {'AP50':>7}")
    for row in curve:
        loss = "–" if row["loss"] is None else f"{row['loss']:.3f}"
        print(f"{row['epoch']:>6} {loss:>8} {row['AP']:7.3f} {row['AP50']:7.3f}")
    final = curve[-1]["AP"]
    print(
        json.dumps(
            dict(
                benchmark="overfit",
                source=args.source,
                epochs=args.epochs,
                input_size=args.input_size,
                lr=args.lr,
                rtmo_switch_epoch=None if args.no_rtmo_switch else schedule.rtmo_switch_epoch + 1,
                flip_prob=args.flip_prob,
                ap_before=round(start["AP"], 4),
                ap_final=round(final, 4),
                ap_best=round(max(row["AP"] for row in curve), 4),
                target_ap=TARGET_AP,
                meets_target=final > TARGET_AP,
                curve=[[row["epoch"], round(row["AP"], 4)] for row in curve],
                seconds=round(seconds, 1),
            )
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

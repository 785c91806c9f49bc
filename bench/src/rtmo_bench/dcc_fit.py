"""The DCC alone on fixed positives: how well AdamW fits them at each learning rate (the overfit benchmark's lr).

From random weights, one batch of the four annotated photos letterboxed to ``--input-size``: SimOTA picks the
positives once (``RTMOCriterion``), then every weight but the DCC's stays fixed and the DCC is fitted with MLECC, the
recipe's loss on it, by AdamW with the recipe's clipping, for ``--steps`` at each ``--lr`` from the same start. The
bins span the annotated boxes (padded by ``bbox_padding`` as MMPose pads the predicted ones), so every target lies
inside them whatever the random boxes are. Prints the MLECC loss and the keypoint error quantiles per lr, and one
JSON line.

    python -m rtmo_bench.dcc_fit --lr 0.004 4e-4 1e-4 --steps 2000
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from rtmo_bench.paths import ANNOTATIONS, PHOTOS

QUANTILES = (0.5, 0.75, 0.9)
NEAR_PX = 2.0


def fixed_positives(size: int, seed: int) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The random model's DCC and, for the positives SimOTA assigns on the batch, the DCC's inputs and targets."""
    from rtmo.candidates import flatten_levels, make_priors
    from rtmo.train.checkpoints import initial_model
    from rtmo.train.criterion import RTMOCriterion, Stage
    from rtmo.train.dataset import CocoKeypointDataset
    from rtmo.train.targets import ImageTargets

    dataset = CocoKeypointDataset(ANNOTATIONS, PHOTOS)
    model, _ = initial_model("random:tiny", num_keypoints=17, seed=seed)
    model.train()
    canvases, targets = zip(*(sample.letterboxed(size) for sample in dataset.samples))
    images = torch.from_numpy(np.stack(canvases).transpose(0, 3, 1, 2).astype(np.float32))
    targets = [ImageTargets(**{k: torch.from_numpy(v) for k, v in t.items()}) for t in targets]
    criterion = RTMOCriterion(dataset.keypoint_set.sigmas)
    with torch.no_grad():
        step = criterion(model, images, targets, stage=Stage())
        pose_levels = model.head.head_module.forward_train(model.neck(model.backbone(images)))[4]
    pose = flatten_levels(pose_levels)
    points, _ = make_priors((size, size), model.config.featmap_strides)
    rows = {name: [] for name in ("pose_vecs", "priors", "bboxes", "keypoints", "visible", "areas")}
    for image, (assignment, target) in enumerate(zip(step.assignments, targets)):
        chosen = assignment.positive
        people = assignment.gt_index[chosen]
        rows["pose_vecs"].append(pose[image, chosen])
        rows["priors"].append(torch.from_numpy(points)[chosen].float())
        rows["bboxes"].append(target.bboxes[people])
        rows["keypoints"].append(target.keypoints[people])
        rows["visible"].append(target.keypoints_visible[people])
        rows["areas"].append(target.areas[people])
    inputs = {name: torch.cat(values) for name, values in rows.items()}
    boxes = inputs.pop("bboxes")
    inputs["bbox_cs"] = torch.cat(
        ((boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * model.config.bbox_padding), 1
    )
    return model.head.dcc, inputs


def fit(dcc: torch.nn.Module, inputs: dict[str, torch.Tensor], *, lr: float, steps: int) -> list[dict]:
    """AdamW on a copy of ``dcc`` alone; the loss and error quantiles every 250 steps and at the end."""
    from rtmo.train.losses import mle_cc_loss
    from rtmo.train.optim import GRAD_CLIP_MAX_NORM

    dcc = copy.deepcopy(dcc).train()
    optimizer = torch.optim.AdamW(dcc.parameters(), lr=lr, weight_decay=0.0)
    visible = inputs["visible"] > 0
    curve = []
    for step in range(steps + 1):
        keypoints, heatmaps, spreads = dcc.forward_train(inputs["pose_vecs"], inputs["bbox_cs"], inputs["priors"])
        targets = dcc.target_heatmaps(inputs["keypoints"], inputs["bbox_cs"], spreads, inputs["areas"])
        loss = mle_cc_loss(heatmaps, targets, inputs["visible"]).mean()
        if step % 250 == 0 or step == steps:
            errors = (keypoints.detach() - inputs["keypoints"]).norm(dim=-1)[visible]
            quantiles = torch.quantile(errors, torch.tensor(QUANTILES)).tolist()
            curve.append(
                dict(
                    step=step,
                    mle=round(float(loss.detach()), 3),
                    **{f"p{round(q * 100)}_px": round(v, 2) for q, v in zip(QUANTILES, quantiles)},
                    near=round(float((errors < NEAR_PX).float().mean()), 3),
                    top_probability=round(float(heatmaps[0].detach().max(-1).values.mean()), 3),
                )
            )
        if step == steps:
            break
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dcc.parameters(), GRAD_CLIP_MAX_NORM)
        optimizer.step()
    return curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[4e-3, 4e-4, 1e-4])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dcc, inputs = fixed_positives(args.input_size, args.seed)
    visible = int((inputs["visible"] > 0).sum())
    print(
        f"DCC of random:tiny alone, {len(inputs['pose_vecs'])} positives ({visible} labelled keypoints) of the four "
        f"photos at {args.input_size} px, AdamW + clip, {args.steps} steps per lr"
    )
    print(f"{'lr':>8} {'step':>5} {'mle':>7} {'p50 px':>7} {'p75 px':>7} {'p90 px':>7} {'<2 px':>6} {'top p':>6}")
    results = {}
    for lr in args.lr:
        started = time.perf_counter()
        curve = fit(dcc, inputs, lr=lr, steps=args.steps)
        for row in curve:
            print(
                f"{lr:>8.0e} {row['step']:>5} {row['mle']:>7.3f} {row['p50_px']:>7.2f} {row['p75_px']:>7.2f} "
                f"{row['p90_px']:>7.2f} {row['near']:>6.2f} {row['top_probability']:>6.2f}"
            )
        results[f"{lr:g}"] = dict(curve=curve, seconds=round(time.perf_counter() - started, 1))
    print(json.dumps(dict(benchmark="dcc_fit", input_size=args.input_size, steps=args.steps, lr=results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""MMPose RTMO reference harness for the parity tests.

Runs INSIDE the MMPose reference venv (see setup_venv.sh next to this file); it
imports mmpose/mmengine/mmcv and nothing from our project.

Subcommands (all print one JSON line on stdout; logs go to stderr):

  check
      Import mmpose.apis (installing the placeholders if needed), print versions.

  make-checkpoint --dataset coco|body7|crowdpose --size t|s|m|l --out X.pth
                  --calib-image IMG [IMG ...] [--seed N] [--format legacy|zip]
                  [--dcc-heatmap-std S]
      Build the model from the config shipped in the mmpose wheel, give it
      deterministic random-but-meaningful weights (see make_checkpoint()) and
      save {'meta': ..., 'state_dict': ...} like an MMPose model-zoo .pth.

  make-runner-checkpoint --dataset ... --size ... --out-dir DIR [--seed N] [--steps N]
                         [--no-ema-hook]
      MMEngine's Runner built from the config (optim_wrapper, param_scheduler,
      EMAHook), one epoch of a few optimizer steps with MMEngine's hooks, whose
      CheckpointHook writes DIR/epoch_1.pth (meta, state_dict, message_hub,
      optimizer, param_schedulers, ema_state_dict) and, after a validation,
      DIR/best_coco_AP_epoch_1.pth (no optimizer/schedulers); plus
      DIR/expected_weights.pt: the source and EMA model tensors at save time.

  predict --dataset ... --size ... --checkpoint X.pth --images IMG [IMG ...]
          --out OUT.npz [--score-thr 0.1] [--nms-thr 0.65] [--threads N]
          [--float64]
      Run mmpose.apis.inference_bottomup on each image and save the network
      input, raw per-level head outputs and final pred_instances (npz keys in
      predict()). --float64 runs inference_bottomup once more with the whole
      model and its input in float64 and saves those pred_instances too
      (keys img{i}_f64_*): the reference that float32 rounding is measured
      against.

  coco-metric --annotations ANN.json --predictions P.json|P.npz
              [--iou-type keypoints|keypoints_crowd]
      Score predictions with MMPose's own CocoMetric configured as the RTMO
      configs configure it (score_mode='bbox', nms_mode='none'; CrowdPose:
      iou_type='keypoints_crowd', use_area=False). P.json: COCO keypoint
      results ([x, y, score] triplets, person score); P.npz: predict's output,
      images matched to annotation file names.

  train-step --dataset ... --size ... --checkpoint X.pth --batch B.npz --out OUT.npz
             [--float64] [--rtmo-switch] [--yoloxpose-switch] [--lr LR]
      One training iteration of MMPose's own code on a prepared batch (B.npz:
      inputs (B, 3, H, W) BGR 0-255 and img{i}_{bboxes,labels,keypoints,
      keypoints_visible,areas}, augmentation already applied): the model in
      train mode, BottomupPoseEstimator.loss, parse_losses, backward; then
      the config's optim wrapper (paramwise AdamW, grad clip) steps once at
      --lr and the config's EMA (ExpMomentumEMA, update_buffers) updates
      twice (before and after the step). --rtmo-switch / --yoloxpose-switch
      set what RTMOModeSwitchHook / YOLOXPoseModeSwitchHook set. OUT.npz:
      img{i}_gt_inds / img{i}_max_overlaps (the assigner's result),
      loss_<term>, grad/<param>, param_groups (JSON), step/<param>, ema/<key>.

  lr-schedule --dataset ... --size ... --epochs E --iters-per-epoch N
              [--base-lrs LR,LR] [--schedule JSON]
      MMEngine's own schedulers built from the config's param_scheduler (or
      the given one), stepped as its ParamSchedulerHook steps them; prints
      the lr of every iteration per group and the configured schedule.

  bench-train --dataset ... --size ... --checkpoint X.pth --batch B.npz
              [--iters N] [--warmup N] [--threads N]
      Training iterations of MMPose's own code on train-step's batch file:
      loss, parse_losses, OptimWrapper.update_params (backward, clip, AdamW),
      ExpMomentumEMA update; prints images/s and the peak RSS.

  hsv --batch B.npz --gains H,S,V --out OUT.npz
      MMPose's YOLOXHSVRandomAug on B.npz's img with its random draw replaced
      by the given gains; OUT.npz: img.

  random-flip --batch B.npz --out OUT.npz
      MMPose's RandomFlip (horizontal, prob 1: the draw that flips) on
      B.npz's img (H, W, 3) uint8, bboxes xyxy, keypoints, keypoints_visible
      and flip_indices; OUT.npz holds the same keys after the flip.

  mosaic --batch B.npz --centre X,Y --out OUT.npz
      MMPose's Mosaic (640 recipe: pad 114; img_scale from --side) on B.npz's
      images 0..3 (img{i}, img{i}_{bboxes,keypoints,keypoints_visible,areas})
      with its centre draw replaced by the given pixel centre; OUT.npz: img,
      bboxes, keypoints, keypoints_visible, areas (also for the commands below).

  random-affine --batch B.npz --side S (--draw JSON | --stage2) --out OUT.npz
      MMPose's BottomupRandomAffine on img0 as the recipe configures it:
      stage 1 (perspective, uniform) with _get_transform_params returning the
      draw {"shift_xy", "scale", "rotation_deg", "shear_deg"}; --stage2: the
      stage-2 settings (every probability 0, scale_type long).

  mixup --batch B.npz --side S --draw JSON --out OUT.npz
      MMPose's YOLOXMixUp (ratio 0.8-1.6) on img0 with img1 as the partner and
      its random calls answering the draw {"jitter", "flip", "offset_xy"}.

  filter-annotations --batch B.npz --out OUT.npz
      MMPose's FilterAnnotations(by_kpt=True, by_box=True, keep_empty=False).

  batch-resize --batch B.npz --size H,W --out OUT.npz
      MMPose's BatchSyncRandomResize (480-800, divisor 32) with the size it
      drew before set to H,W, on inputs (B, 3, h, w) and img{i}_* targets;
      OUT.npz: inputs, img{i}_{bboxes,keypoints,areas}.

  count-params --dataset ... --size ...
  bench --dataset ... --size ... [--checkpoint X.pth] --image IMG
        [--threads N] [--iters N] [--warmup N]
"""

import argparse
import copy
import importlib
import json
import os
import sys
import time
import types
from pathlib import Path

# --------------------------------------------------------------------------
# Import placeholders (recipe: /work/shared/reference/mmpose-reference-venv.md)
# --------------------------------------------------------------------------
PLACEHOLDERS_INSTALLED = []


def _placeholder_class(qualname):

    class _Placeholder:
        """Stand-in for a class RTMO never uses; refuses to be built."""

        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                f"{qualname} is an import placeholder installed by "
                "run_reference.py (the real one is not installed); RTMO "
                "must never instantiate it."
            )

    _Placeholder.__name__ = qualname.rsplit(".", 1)[-1]
    _Placeholder.__qualname__ = _Placeholder.__name__
    _Placeholder.__module__ = qualname.rsplit(".", 1)[0]
    return _Placeholder


def _drop_modules(prefix):
    for name in list(sys.modules):
        if name == prefix or name.startswith(prefix + "."):
            del sys.modules[name]


def install_placeholders():
    """Install mmcv.ops / torchvision.transforms stand-ins only if the real
    imports fail. Idempotent."""
    # 1. mmcv.ops (mmcv-lite has no mmcv._ext). EDPose imports
    #    MultiScaleDeformableAttention unconditionally; DEKR/PoseWarper
    #    import the deformable convs.
    try:
        importlib.import_module("mmcv.ops")
    except Exception:  # ImportError / ModuleNotFoundError: mmcv._ext
        _drop_modules("mmcv.ops")
        import mmcv

        ops = types.ModuleType("mmcv.ops")
        ops.__doc__ = "run_reference.py placeholder for mmcv.ops"
        for n in ("MultiScaleDeformableAttention", "DeformConv2d", "ModulatedDeformConv2d"):
            setattr(ops, n, _placeholder_class(f"mmcv.ops.{n}"))
        sys.modules["mmcv.ops"] = ops
        mmcv.ops = ops
        PLACEHOLDERS_INSTALLED.append("mmcv.ops")
    # 2. torchvision.transforms.ToPILImage (mmpose/visualization/simcc_vis.py)
    try:
        from torchvision.transforms import ToPILImage  # noqa: F401
    except Exception:
        _drop_modules("torchvision")
        tv = types.ModuleType("torchvision")
        tv.__doc__ = "run_reference.py placeholder for torchvision"
        tv.__path__ = []  # make it a package
        tv.__version__ = "placeholder"  # MMEngine's Runner logs it (collect_env)
        tr = types.ModuleType("torchvision.transforms")
        tr.ToPILImage = _placeholder_class("torchvision.transforms.ToPILImage")
        tv.transforms = tr
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tr
        PLACEHOLDERS_INSTALLED.append("torchvision.transforms")


install_placeholders()

import mmpose  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmpose.apis import inference_bottomup, init_model  # noqa: E402

# --------------------------------------------------------------------------
# Configs shipped in the wheel
# --------------------------------------------------------------------------
CONFIG_NAMES = {
    ("coco", "s"): "coco/rtmo-s_8xb32-600e_coco-640x640.py",
    ("coco", "m"): "coco/rtmo-m_16xb16-600e_coco-640x640.py",
    ("coco", "l"): "coco/rtmo-l_16xb16-600e_coco-640x640.py",
    ("body7", "t"): "body7/rtmo-t_8xb32-600e_body7-416x416.py",
    ("body7", "s"): "body7/rtmo-s_8xb32-600e_body7-640x640.py",
    ("body7", "m"): "body7/rtmo-m_16xb16-600e_body7-640x640.py",
    ("body7", "l"): "body7/rtmo-l_16xb16-600e_body7-640x640.py",
    ("crowdpose", "s"): "crowdpose/rtmo-s_8xb32-700e_crowdpose-640x640.py",
    ("crowdpose", "m"): "crowdpose/rtmo-m_16xb16-700e_crowdpose-640x640.py",
    ("crowdpose", "l"): "crowdpose/rtmo-l_16xb16-700e_crowdpose-640x640.py",
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def config_path(dataset, size):
    key = (dataset, size)
    if key not in CONFIG_NAMES:
        raise SystemExit(f"no RTMO config for dataset={dataset} size={size}; available: {sorted(CONFIG_NAMES)}")
    root = Path(mmpose.__file__).parent / ".mim" / "configs" / "body_2d_keypoint" / "rtmo"
    p = root / CONFIG_NAMES[key]
    if not p.is_file():
        raise SystemExit(f"config not found in the mmpose wheel: {p}")
    return str(p)


def build_model(args, checkpoint=None, score_thr=None, nms_thr=None):
    from mmengine.config import Config

    cfg = Config.fromfile(getattr(args, "config", None) or config_path(args.dataset, args.size))
    if score_thr is not None:
        cfg.model.test_cfg.score_thr = float(score_thr)
    if nms_thr is not None:
        cfg.model.test_cfg.nms_thr = float(nms_thr)
    model = init_model(cfg, checkpoint, device="cpu")
    model.eval()
    return model


def preprocess(model, img_path):
    """Exactly what inference_bottomup + test_step do before the backbone."""
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate

    pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
    data_info = dict(img_path=img_path)
    data_info.update(model.dataset_meta)
    batch = pseudo_collate([pipeline(data_info)])
    data = model.data_preprocessor(batch, False)
    return data["inputs"], data["data_samples"]


def flat(x):
    """(B, C, H, W) per level list -> (B, sum HW, C), MMPose order."""
    return torch.cat([t.permute(0, 2, 3, 1).flatten(1, 2) for t in x], dim=1)


def priors_and_strides(head, cls_scores):
    sizes = [c.shape[2:] for c in cls_scores]
    pri = head.prior_generator.grid_priors(sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device)
    strides = [torch.full((s.numel(),), st, dtype=cls_scores[0].dtype) for s, st in zip(sizes, head.featmap_strides)]
    return torch.cat(pri), torch.cat(strides)


# --------------------------------------------------------------------------
# check / count-params
# --------------------------------------------------------------------------
def cmd_check(args):
    import mmcv
    import mmdet
    import mmengine

    print(
        json.dumps(
            dict(
                ok=True,
                python=sys.version.split()[0],
                torch=torch.__version__,
                numpy=np.__version__,
                mmpose=mmpose.__version__,
                mmengine=mmengine.__version__,
                mmcv=mmcv.__version__,
                mmdet=mmdet.__version__,
                placeholders=PLACEHOLDERS_INSTALLED,
            )
        )
    )


def cmd_count_params(args):
    model = build_model(args)
    params = list(model.parameters())
    sd = model.state_dict()
    n = sum(p.numel() for p in params)
    n_dcc_train = sum(p.numel() for k, p in model.named_parameters() if ".sigma_fc." in k or ".out_kpt_reg." in k)
    print(
        json.dumps(
            dict(
                dataset=args.dataset,
                size=args.size,
                config=os.path.basename(config_path(args.dataset, args.size)),
                total_params=n,
                total_params_M=round(n / 1e6, 4),
                num_parameter_tensors=len(params),
                num_state_dict_keys=len(sd),
                num_state_dict_elements=sum(v.numel() for v in sd.values()),
                training_only_params=n_dcc_train,
                input_size=list(model.cfg.model.test_cfg.input_size),
                num_keypoints=int(model.head.num_keypoints),
            )
        )
    )


# --------------------------------------------------------------------------
# make-checkpoint
# --------------------------------------------------------------------------
RIDGE = 1e-2  # ridge strength (x mean feature variance) of the out_cls fit
BN_TYPES = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)


def perturb_parameters(model, gen):
    """Seeded perturbation of every parameter so the weights are neither
    PyTorch's default init nor symmetric. BN affine params get O(1) spread."""
    bn_params = {}
    for mname, m in model.named_modules():
        if isinstance(m, BN_TYPES):
            bn_params[f"{mname}.weight"] = "w"
            bn_params[f"{mname}.bias"] = "b"
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = p.shape
            if bn_params.get(name) == "w":
                p.copy_(0.5 + torch.rand(shape, generator=gen))
            elif bn_params.get(name) == "b":
                p.copy_(0.2 * torch.randn(shape, generator=gen))
            else:
                rms = float(p.pow(2).mean().sqrt()) if p.numel() > 0 else 0.0
                if rms == 0.0:
                    rms = 0.05
                p.mul_(1.0 + 0.2 * torch.randn(shape, generator=gen))
                p.add_(0.1 * rms * torch.randn(shape, generator=gen))


def bn_layers(module):
    return [m for m in module.modules() if isinstance(m, BN_TYPES)]


def recalibrate_bn(model, inputs_list, passes=3):
    """Re-estimate BatchNorm running stats of backbone/neck/head convs in train
    mode with a cumulative moving average (momentum=None)."""
    layers = bn_layers(model.backbone) + bn_layers(model.neck) + bn_layers(model.head.head_module)
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            for x in inputs_list:
                model.head.head_module(model.neck(model.backbone(x)))
    for m, mom in zip(layers, saved):
        m.momentum = mom
    model.eval()
    return len(layers)


def head_outputs(model, x):
    with torch.no_grad():
        feats = model.extract_feat(x)
        cls, bbox, _, vis, pose = model.head.forward(feats)
    return cls, bbox, vis, pose


def affine_rescale_conv(conv, outs, target_mean, target_std):
    """Rescale a 1x1 conv per output channel so its outputs over `outs`
    (list of (B,C,H,W) tensors it produced) get the given mean/std."""
    y = torch.cat([o.permute(1, 0, 2, 3).flatten(1) for o in outs], dim=1)
    m, s = y.mean(1), y.std(1).clamp(min=1e-6)
    tm = torch.as_tensor(target_mean, dtype=y.dtype).expand_as(m)
    ts = torch.as_tensor(target_std, dtype=y.dtype).expand_as(s)
    a = ts / s
    with torch.no_grad():
        conv.weight.mul_(a.view(-1, 1, 1, 1))
        conv.bias.copy_(a * (conv.bias - m) + tm)


def rescale_outputs(model, inputs_list):
    """Give the dense output layers plausible ranges (per level)."""
    hm = model.head.head_module
    strides = model.head.featmap_strides
    outs = [head_outputs(model, x) for x in inputs_list]
    for lvl, stride in enumerate(strides):
        # bbox: (dx, dy, log w, log h) in stride units. Person-like boxes:
        # w ~ 100 px / h ~ 180 px at stride 16, 160 / 300 px at stride 32;
        # small spread so neighbouring anchors overlap (NMS acts) and
        # outlier anchors do not get absurd boxes.
        if stride <= 16:
            wh = (100.0, 180.0)
        else:
            wh = (160.0, 300.0)
        mean = [0.0, 0.0, float(np.log(wh[0] / stride)), float(np.log(wh[1] / stride))]
        std = [0.1, 0.1, 0.12, 0.12]
        affine_rescale_conv(hm.out_bbox[lvl], [o[1][lvl] for o in outs], mean, std)
        # keypoint visibility logits: spread over (0, 1) after sigmoid.
        affine_rescale_conv(hm.out_kpt_vis[lvl], [o[2][lvl] for o in outs], 0.0, 1.5)
        # class logits: unit spread; the level bias is set later.
        affine_rescale_conv(hm.out_cls[lvl], [o[0][lvl] for o in outs], 0.0, 1.0)
        # pose vectors: unit spread (they feed Linear + BN1d anyway).
        affine_rescale_conv(hm.out_pose[lvl], [o[3][lvl] for o in outs], 0.0, 1.0)


def dense_decode(model, x):
    """Scores, decoded boxes (input px), priors, strides, pose vecs."""
    head = model.head
    cls, bbox, vis, pose = head_outputs(model, x)
    pri, strd = priors_and_strides(head, cls)
    logits = flat(cls)[0, :, 0]
    boxes = head.decode_bbox(flat(bbox), pri, strd)[0]
    return dict(
        logits=logits,
        boxes=boxes,
        priors=pri,
        strides=strd,
        pose=flat(pose)[0],
        vis=flat(vis)[0],
        level=torch.cat([torch.full((c.shape[2] * c.shape[3],), i) for i, c in enumerate(cls)]),
    )


def calibrate_dcc(model, inputs_list, target_hm_std=3.0):
    """BN1d in dcc.pose_to_kpts on the pose vectors of all anchors (train
    mode, cumulative), then scale x_fc / y_fc so the 1-D heatmap logits have a
    moderate spread (neither uniform nor one-hot softmax)."""
    dcc = model.head.dcc
    dd = [dense_decode(model, x) for x in inputs_list]
    bn = dcc.pose_to_kpts[1]
    bn.reset_running_stats()
    mom = bn.momentum
    bn.momentum = None
    dcc.train()
    with torch.no_grad():
        for _ in range(3):
            for d in dd:
                dcc.pose_to_kpts(d["pose"])
    bn.momentum = mom
    dcc.eval()
    # heatmap logit spread on plausible boxes (top anchors by score)
    from mmpose.structures.bbox import bbox_xyxy2cs

    x_std, y_std = [], []
    with torch.no_grad():
        for d in dd:
            idx = d["logits"].argsort(descending=True)[:64]
            bbox_cs = torch.cat(bbox_xyxy2cs(d["boxes"][idx], model.head.bbox_padding), dim=1)
            xe, ye = dcc._get_bin_enc(bbox_cs, d["priors"][idx])
            xh, yh = dcc._pose_feats_to_heatmaps(d["pose"][idx], xe, ye)
            x_std.append(xh.std(-1).mean())
            y_std.append(yh.std(-1).mean())
    with torch.no_grad():
        for fc, s in ((dcc.x_fc, torch.stack(x_std).mean()), (dcc.y_fc, torch.stack(y_std).mean())):
            f = target_hm_std / float(s)
            fc.weight.mul_(f)
            fc.bias.mul_(f)


def nms_keep(boxes, scores, thr):
    from mmpose.evaluation.functional import nms_torch

    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    return nms_torch(boxes, scores, thr)


def iou_margin(boxes, thr):
    """Smallest |IoU - thr| over all pairs (parity safety margin)."""
    from mmpose.structures.bbox import bbox_overlaps

    if boxes.shape[0] < 2:
        return float("inf")
    ious = bbox_overlaps(boxes, boxes)
    iu = torch.triu_indices(len(boxes), len(boxes), 1)
    return float((ious[iu[0], iu[1]] - thr).abs().min())


def evaluate_selection(d, logits, logit_thr, nms_thr, cache=None):
    """Counts and parity margins for one image given its dense logits."""
    sel = logits > logit_thr
    thr_margin = float((logits - logit_thr).abs().min())
    idx = sel.nonzero()[:, 0]
    ck = tuple(idx.tolist())
    if cache is not None and ck in cache:
        r = dict(cache[ck])
    else:
        boxes, lg = d["boxes"][idx], logits[idx]
        keep = nms_keep(boxes, lg.sigmoid(), nms_thr)
        lv = d["level"][idx][keep]
        nlev = int(d["level"].max()) + 1
        r = dict(
            num_above_thr=len(idx),
            num_after_nms=int(len(keep)),
            per_level=[int((d["level"][idx] == i).sum()) for i in range(nlev)],
            kept_per_level=[int((lv == i).sum()) for i in range(nlev)],
            iou_margin=iou_margin(boxes, nms_thr),
        )
        if cache is not None:
            cache[ck] = dict(r)
    # distance of every logit from the threshold, and between consecutive
    # selected logits (sort order / NMS order must not hinge on rounding)
    srt = logits[idx].sort(descending=True)[0]
    gap = float((srt[:-1] - srt[1:]).min()) if len(srt) > 1 else float("inf")
    r.update(thr_margin=thr_margin, logit_margin=min(thr_margin, gap), order_margin=gap)
    return r


def search_shift(dd, logits_list, score_thr, nms_thr, max_k=40):
    """Deterministic search of per-level logit shifts. Targets: on the first
    calibration image 10-40 anchors pass score_thr and NMS removes some,
    leaving >= 3; every other calibration image keeps >= 3 (and <= 60 pass).
    Preferences, in order: safe parity margins (no logit within 0.02 of the
    threshold, no two selected logits within 1e-3, no pair IoU within 2e-3
    of nms_thr), every level represented (on some image, then on every
    image), NMS at work, several instances everywhere, then fewer
    instances."""
    logit_thr = float(np.log(score_thr / (1 - score_thr)))
    d0, lg0 = dd[0], logits_list[0]
    nlev = int(d0["level"].max()) + 1
    cands = []
    for lvl in range(nlev):
        lg = lg0[d0["level"] == lvl].sort(descending=True)[0]
        c = [(0, float(logit_thr - lg[0] - 0.5))]  # nothing from this level
        for k in range(1, min(max_k, len(lg) - 1) + 1):
            mid = 0.5 * (lg[k - 1] + lg[k])
            c.append((k, float(logit_thr - mid)))
        cands.append(c)
    best = None
    caches = [dict() for _ in dd]
    import itertools

    for combo in itertools.product(*cands):
        if not 10 <= sum(k for k, _ in combo) <= 40:
            continue
        shifts = torch.tensor([sh for _, sh in combo])
        r = []
        for i, (d, lg) in enumerate(zip(dd, logits_list)):
            x = evaluate_selection(d, lg + shifts[d["level"]], logit_thr, nms_thr, caches[i])
            r.append(x)
            if i == 0:
                ok = x["num_after_nms"] >= 3 and x["num_after_nms"] < x["num_above_thr"]
            else:
                ok = 3 <= x["num_after_nms"] and x["num_above_thr"] <= 60
            if not ok:
                break
        if not ok:
            continue
        first = r[0]
        supp = first["num_above_thr"] - first["num_after_nms"]
        thr_m = min(x["thr_margin"] for x in r)
        om = min(x["order_margin"] for x in r)
        im = min(x["iou_margin"] for x in r)
        key = (
            thr_m >= 0.02 and om >= 1e-3 and im >= 2e-3,
            # every level (stride) has a kept instance on some image
            min(np.sum([x["kept_per_level"] for x in r], 0)) >= 1,
            all(min(x["kept_per_level"]) >= 1 for x in r),
            min(supp, 5),
            min(min(x["num_after_nms"] for x in r), 5),
            -max(x["num_after_nms"] for x in r),
            min(thr_m, 0.1) + min(om, 0.01) + min(im, 0.02),
        )
        if best is None or key > best[0]:
            best = (key, shifts, r)
    return best


def choose_cls_layer(model, inputs_list, metas, score_thr, nms_thr, gen, num_candidates=8):
    """Set out_cls (per level, 1x1 conv C->1). Candidate 0 keeps the
    perturbed weights; candidates 1.. are seeded random directions. Each
    candidate is standardised per level (mean 0 / std 1 over all calibration
    anchors) and its per-level bias shift searched (search_shift); the best
    candidate by the search key wins. Returns (report, info)."""
    head = model.head
    hm = head.head_module
    nlev = len(head.featmap_strides)
    dd = [dense_decode(model, x) for x in inputs_list]
    # cls features (input of out_cls) per image and level, (H, W, C)
    cls_maps = []
    with torch.no_grad():
        for x in inputs_list:
            feats = model.extract_feat(x)
            per = []
            for lvl in range(nlev):
                cf = feats[lvl].split(feats[lvl].size(1) // 2, 1)[0]
                per.append(hm.conv_cls[lvl](cf)[0].permute(1, 2, 0).double())
            cls_maps.append(per)
    cls_feats = [[f.reshape(-1, f.shape[-1]).float() for f in per] for per in cls_maps]
    content_boxes = []  # image area in network-input pixels (x0, y0, x1, y1)
    for meta in metas:
        c = np.asarray(meta["input_center"], np.float64)
        sc = np.asarray(meta["input_scale"], np.float64)
        isz = np.asarray(meta["input_size"], np.float64)
        h, w = meta["ori_shape"][:2]
        lo = (np.zeros(2) - c + 0.5 * sc) * isz / sc
        hi = (np.array([w, h], np.float64) - c + 0.5 * sc) * isz / sc
        content_boxes.append((lo[0], lo[1], hi[0], hi[1]))
    # Candidate j >= 1: a ridge fit of the logit map to a seeded "objects"
    # target, i.e. Gaussian blobs at random positions inside each image's
    # content area (3 blobs on stride 16, 2 on stride 32, per image). Random
    # directions give salt-and-pepper score maps whose top anchors are
    # scattered (NMS never acts, one image dominates); blob-fitted ones
    # give clusters of overlapping anchors on every image, like a trained
    # detector. Candidate 0 keeps the perturbed weights.
    priors = dd[0]["priors"]
    level = dd[0]["level"]
    cdim = cls_feats[0][0].shape[1]
    best = None
    for j in range(num_candidates):
        ws, bs = [], []
        for lvl in range(nlev):
            if j == 0:
                w = hm.out_cls[lvl].weight.detach().reshape(-1).clone()
            else:
                stride = head.featmap_strides[lvl]
                nblob = 3 if lvl == 0 else 2
                pts = priors[level == lvl].double()
                fs, ts = [], []
                for f, box in zip(cls_feats, content_boxes):
                    x0, y0, x1, y1 = box
                    u = torch.rand(nblob, 2, generator=gen).double()
                    cx = x0 + (0.15 + 0.7 * u[:, 0]) * (x1 - x0)
                    cy = y0 + (0.15 + 0.7 * u[:, 1]) * (y1 - y0)
                    d2 = (pts[:, None, 0] - cx) ** 2 + (pts[:, None, 1] - cy) ** 2
                    t = torch.exp(-d2 / (2 * (1.2 * stride) ** 2)).sum(1)
                    fs.append(f[lvl].double())
                    ts.append(t)
                F = torch.cat(fs)
                t = torch.cat(ts)
                Fm = F.mean(0)
                Fc = F - Fm
                A = Fc.t() @ Fc
                A += RIDGE * A.diagonal().mean() * torch.eye(cdim, dtype=A.dtype)
                w = torch.linalg.solve(A, Fc.t() @ (t - t.mean())).float()
            allv = torch.cat([f[lvl] @ w for f in cls_feats])
            m, sd = allv.mean(), allv.std()
            ws.append(w / sd)
            bs.append(-m / sd)
        logits_list = [torch.cat([f[lvl] @ ws[lvl] + bs[lvl] for lvl in range(nlev)]) for f in cls_feats]
        found = search_shift(dd, logits_list, score_thr, nms_thr)
        log(f"make-checkpoint: cls candidate {j}: " + ("infeasible" if found is None else f"key={found[0]}"))
        if found is not None and (best is None or found[0] > best[0]):
            best = (found[0], j, ws, bs, found[1], found[2])
    if best is None:
        raise SystemExit("make-checkpoint: no out_cls setting satisfies the instance-count targets; try another --seed")
    key, j, ws, bs, shifts, report = best
    with torch.no_grad():
        for lvl in range(nlev):
            conv = hm.out_cls[lvl]
            conv.weight.copy_(ws[lvl].view_as(conv.weight))
            conv.bias.fill_(float(bs[lvl] + shifts[lvl]))
    return report, dict(candidate=j, key=key, cls_bias=[float(c.bias) for c in hm.out_cls])


def dataset_meta_for(model):
    return model.dataset_meta


def make_meta(model, cfg_path, args):
    import mmengine
    from mmengine.config import Config

    cfg = Config.fromfile(cfg_path)
    epochs = int(cfg.get("train_cfg", {}).get("max_epochs", 600))
    return dict(
        epoch=epochs,
        iter=epochs * 1000,
        cfg=cfg.pretty_text,
        seed=int(args.seed),
        experiment_name=f"rtmo-{args.size}_{args.dataset}_random_reference",
        time=time.strftime("%Y%m%d_%H%M%S", time.gmtime(0)),
        mmengine_version=mmengine.__version__,
        mmpose_version=mmpose.__version__,
        # numpy arrays / lists exactly as parse_pose_metainfo builds them
        dataset_meta=dataset_meta_for(model),
        reference_note=(
            "random weights made meaningful by tests/mmpose_ref/run_reference.py make-checkpoint; not a trained model"
        ),
    )


def cmd_make_checkpoint(args):
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, int(args.threads)))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    cfg_path = config_path(args.dataset, args.size)
    model = build_model(args)
    score_thr = float(model.test_cfg.get("score_thr", 0.1))
    nms_thr = float(model.test_cfg.get("nms_thr", 0.65))
    gen = torch.Generator().manual_seed(int(args.seed))
    perturb_parameters(model, gen)
    pre = [preprocess(model, p) for p in args.calib_image]
    inputs_list = [x for x, _ in pre]
    metas = [ds[0].metainfo for _, ds in pre]
    nbn = recalibrate_bn(model, inputs_list, passes=args.bn_passes)
    rescale_outputs(model, inputs_list)
    calibrate_dcc(model, inputs_list, target_hm_std=args.dcc_heatmap_std)
    report, info = choose_cls_layer(model, inputs_list, metas, score_thr, nms_thr, gen, args.cls_candidates)
    # verify with MMPose's own pipeline
    counts = []
    for p in args.calib_image:
        r = inference_bottomup(model, p)[0].pred_instances
        counts.append(int(len(r.bboxes)))
    for r, c in zip(report, counts):
        if r["num_after_nms"] != c:
            raise SystemExit(f"make-checkpoint: internal count {r} != inference_bottomup count {c}")
    ckpt = dict(meta=make_meta(model, cfg_path, args), state_dict=model.state_dict())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "legacy":
        # what mmpose tools/misc/publish_model.py writes for zoo files
        torch.save(ckpt, out, _use_new_zipfile_serialization=False)
    else:
        torch.save(ckpt, out)
    print(
        json.dumps(
            dict(
                out=str(out),
                dataset=args.dataset,
                size=args.size,
                seed=args.seed,
                format=args.format,
                num_bn_recalibrated=nbn,
                cls_candidate=info["candidate"],
                cls_bias=[round(b, 6) for b in info["cls_bias"]],
                margins_ok=bool(info["key"][0]),
                calib_images=[os.path.basename(p) for p in args.calib_image],
                num_above_thr=[r["num_above_thr"] for r in report],
                num_above_thr_per_level=[r["per_level"] for r in report],
                num_after_nms_per_level=[r["kept_per_level"] for r in report],
                num_after_nms=[r["num_after_nms"] for r in report],
                min_thr_logit_margin=round(min(r["thr_margin"] for r in report), 6),
                min_order_logit_gap=round(min(r["order_margin"] for r in report), 6),
                min_iou_margin=round(min(r["iou_margin"] for r in report), 6),
                num_state_dict_keys=len(ckpt["state_dict"]),
            )
        )
    )


# --------------------------------------------------------------------------
# make-runner-checkpoint
# --------------------------------------------------------------------------
class _MetainfoDataset(torch.utils.data.Dataset):
    """What the runner's save_checkpoint reads of a train dataset: its metainfo (saved as meta.dataset_meta)."""

    def __init__(self, metainfo):
        self.metainfo = metainfo

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return index


def cmd_make_runner_checkpoint(args):
    """Checkpoints as MMEngine's runner writes them while MMPose trains RTMO, without the training data.

    The runner is built from the config's optim_wrapper, param_scheduler and (unless --no-ema-hook) its EMAHook;
    one epoch of --steps optimizer steps on a stand-in loss moves the weights so that the EMA and the source model
    differ. Everything else is MMEngine's own: the hooks in their order, the message hub (HistoryBuffer logs), the
    schedulers, and CheckpointHook writing epoch_1.pth after the epoch and best_coco_AP_epoch_1.pth after a
    validation that reports coco/AP.
    """
    import torch.utils.data
    from mmengine.config import Config
    from mmengine.runner import Runner

    torch.manual_seed(args.seed)
    cfg = Config.fromfile(config_path(args.dataset, args.size))
    model = build_model(args)
    model.train()
    ema_hooks = [h for h in cfg.custom_hooks if h["type"] == "EMAHook"] if not args.no_ema_hook else []
    out = Path(args.out_dir)
    runner = Runner(
        model=model,
        work_dir=str(out),
        train_dataloader=torch.utils.data.DataLoader(_MetainfoDataset(model.dataset_meta), batch_size=1),
        train_cfg=dict(by_epoch=True, max_epochs=cfg.train_cfg.max_epochs),
        optim_wrapper=cfg.optim_wrapper,
        param_scheduler=cfg.param_scheduler,
        custom_hooks=ema_hooks,
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, save_best="coco/AP", rule="greater")),
        default_scope="mmpose",
        randomness=dict(seed=args.seed),
        experiment_name=f"rtmo-{args.size}_{args.dataset}_runner_reference",
        cfg=cfg,
    )
    # what Runner.train() does before its loop, then one epoch as EpochBasedTrainLoop runs it
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    runner.call_hook("before_run")
    runner.call_hook("before_train")
    runner.call_hook("before_train_epoch")
    params = [p for p in model.parameters() if p.requires_grad]
    for step in range(args.steps):
        runner.call_hook("before_train_iter", batch_idx=step, data_batch=None)
        loss = sum((p.float() ** 2).mean() for p in params)  # stand-in for RTMO's losses: moves every weight
        runner.optim_wrapper.update_params(loss)
        runner.message_hub.update_scalar("train/loss", float(loss.detach()))
        runner.call_hook("after_train_iter", batch_idx=step, data_batch=None, outputs=dict(loss=loss))
        runner.train_loop._iter += 1
    source = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema_hook = next((h for h in runner.hooks if type(h).__name__ == "EMAHook"), None)
    ema = {k: v.detach().clone() for k, v in ema_hook.ema_model.module.state_dict().items()} if ema_hook else None
    runner.call_hook("after_train_epoch")  # CheckpointHook: epoch_1.pth
    runner.train_loop._epoch += 1
    # a validation without a val loop: the hooks that act on it, in the runner's priority order (EMAHook swaps the
    # EMA weights in and back; CheckpointHook then writes best_coco_AP_epoch_1.pth)
    val_hooks = [h for h in runner.hooks if type(h).__name__ in ("EMAHook", "CheckpointHook")]
    for hook in val_hooks:
        hook.before_val_epoch(runner)
    for hook in val_hooks:
        hook.after_val_epoch(runner, metrics={"coco/AP": 0.5})
    expected = out / "expected_weights.pt"  # tensors only: the test's truth for each checkpoint_weights choice
    torch.save(dict(source=source, **({"ema": ema} if ema is not None else {})), expected)
    epoch_checkpoint, best_checkpoint = out / "epoch_1.pth", out / "best_coco_AP_epoch_1.pth"
    saved = {p.name: torch.load(p, map_location="cpu", weights_only=False) for p in (epoch_checkpoint, best_checkpoint)}
    print(
        json.dumps(
            dict(
                epoch_checkpoint=str(epoch_checkpoint),
                best_checkpoint=str(best_checkpoint),
                expected_weights=str(expected),
                ema_hook=ema_hook is not None,
                sections={name: sorted(c) for name, c in saved.items()},
                message_hub_types=sorted(
                    {type(v).__name__ for v in saved[epoch_checkpoint.name]["message_hub"]["log_scalars"].values()}
                ),
                ema_differs=bool(ema is not None and any(not torch.equal(ema[k], source[k]) for k in source)),
            )
        )
    )


# --------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------
class Capture:
    """Hooks capturing the backbone input and the head module's raw outputs
    during MMPose's own inference_bottomup call."""

    def __init__(self, model):
        self.inputs = None
        self.head = None
        self.h1 = model.backbone.register_forward_pre_hook(self._pre)
        self.h2 = model.head.head_module.register_forward_hook(self._post)

    def _pre(self, module, args):
        self.inputs = args[0].detach().clone()

    def _post(self, module, args, output):
        cls, bbox, _, vis, pose = output
        self.head = dict(
            cls=[t.detach().clone() for t in cls],
            bbox=[t.detach().clone() for t in bbox],
            vis=[t.detach().clone() for t in vis],
            pose=[t.detach().clone() for t in pose],
        )

    def remove(self):
        self.h1.remove()
        self.h2.remove()


def _np(x, dtype=np.float32):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def cmd_predict(args):
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    torch.set_num_threads(max(1, int(args.threads)))
    model = build_model(args, args.checkpoint, args.score_thr, args.nms_thr)
    out = {}
    summary = []
    cap = Capture(model)
    try:
        for i, img in enumerate(args.images):
            sample = inference_bottomup(model, img)[0]
            pi = sample.pred_instances
            meta = sample.metainfo
            x = cap.inputs
            # independent recomputation of the raw head outputs on the same
            # preprocessed input (backbone -> neck -> head.forward, eval mode)
            cls, bbox, vis, pose = head_outputs(model, x)
            for name, a, b in (
                ("cls", cls, cap.head["cls"]),
                ("bbox", bbox, cap.head["bbox"]),
                ("vis", vis, cap.head["vis"]),
                ("pose", pose, cap.head["pose"]),
            ):
                for lvl, (ta, tb) in enumerate(zip(a, b)):
                    if not torch.equal(ta, tb):
                        raise SystemExit(f"{img}: {name}_{lvl} differs between hook and direct forward")
            p = f"img{i}_"
            out[p + "input"] = _np(x)
            for lvl in range(len(cls)):
                out[p + f"cls_{lvl}"] = _np(cls[lvl])
                out[p + f"bbox_{lvl}"] = _np(bbox[lvl])
                out[p + f"vis_{lvl}"] = _np(vis[lvl])
                out[p + f"pose_{lvl}"] = _np(pose[lvl])
            k = int(model.head.num_keypoints)
            # final predictions keep MMPose's own dtypes: bboxes/keypoints are
            # float64 (the numpy rescale in add_pred_to_datasample promotes),
            # scores float32
            out[p + "bboxes"] = np.asarray(pi.bboxes).reshape(-1, 4)
            out[p + "bbox_scores"] = np.asarray(pi.bbox_scores).reshape(-1)
            out[p + "keypoints"] = np.asarray(pi.keypoints).reshape(-1, k, 2)
            out[p + "keypoint_scores"] = np.asarray(pi.keypoint_scores).reshape(-1, k)
            out[p + "input_center"] = _np(meta["input_center"])
            out[p + "input_scale"] = _np(meta["input_scale"])
            out[p + "input_size"] = _np(meta["input_size"])
            out[p + "ori_shape"] = np.asarray(meta["ori_shape"], np.int64)
            out[p + "img_path"] = np.asarray(os.path.abspath(img))
            # how well-conditioned this image is for a parity comparison
            d = dense_decode(model, x)
            st = float(model.test_cfg["score_thr"])
            ev = evaluate_selection(d, d["logits"], float(np.log(st / (1 - st))), float(model.test_cfg["nms_thr"]))
            if ev["num_after_nms"] != len(pi.bboxes):
                raise SystemExit(f"{img}: internal NMS count {ev['num_after_nms']} != MMPose {len(pi.bboxes)}")
            summary.append(
                dict(
                    image=os.path.basename(img),
                    ori_shape=list(meta["ori_shape"]),
                    input_shape=list(x.shape),
                    num_above_thr=ev["num_above_thr"],
                    num_instances=int(len(pi.bboxes)),
                    num_instances_per_level=ev["kept_per_level"],
                    # min |logit - logit(score_thr)| over all anchors
                    min_thr_logit_margin=round(ev["thr_margin"], 6),
                    # min gap between consecutive sorted logits above threshold
                    min_order_logit_gap=round(ev["order_margin"], 6),
                    # min |IoU - nms_thr| over pairs of boxes above threshold
                    min_iou_margin=round(ev["iou_margin"], 6),
                )
            )
    finally:
        cap.remove()
    if args.float64:
        out.update(predict_float64(model, args.images))
    out["num_images"] = np.asarray(len(args.images), np.int64)
    out["strides"] = np.asarray(model.head.featmap_strides, np.int64)
    out["score_thr"] = np.asarray(model.test_cfg["score_thr"], np.float64)
    out["nms_thr"] = np.asarray(model.test_cfg["nms_thr"], np.float64)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **out)
    print(json.dumps(dict(out=args.out, dataset=args.dataset, size=args.size, images=summary)))


def predict_float64(model, images):
    """inference_bottomup with every parameter, buffer and the network input
    in float64 (the data preprocessor's uint8 -> float cast gives float32, so
    a pre-hook on the backbone widens it): MMPose's own arithmetic with far
    less rounding, the yardstick for both float32 implementations."""
    model.double()
    hook = model.backbone.register_forward_pre_hook(lambda module, args: (args[0].double(),) + tuple(args[1:]))
    out = {}
    try:
        for i, img in enumerate(images):
            pi = inference_bottomup(model, img)[0].pred_instances
            k = int(model.head.num_keypoints)
            p = f"img{i}_f64_"
            out[p + "bboxes"] = np.asarray(pi.bboxes, np.float64).reshape(-1, 4)
            out[p + "bbox_scores"] = np.asarray(pi.bbox_scores, np.float64).reshape(-1)
            out[p + "keypoints"] = np.asarray(pi.keypoints, np.float64).reshape(-1, k, 2)
            out[p + "keypoint_scores"] = np.asarray(pi.keypoint_scores, np.float64).reshape(-1, k)
    finally:
        hook.remove()
        model.float()
    return out


# --------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------
def cmd_bench(args):
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    torch.set_num_threads(max(1, int(args.threads)))
    model = build_model(args, args.checkpoint)
    n = 0
    for _ in range(args.warmup):
        n = len(inference_bottomup(model, args.image)[0].pred_instances.bboxes)
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        inference_bottomup(model, args.image)
        times.append(time.perf_counter() - t0)
    tot = sum(times)
    print(
        json.dumps(
            dict(
                dataset=args.dataset,
                size=args.size,
                checkpoint=args.checkpoint,
                image=os.path.basename(args.image),
                threads=torch.get_num_threads(),
                iters=args.iters,
                warmup=args.warmup,
                num_instances=n,
                images_per_s=round(args.iters / tot, 4),
                mean_ms=round(1000 * tot / args.iters, 3),
                median_ms=round(1000 * float(np.median(times)), 3),
                what="mmpose.apis.inference_bottomup end to end (image decode, pipeline, forward, decode, rescale)",
            )
        )
    )


# --------------------------------------------------------------------------
# coco-metric
# --------------------------------------------------------------------------
def _instances_from_results(results, num_keypoints):
    """COCO keypoint results -> per image_id pred_instances as CocoMetric receives them."""
    by_image = {}
    for r in results:
        kpts = np.asarray(r["keypoints"], np.float32).reshape(num_keypoints, 3)
        by_image.setdefault(int(r["image_id"]), []).append((kpts, float(r["score"])))
    out = {}
    for image_id, people in by_image.items():
        out[image_id] = dict(
            keypoints=np.stack([k[:, :2] for k, _ in people]),
            keypoint_scores=np.stack([k[:, 2] for k, _ in people]),
            bbox_scores=np.asarray([s for _, s in people], np.float32),
        )
    return out


def _instances_from_predict(npz, file_ids):
    out = {}
    for i in range(int(npz["num_images"])):
        p = f"img{i}_"
        name = os.path.basename(str(npz[p + "img_path"]))
        if name not in file_ids:
            continue
        out[file_ids[name]] = dict(
            keypoints=npz[p + "keypoints"],
            keypoint_scores=npz[p + "keypoint_scores"],
            bboxes=npz[p + "bboxes"],
            bbox_scores=npz[p + "bbox_scores"],
        )
    return out


def cmd_coco_metric(args):
    import tempfile

    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.evaluation.metrics import CocoMetric

    ann = json.loads(Path(args.annotations).read_text())
    num_keypoints = len(ann["categories"][0]["keypoints"])
    crowd = args.iou_type == "keypoints_crowd"
    meta = parse_pose_metainfo(dict(from_file="configs/_base_/datasets/" + ("crowdpose.py" if crowd else "coco.py")))
    file_ids = {img["file_name"]: int(img["id"]) for img in ann["images"]}
    if args.predictions.endswith(".npz"):
        instances = _instances_from_predict(np.load(args.predictions), file_ids)
    else:
        instances = _instances_from_results(json.loads(Path(args.predictions).read_text()), num_keypoints)
    with tempfile.TemporaryDirectory() as tmp:
        metric = CocoMetric(
            ann_file=args.annotations,
            score_mode="bbox",
            nms_mode="none",
            iou_type=args.iou_type,
            use_area=not crowd,
            outfile_prefix=os.path.join(tmp, "eval"),
        )
        metric.dataset_meta = meta
        ann_ids = {}
        for a in ann["annotations"]:
            ann_ids.setdefault(int(a["image_id"]), []).append(int(a["id"]))
        samples = []
        for image_id in file_ids.values():
            pred = instances.get(
                image_id,
                dict(
                    keypoints=np.zeros((0, num_keypoints, 2), np.float32),
                    keypoint_scores=np.zeros((0, num_keypoints), np.float32),
                    bbox_scores=np.zeros((0,), np.float32),
                ),
            )
            # bottom-up samples carry the list of their annotation ids (CocoDataset data_mode='bottomup'); a list
            # also tells CocoMetric not to de-duplicate the image's instances by id
            samples.append(
                dict(id=ann_ids.get(image_id, []), img_id=image_id, category_id=1, pred_instances=pred, gt_instances={})
            )
        metric.process([], samples)
        stdout = sys.stdout
        sys.stdout = sys.stderr  # the COCO API prints its table; our stdout is one JSON line
        try:
            stats = metric.compute_metrics(metric.results)
        finally:
            sys.stdout = stdout
    print(
        json.dumps(
            dict(stats={k: float(v) for k, v in stats.items()}, images=len(file_ids), predicted_images=len(instances))
        )
    )


# --------------------------------------------------------------------------
# train-step / lr-schedule
# --------------------------------------------------------------------------
def _train_samples(batch, num_images):
    from mmengine.structures import InstanceData
    from mmpose.structures import PoseDataSample

    samples = []
    height, width = batch["inputs"].shape[2:]
    for i in range(num_images):
        labels = InstanceData()
        labels.bboxes = torch.from_numpy(batch[f"img{i}_bboxes"])
        labels.labels = torch.from_numpy(batch[f"img{i}_labels"]).long()
        labels.keypoints = torch.from_numpy(batch[f"img{i}_keypoints"])
        labels.keypoints_visible = torch.from_numpy(batch[f"img{i}_keypoints_visible"])
        labels.areas = torch.from_numpy(batch[f"img{i}_areas"])
        sample = PoseDataSample(metainfo=dict(input_size=(width, height), img_shape=(height, width)))
        sample.gt_instance_labels = labels
        samples.append(sample)
    return samples


def cmd_train_step(args):
    from mmengine.optim import build_optim_wrapper
    from mmpose.engine.hooks.ema_hook import ExpMomentumEMA

    torch.set_num_threads(args.threads)
    model = build_model(args, args.checkpoint)
    dtype = torch.float64 if args.float64 else torch.float32
    model.to(dtype)
    head = model.head
    if args.rtmo_switch:  # RTMOModeSwitchHook's epoch_attributes
        head.proxy_target_cc = True
        head.loss_mle.loss_weight = 5.0
        head.loss_oks.loss_weight = 10.0
    if args.yoloxpose_switch:  # YOLOXPoseModeSwitchHook: aux loss on
        head.use_aux_loss = True
    assignments = []
    assign = head.assigner.assign

    def recording_assign(*a, **kw):
        result = assign(*a, **kw)
        assignments.append(result)
        return result

    head.assigner.assign = recording_assign
    batch = dict(np.load(args.batch))
    inputs = torch.from_numpy(batch["inputs"]).to(dtype)
    samples = _train_samples(batch, inputs.shape[0])
    for sample in samples:
        for key in ("bboxes", "keypoints", "keypoints_visible", "areas"):
            sample.gt_instance_labels.set_field(getattr(sample.gt_instance_labels, key).to(dtype), key)

    cfg = model.cfg
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = args.lr
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    ema_cfg = next(h for h in cfg.custom_hooks if h["type"] == "EMAHook")
    ema = ExpMomentumEMA(model, momentum=ema_cfg["momentum"], update_buffers=ema_cfg["update_buffers"])
    ema.update_parameters(model)  # EMAHook's first after_train_iter copies; a real update needs steps >= 1

    model.train()
    losses = model.loss(inputs, samples)
    loss, log_vars = model.parse_losses(losses)
    loss.backward()
    out = {"loss": loss.detach().numpy()}
    for key, value in log_vars.items():
        if key.startswith("loss_"):
            out[key] = value.detach().numpy()
    for i, result in enumerate(assignments):
        out[f"img{i}_gt_inds"] = result["gt_inds"].numpy()
        out[f"img{i}_max_overlaps"] = result["max_overlaps"].numpy()
    for name, param in model.named_parameters():
        if param.grad is not None:
            out[f"grad/{name}"] = param.grad.detach().numpy().copy()
    index = {id(p): name for name, p in model.named_parameters()}
    groups = [
        dict(params=[index[id(p)] for p in g["params"]], lr=g["lr"], weight_decay=g["weight_decay"])
        for g in optim_wrapper.optimizer.param_groups
    ]
    out["param_groups"] = np.array(json.dumps(groups))
    optim_wrapper.step()
    for name, param in model.named_parameters():
        out[f"step/{name}"] = param.detach().numpy().copy()
    ema.update_parameters(model)
    for key, value in ema.module.state_dict().items():
        out[f"ema/{key}"] = value.detach().numpy().copy()
    np.savez(args.out, **out)
    print(json.dumps(dict(loss=float(loss), terms={k: float(v) for k, v in log_vars.items()})))


def cmd_bench_train(args):
    import resource

    from mmengine.optim import build_optim_wrapper
    from mmpose.engine.hooks.ema_hook import ExpMomentumEMA

    torch.set_num_threads(args.threads)
    model = build_model(args, args.checkpoint)
    batch = dict(np.load(args.batch))
    inputs = torch.from_numpy(batch["inputs"])
    samples = _train_samples(batch, inputs.shape[0])
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(model.cfg.optim_wrapper))
    ema = ExpMomentumEMA(model, momentum=0.0002, update_buffers=True)
    model.train()
    times = []
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        loss, _ = model.parse_losses(model.loss(inputs, samples))
        optim_wrapper.update_params(loss)
        ema.update_parameters(model)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            dict(
                images_per_s=inputs.shape[0] * len(times) / sum(times),
                median_step_s=float(np.median(times)),
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                threads=torch.get_num_threads(),
            )
        )
    )


def cmd_bench_pipeline(args):
    """Samples per second through the config's stage-1 train pipeline (Mosaic partners loaded from disk each
    time), on a CocoDataset of the given annotations, at the given input side."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpose.datasets import CocoDataset

    init_default_scope("mmpose")
    cfg = Config.fromfile(config_path(args.dataset, args.size))
    side = (args.input_size, args.input_size)
    pipeline = copy.deepcopy(cfg.train_pipeline_stage1)
    for step in pipeline:
        if step["type"] == "Mosaic":
            step["img_scale"] = side
        elif step["type"] == "BottomupRandomAffine":
            step["input_size"] = side
        elif step["type"] == "GenerateTarget":
            step["encoder"] = dict(step["encoder"], input_size=side)
    dataset = CocoDataset(
        ann_file=args.annotations,
        data_root="",
        data_prefix=dict(img=str(args.images) + "/"),
        data_mode="bottomup",
        pipeline=pipeline,
    )
    np.random.seed(0)
    for i in range(args.warmup):
        dataset[i % len(dataset)]
    started = time.perf_counter()
    for i in range(args.samples):
        dataset[i % len(dataset)]
    seconds = time.perf_counter() - started
    print(
        json.dumps(dict(images_per_s=args.samples / seconds, samples=args.samples, steps=[s["type"] for s in pipeline]))
    )


def cmd_hsv(args):
    from mmpose.datasets.transforms.common_transforms import YOLOXHSVRandomAug

    img = np.load(args.batch)["img"].copy()
    gains = np.array([int(v) for v in args.gains.split(",")], np.int16)
    aug = YOLOXHSVRandomAug()
    aug._get_hsv_gains = lambda: gains  # the same draw as ours
    results = aug.transform(dict(img=img))
    np.savez(args.out, img=results["img"])
    print(json.dumps(dict(gains=gains.tolist())))


def cmd_random_flip(args):
    from mmpose.datasets.transforms import RandomFlip

    batch = dict(np.load(args.batch))
    img = batch["img"]
    results = dict(
        img=img,
        img_shape=img.shape[:2],
        input_size=img.shape[:2][::-1],
        bbox=batch["bboxes"].copy(),
        keypoints=batch["keypoints"].copy(),
        keypoints_visible=batch["keypoints_visible"].copy(),
        flip_indices=[int(i) for i in batch["flip_indices"]],
    )
    results = RandomFlip(prob=1.0, direction="horizontal")(results)
    np.savez(
        args.out,
        img=results["img"],
        bboxes=results["bbox"],
        keypoints=results["keypoints"],
        keypoints_visible=results["keypoints_visible"],
    )
    print(json.dumps(dict(flip=bool(results["flip"]))))


def cmd_lr_schedule(args):
    import mmpose.engine.schedulers  # noqa: F401  (registers QuadraticWarmupLR)
    from mmengine.config import Config
    from mmpose.registry import PARAM_SCHEDULERS  # MMPose's registry also finds MMEngine's schedulers

    cfg = Config.fromfile(getattr(args, "config", None) or config_path(args.dataset, args.size))
    configured = [dict(sc) for sc in cfg.param_scheduler]
    chosen = json.loads(args.schedule) if args.schedule else configured
    base_lrs = [float(v) for v in args.base_lrs.split(",")]
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in base_lrs]
    optimizer = torch.optim.AdamW([dict(params=[p], lr=lr) for p, lr in zip(params, base_lrs)])
    schedulers = []
    for sc in copy.deepcopy(chosen):
        kind = sc.pop("type")
        by_epoch = sc.pop("by_epoch", True)
        convert = sc.pop("convert_to_iter_based", False)
        cls = PARAM_SCHEDULERS.get(kind)
        if by_epoch and convert:
            schedulers.append(cls.build_iter_from_epoch(optimizer, epoch_length=args.iters_per_epoch, **sc))
        else:
            schedulers.append(cls(optimizer, by_epoch=by_epoch, **sc))
    lrs = [[] for _ in base_lrs]
    for _epoch in range(
        args.epochs
    ):  # ParamSchedulerHook: iter-based after each iteration, epoch-based after each epoch
        for _ in range(args.iters_per_epoch):
            for i, group in enumerate(optimizer.param_groups):
                lrs[i].append(group["lr"])
            optimizer.step()
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
        for s in schedulers:
            if s.by_epoch:
                s.step()
    print(json.dumps(dict(lrs=lrs, configured=configured, max_epochs=cfg.train_cfg.max_epochs)))


# --------------------------------------------------------------------------
# Augmentations given a draw (the parity tests of rtmo.train's pipeline)
# --------------------------------------------------------------------------
def _pipeline_results(batch, i):
    """MMPose's pipeline dict of image i of a batch file (what LoadImage plus the dataset give a transform)."""
    img = batch[f"img{i}"].copy()
    count = len(batch[f"img{i}_bboxes"])
    return dict(
        img=img,
        img_shape=img.shape[:2],
        bbox=batch[f"img{i}_bboxes"].copy(),
        bbox_score=np.ones(count, np.float32),
        category_id=np.ones(count, np.int64),
        keypoints=batch[f"img{i}_keypoints"].copy(),
        keypoints_visible=batch[f"img{i}_keypoints_visible"].copy(),
        area=batch[f"img{i}_areas"].copy(),
        flip_indices=[int(v) for v in batch["flip_indices"]] if "flip_indices" in batch else None,
    )


def _save_results(path, results):
    np.savez(
        path,
        img=results["img"],
        bboxes=results["bbox"],
        keypoints=results["keypoints"],
        keypoints_visible=results["keypoints_visible"],
        areas=results["area"],
    )


class _ScriptedRandom:
    """Stands in for a module's ``numpy.random``: each named call answers the next given value."""

    def __init__(self, **answers):
        self.answers = {name: list(values) for name, values in answers.items()}

    def __getattr__(self, name):
        if name not in self.answers:
            raise AttributeError(f"unscripted random call {name}")
        return lambda *a, **kw: self.answers[name].pop(0)


def cmd_mosaic(args):
    from mmpose.datasets.transforms import mix_img_transforms
    from mmpose.datasets.transforms.mix_img_transforms import Mosaic

    batch = dict(np.load(args.batch))
    cx, cy = (int(v) for v in args.centre.split(","))
    side = args.side
    # the centre is int(uniform * side): answer the middle of the pixel so the product truncates to it
    mix_img_transforms.random = _ScriptedRandom(uniform=[(cx + 0.5) / side, (cy + 0.5) / side])
    mosaic = Mosaic(img_scale=(side, side), pad_val=114.0)  # no pre_transform: the partners come loaded
    results = _pipeline_results(batch, 0)
    results["mixed_data_list"] = [_pipeline_results(batch, i) for i in (1, 2, 3)]
    results = mosaic.apply_mix(results)
    _save_results(args.out, results)
    print(json.dumps(dict(shape=list(results["img"].shape))))


def cmd_random_affine(args):
    from mmpose.datasets.transforms import BottomupRandomAffine

    batch = dict(np.load(args.batch))
    side = args.side
    if args.stage2:  # train_pipeline_stage2's settings
        affine = BottomupRandomAffine(
            input_size=(side, side),
            shift_prob=0,
            rotate_prob=0,
            scale_prob=0,
            scale_type="long",
            pad_val=(114, 114, 114),
            bbox_keep_corner=False,
            clip_border=True,
        )
    else:  # train_pipeline_stage1's settings, the draw given
        affine = BottomupRandomAffine(
            input_size=(side, side),
            shift_factor=0.1,
            rotate_factor=10,
            scale_factor=(0.75, 1.0),
            pad_val=114,
            distribution="uniform",
            transform_mode="perspective",
            bbox_keep_corner=False,
            clip_border=True,
        )
        draw = json.loads(args.draw)
        params = (
            np.array(draw["shift_xy"]),
            np.array([draw["scale"]]),
            float(draw["rotation_deg"]),
            np.array(draw["shear_deg"]),
        )
        affine._get_transform_params = lambda: params
    results = affine.transform(_pipeline_results(batch, 0))
    _save_results(args.out, results)
    print(json.dumps(dict(warp_mat=np.asarray(results["warp_mat"]).tolist())))


def cmd_mixup(args):
    from mmpose.datasets.transforms import mix_img_transforms
    from mmpose.datasets.transforms.mix_img_transforms import YOLOXMixUp

    batch = dict(np.load(args.batch))
    draw = json.loads(args.draw)
    dx, dy = draw["offset_xy"]
    # apply_mix calls uniform (jitter, then the flip: flipped when > 0.5) and randint (dy, then dx)
    mix_img_transforms.random = _ScriptedRandom(
        uniform=[draw["jitter"], 1.0 if draw["flip"] else 0.0], randint=[dy, dx]
    )
    side = args.side
    mixup = YOLOXMixUp(img_scale=(side, side), ratio_range=(0.8, 1.6), pad_val=114.0)
    results = _pipeline_results(batch, 0)
    results["mixed_data_list"] = [_pipeline_results(batch, 1)]
    results = mixup.apply_mix(results)
    _save_results(args.out, results)
    print(json.dumps(dict(shape=list(results["img"].shape))))


def cmd_filter_annotations(args):
    from mmpose.datasets.transforms import FilterAnnotations

    batch = dict(np.load(args.batch))
    results = FilterAnnotations(by_kpt=True, by_box=True, keep_empty=False).transform(_pipeline_results(batch, 0))
    _save_results(args.out, results)
    print(json.dumps(dict(kept=len(results["bbox"]))))


def cmd_batch_resize(args):
    from mmengine import MessageHub
    from mmengine.structures import InstanceData
    from mmpose.models.data_preprocessors import BatchSyncRandomResize
    from mmpose.structures import PoseDataSample

    batch = dict(np.load(args.batch))
    inputs = torch.from_numpy(batch["inputs"])
    samples = []
    for i in range(inputs.shape[0]):
        sample = PoseDataSample(metainfo=dict(img_shape=tuple(inputs.shape[-2:]), pad_shape=tuple(inputs.shape[-2:])))
        labels = InstanceData()
        for key in ("bboxes", "keypoints", "areas"):
            labels.set_field(torch.from_numpy(batch[f"img{i}_{key}"].copy()), key)
        sample.gt_instance_labels = labels
        samples.append(sample)
    MessageHub.get_instance("rtmo-parity").update_info("iter", 1)  # iteration 1 of interval 1 draws anew after
    resize = BatchSyncRandomResize(random_size_range=(480, 800), size_divisor=32, interval=1)
    resize._input_size = tuple(int(v) for v in args.size.split(","))
    outputs, samples = resize(inputs, samples)
    arrays = dict(inputs=outputs.numpy())
    for i, sample in enumerate(samples):
        for key in ("bboxes", "keypoints", "areas"):
            arrays[f"img{i}_{key}"] = sample.gt_instance_labels.get(key).numpy()
    np.savez(args.out, **arrays)
    print(json.dumps(dict(shape=list(outputs.shape))))


# --------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def model_args(p):
        p.add_argument("--dataset", required=True, choices=["coco", "body7", "crowdpose"])
        p.add_argument("--size", required=True, choices=["t", "s", "m", "l"])
        p.add_argument(
            "--config", default=None, help="override the config path (default: the one shipped in the mmpose wheel)"
        )

    sub.add_parser("check")
    p = sub.add_parser("count-params")
    model_args(p)
    p = sub.add_parser("make-checkpoint")
    model_args(p)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--calib-image",
        required=True,
        nargs="+",
        help="first image: 10-40 anchors > score_thr and NMS removes some; all images: >= 3 instances",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bn-passes", type=int, default=3)
    p.add_argument("--cls-candidates", type=int, default=8)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument(
        "--dcc-heatmap-std",
        type=float,
        default=3.0,
        help="spread of the 1-D heatmap logits the DCC is scaled "
        "to; ~1 makes its softmax broad, so float32 rounding "
        "cannot move a keypoint far (a well-conditioned case)",
    )
    p.add_argument(
        "--format",
        choices=["legacy", "zip"],
        default="legacy",
        help="legacy = torch.save(..., _use_new_zipfile_serialization=False) as publish_model.py writes zoo files",
    )
    p = sub.add_parser("make-runner-checkpoint")
    model_args(p)
    p.add_argument("--out-dir", required=True, help="gets epoch_1.pth, best_coco_AP_epoch_1.pth, expected_weights.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=3, help="optimizer steps in the epoch")
    p.add_argument("--no-ema-hook", action="store_true", help="leave out the config's EMAHook")
    p = sub.add_parser("predict")
    model_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", required=True, nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--score-thr", type=float, default=0.1)
    p.add_argument("--nms-thr", type=float, default=0.65)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--float64", action="store_true", help="also save float64 predictions (img{i}_f64_*)")
    p = sub.add_parser("bench")
    model_args(p)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--image", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p = sub.add_parser("train-step")
    model_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--batch", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--float64", action="store_true")
    p.add_argument("--rtmo-switch", action="store_true")
    p.add_argument("--yoloxpose-switch", action="store_true")
    p.add_argument("--lr", type=float, default=0.004)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("bench-train")
    model_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--batch", required=True)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("bench-pipeline")
    model_args(p)
    p.add_argument("--annotations", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--input-size", type=int, required=True)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--warmup", type=int, default=4)
    p = sub.add_parser("hsv")
    p.add_argument("--batch", required=True)
    p.add_argument("--gains", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("random-flip")
    p.add_argument("--batch", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("mosaic")
    p.add_argument("--batch", required=True)
    p.add_argument("--centre", required=True, help="x,y pixels")
    p.add_argument("--side", type=int, default=640)
    p.add_argument("--out", required=True)
    p = sub.add_parser("random-affine")
    p.add_argument("--batch", required=True)
    p.add_argument("--side", type=int, default=640)
    p.add_argument("--draw", default=None, help="JSON: shift_xy, scale, rotation_deg, shear_deg")
    p.add_argument("--stage2", action="store_true")
    p.add_argument("--out", required=True)
    p = sub.add_parser("mixup")
    p.add_argument("--batch", required=True)
    p.add_argument("--side", type=int, default=640)
    p.add_argument("--draw", required=True, help="JSON: jitter, flip, offset_xy")
    p.add_argument("--out", required=True)
    p = sub.add_parser("filter-annotations")
    p.add_argument("--batch", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("batch-resize")
    p.add_argument("--batch", required=True)
    p.add_argument("--size", required=True, help="H,W")
    p.add_argument("--out", required=True)
    p = sub.add_parser("lr-schedule")
    model_args(p)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--iters-per-epoch", type=int, required=True)
    p.add_argument("--base-lrs", default="0.004", help="comma-separated base lr of each parameter group")
    p.add_argument("--schedule", default=None, help="param_scheduler as JSON (default: the config's)")
    p = sub.add_parser("coco-metric")
    p.add_argument("--annotations", required=True)
    p.add_argument("--predictions", required=True)
    p.add_argument("--iou-type", choices=["keypoints", "keypoints_crowd"], default="keypoints")
    args = ap.parse_args(argv)
    dict(
        check=cmd_check,
        **{
            "coco-metric": cmd_coco_metric,
            "count-params": cmd_count_params,
            "make-checkpoint": cmd_make_checkpoint,
            "make-runner-checkpoint": cmd_make_runner_checkpoint,
            "predict": cmd_predict,
            "bench": cmd_bench,
            "train-step": cmd_train_step,
            "lr-schedule": cmd_lr_schedule,
            "random-flip": cmd_random_flip,
            "hsv": cmd_hsv,
            "mosaic": cmd_mosaic,
            "random-affine": cmd_random_affine,
            "mixup": cmd_mixup,
            "filter-annotations": cmd_filter_annotations,
            "batch-resize": cmd_batch_resize,
            "bench-train": cmd_bench_train,
            "bench-pipeline": cmd_bench_pipeline,
        },
    )[args.cmd](args)


if __name__ == "__main__":
    main()

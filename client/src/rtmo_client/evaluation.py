"""COCO keypoint evaluation of what the server returns: ``rtmo-client eval`` and :func:`evaluate_server`.

Scored as MMPose's ``CocoMetric`` scores RTMO (``score_mode='bbox'``: a person's score is its box score, no
rescoring, ``nms_mode='none'``: no extra NMS), with xtcocotools' ``COCOeval``, the maintained evaluator MMPose
uses: COCO's keypoint sigmas and annotation areas for 17-keypoint models, CrowdPose's own ``keypoints_crowd``
evaluation (no areas, easy/medium/hard by crowd index) for 14-keypoint models.

A run streams every image of the annotation file through the ``rtmo`` ensemble with bounded concurrency and keeps
each finished image in ``<results>.partial.jsonl``; an interrupted run started again continues from there, and
the finished run writes the COCO keypoint-results JSON and removes the partial file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtmo_client.coco import to_coco

if TYPE_CHECKING:
    from rtmo_client.client import Client

__all__ = [
    "COCO_SIGMAS",
    "CROWDPOSE_SIGMAS",
    "EvaluationError",
    "EvaluationReport",
    "KeypointAnnotations",
    "evaluate_results",
    "evaluate_server",
    "format_table",
    "load_annotations",
]

# Per-keypoint OKS constants: COCO's (cocodataset.org/#keypoints-eval) and CrowdPose's, as MMPose's dataset metas.
COCO_SIGMAS = (
    0.026,
    0.025,
    0.025,
    0.035,
    0.035,
    0.079,
    0.079,
    0.072,
    0.072,
    0.062,
    0.062,
    0.107,
    0.107,
    0.087,
    0.087,
    0.089,
    0.089,
)
CROWDPOSE_SIGMAS = (0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079)
COCO_STAT_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
CROWDPOSE_STAT_NAMES = ("AP", "AP .5", "AP .75", "AR", "AR .5", "AR .75", "AP (E)", "AP (M)", "AP (H)")


class EvaluationError(ValueError):
    """The annotations, the images or the server's model do not allow an evaluation; raised before any image is sent."""


@dataclass(frozen=True)
class KeypointAnnotations:
    """A checked COCO-style keypoint annotation file.

    Attributes:
        path: The file.
        dataset: Its parsed JSON.
        num_keypoints: Keypoints per person (17 COCO, 14 CrowdPose).
        category_id: The person category's id.
    """

    path: Path
    dataset: Mapping[str, Any]
    num_keypoints: int
    category_id: int

    @property
    def crowdpose(self) -> bool:
        """Scored with CrowdPose's evaluation (14 keypoints) rather than COCO's."""
        return self.num_keypoints == len(CROWDPOSE_SIGMAS)

    @property
    def stat_names(self) -> tuple[str, ...]:
        return CROWDPOSE_STAT_NAMES if self.crowdpose else COCO_STAT_NAMES

    def image_files(self) -> dict[int, str]:
        """``image_id`` → ``file_name``, in the file's order."""
        return {int(image["id"]): str(image["file_name"]) for image in self.dataset["images"]}


def load_annotations(path: str | os.PathLike[str]) -> KeypointAnnotations:
    """Read and check a COCO keypoint annotation file (``person_keypoints_val2017.json`` or CrowdPose's).

    Raises:
        EvaluationError: unreadable, not JSON, or not COCO keypoints (what is missing is named).
    """
    path = Path(path)
    try:
        dataset = json.loads(path.read_text())
    except OSError as error:
        raise EvaluationError(f"annotations: cannot read {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EvaluationError(
            f"annotations: {path} is not JSON ({error}); expected a COCO keypoint annotation file"
        ) from None
    expected = "a COCO keypoint annotation file (images, annotations, and a person category with 'keypoints')"
    lists = ("images", "annotations", "categories")
    if not isinstance(dataset, dict) or not all(isinstance(dataset.get(key), list) for key in lists):
        raise EvaluationError(
            f"annotations: {path} has no 'images', 'annotations' and 'categories' lists; expected {expected}"
        )
    categories = [c for c in dataset["categories"] if isinstance(c, dict) and isinstance(c.get("keypoints"), list)]
    if len(categories) != 1:
        raise EvaluationError(
            f"annotations: {path} has {len(categories)} categories with 'keypoints'; expected {expected}"
        )
    num_keypoints = len(categories[0]["keypoints"])
    if num_keypoints not in (len(COCO_SIGMAS), len(CROWDPOSE_SIGMAS)):
        raise EvaluationError(
            f"annotations: {path} has {num_keypoints} keypoints per person; accepted: 17 (COCO) or 14 (CrowdPose)"
        )
    if not dataset["images"]:
        raise EvaluationError(f"annotations: {path} lists no images")
    for index, image in enumerate(dataset["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise EvaluationError(
                f"annotations: images[{index}] of {path} has no 'id' and 'file_name'; expected {expected}"
            )
    for index, annotation in enumerate(dataset["annotations"]):
        keypoints = annotation.get("keypoints") if isinstance(annotation, dict) else None
        if not isinstance(keypoints, list) or len(keypoints) != 3 * num_keypoints:
            raise EvaluationError(
                f"annotations: annotations[{index}] of {path} has no 'keypoints' list of {3 * num_keypoints} numbers "
                f"(x, y, v for {num_keypoints} keypoints); expected {expected}"
            )
    if len(COCO_SIGMAS) == num_keypoints and any("area" not in a for a in dataset["annotations"]):
        raise EvaluationError(f"annotations: {path} has annotations without 'area', which COCO's evaluation needs")
    if len(CROWDPOSE_SIGMAS) == num_keypoints and any("crowdIndex" not in i for i in dataset["images"]):
        raise EvaluationError(
            f"annotations: {path} has images without 'crowdIndex', which CrowdPose's evaluation needs"
        )
    return KeypointAnnotations(path, dataset, num_keypoints, int(categories[0]["id"]))


def image_paths(annotations: KeypointAnnotations, images_dir: str | os.PathLike[str]) -> dict[int, Path]:
    """Every annotated image's path under ``images_dir``.

    Raises:
        EvaluationError: the directory or some images are missing (the first few are named).
    """
    directory = Path(images_dir)
    if not directory.is_dir():
        raise EvaluationError(f"images: {directory} is not a directory")
    paths = {image_id: directory / name for image_id, name in annotations.image_files().items()}
    missing = [str(path.name) for path in paths.values() if not path.is_file()]
    if missing:
        raise EvaluationError(
            f"images: {len(missing)} of the {len(paths)} images of {annotations.path.name} are not in {directory} "
            f"(first: {', '.join(missing[:5])}); pass the directory holding them"
        )
    return paths


def evaluate_results(annotations: KeypointAnnotations, results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The AP/AR table of COCO keypoint results against ``annotations``, as MMPose's ``CocoMetric`` computes it.

    Args:
        annotations: From :func:`load_annotations`.
        results: COCO keypoint results (``image_id``, ``category_id``, ``keypoints``, ``score``).

    Returns:
        Stat name → value, in the standard order (10 numbers for COCO, 9 for CrowdPose).
    """
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # the COCO API prints progress and its own table
        ground_truth = COCO()
        ground_truth.dataset = json.loads(json.dumps(annotations.dataset))  # COCO mutates what it is given
        ground_truth.createIndex()
        if not results:  # loadRes refuses an empty list; nothing detected scores 0 (COCOeval's -1 means "no data")
            return dict.fromkeys(annotations.stat_names, 0.0)
        detections = ground_truth.loadRes([dict(result) for result in results])
        if annotations.crowdpose:
            evaluator = COCOeval(ground_truth, detections, "keypoints_crowd", np.array(CROWDPOSE_SIGMAS), False)
        else:
            evaluator = COCOeval(ground_truth, detections, "keypoints", np.array(COCO_SIGMAS), True)
        evaluator.params.useSegm = None
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(annotations.stat_names, evaluator.stats)}


def format_table(stats: Mapping[str, float]) -> str:
    """The stats as a two-column text table."""
    width = max(len(name) for name in stats)
    return "\n".join(
        [
            f"{'metric':<{width}} | value",
            f"{'-' * width}-|------",
            *(f"{name:<{width}} | {value:.4f}" for name, value in stats.items()),
        ]
    )


@dataclass(frozen=True)
class EvaluationReport:
    """What :func:`evaluate_server` did.

    Attributes:
        stats: Stat name → value (see :func:`evaluate_results`).
        results_path: The COCO keypoint-results JSON written.
        images: Images in the annotation file.
        resumed: Images taken from an earlier interrupted run instead of being sent again.
        people: Detected people written to the results.
    """

    stats: dict[str, float]
    results_path: Path
    images: int
    resumed: int
    people: int


def _read_partial(path: Path) -> dict[int, list[dict[str, Any]]]:
    done: dict[int, list[dict[str, Any]]] = {}
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the line being written when the run was interrupted
            continue
        done[int(record["image_id"])] = record["results"]
    return done


def evaluate_server(
    client: Client,
    annotations: str | os.PathLike[str] | KeypointAnnotations,
    images_dir: str | os.PathLike[str],
    results_path: str | os.PathLike[str],
    *,
    concurrency: int = 4,
    score_threshold: float | None = None,
    progress: Callable[[Iterator[int], int, int], Iterator[int]] | None = None,
) -> EvaluationReport:
    """Send every annotated image to the server, write COCO keypoint results and score them.

    Args:
        client: A connected :class:`~rtmo_client.Client`.
        annotations: The annotation file or :func:`load_annotations`' result.
        images_dir: Directory holding the annotated images (``file_name``).
        results_path: Where the COCO keypoint-results JSON goes; ``<results_path>.partial.jsonl`` holds the
            progress of an unfinished run and is continued from.
        concurrency: Requests in flight at once.
        score_threshold: The server's ``score_threshold`` (its default, 0.1, is what MMPose evaluates RTMO with).
        progress: Wraps the iterator of finished image ids, e.g. a progress bar; called with
            ``(iterator, total, already_done)``.

    Raises:
        EvaluationError: bad annotations, missing images, or a model whose keypoint count differs from the
            annotations' (all checked before any image is sent).
        RTMOClientError: the server refused an image or failed.
    """
    if not isinstance(annotations, KeypointAnnotations):
        annotations = load_annotations(annotations)
    paths = image_paths(annotations, images_dir)
    model_keypoints = len(client.model_info().keypoint_names)
    if model_keypoints != annotations.num_keypoints:
        raise EvaluationError(
            f"model: the server's model has {model_keypoints} keypoints but {annotations.path.name} annotates "
            f"{annotations.num_keypoints}; evaluate a {annotations.num_keypoints}-keypoint model against it"
        )
    results_path = Path(results_path)
    partial_path = results_path.with_name(results_path.name + ".partial.jsonl")
    done = {image_id: records for image_id, records in _read_partial(partial_path).items() if image_id in paths}
    resumed = len(done)
    # Rewrite what survived, so that a line cut short by the interruption is not continued by the next record.
    partial_path.write_text("".join(json.dumps({"image_id": i, "results": r}) + "\n" for i, r in done.items()))
    todo = [image_id for image_id in paths if image_id not in done]

    def finished() -> Iterator[int]:
        stream = client.stream(
            (paths[image_id] for image_id in todo), max_in_flight=concurrency, score_threshold=score_threshold
        )
        with partial_path.open("a") as partial:
            for image_id, result in zip(todo, stream):
                records = to_coco(result, image_id, category_id=annotations.category_id)
                partial.write(json.dumps({"image_id": image_id, "results": records}) + "\n")
                partial.flush()
                done[image_id] = records
                yield image_id

    for _ in progress(finished(), len(paths), resumed) if progress else finished():
        pass
    results = [record for image_id in paths for record in done[image_id]]
    temporary = results_path.with_name(results_path.name + ".tmp")
    temporary.write_text(json.dumps(results))
    os.replace(temporary, results_path)
    partial_path.unlink(missing_ok=True)
    return EvaluationReport(evaluate_results(annotations, results), results_path, len(paths), resumed, len(results))

"""COCO keypoint evaluation (rtmo_client.evaluation): the metric responds, equals MMPose's CocoMetric, and a
server run gives the AP that MMPose's own predictions give for the same checkpoint."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import rtmo
from mmpose_reference import run_reference
from rtmo.serving.tritonserver import TritonServer
from rtmo_serving import PHOTOS, serve_model

evaluation = pytest.importorskip("rtmo_client.evaluation", reason="needs the client SDK: pip install ./client[eval]")
from rtmo_client import Client  # noqa: E402

ANNOTATIONS = Path(__file__).resolve().parents[1] / "data" / "coco_val2017_subset.json"
COCO_PHOTOS = sorted(PHOTOS.glob("0000*.jpg"))


def annotated_people() -> list[dict]:
    return [a for a in json.loads(ANNOTATIONS.read_text())["annotations"] if a["num_keypoints"] > 0]


def results_from_annotations(shift_px: float = 0.0, noise_px: float = 0.0, seed: int = 0) -> list[dict]:
    """COCO keypoint results built from the ground truth: exact, shifted, or noisy, with random scores."""
    rng = np.random.default_rng(seed)
    results = []
    for person in annotated_people():
        keypoints = np.asarray(person["keypoints"], np.float64).reshape(-1, 3)
        keypoints[:, :2] += shift_px + rng.normal(0.0, noise_px, (len(keypoints), 2)) if noise_px else shift_px
        keypoints[:, 2] = rng.uniform(0.3, 1.0, len(keypoints))
        results.append(
            {
                "image_id": person["image_id"],
                "category_id": 1,
                "keypoints": keypoints.ravel().tolist(),
                "score": float(rng.uniform(0.2, 1.0)),
            }
        )
    return results


def test_perfect_predictions_score_ap_1_and_shifted_ones_score_lower() -> None:
    annotations = evaluation.load_annotations(ANNOTATIONS)
    perfect = evaluation.evaluate_results(annotations, results_from_annotations())
    assert list(perfect) == ["AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)"]
    assert perfect["AP"] == pytest.approx(1.0) and perfect["AR"] == pytest.approx(1.0)
    shifted = [
        evaluation.evaluate_results(annotations, results_from_annotations(shift_px=s))["AP"] for s in (3.0, 10.0)
    ]
    assert 1.0 > shifted[0] > shifted[1] >= 0.0
    assert evaluation.evaluate_results(annotations, [])["AP"] == 0.0


@pytest.mark.parity
def test_evaluator_equals_mmpose_coco_metric_for_the_same_predictions(mmpose_python: Path, tmp_path: Path) -> None:
    annotations = evaluation.load_annotations(ANNOTATIONS)
    results = results_from_annotations(noise_px=6.0, seed=1)
    # A false positive and an image without any prediction, so ranking and misses count too.
    results.append(
        {
            **results[0],
            "keypoints": [v + 200.0 if i % 3 != 2 else v for i, v in enumerate(results[0]["keypoints"])],
            "score": 0.95,
        }
    )
    results = [r for r in results if r["image_id"] != 785]
    (tmp_path / "results.json").write_text(json.dumps(results))
    ours = evaluation.evaluate_results(annotations, results)
    theirs = run_reference(
        mmpose_python, "coco-metric", "--annotations", str(ANNOTATIONS), "--predictions", str(tmp_path / "results.json")
    )["stats"]
    assert 0.1 < ours["AP"] < 0.9, ours  # a non-trivial score, so agreement means something
    assert ours == pytest.approx(theirs, abs=1e-12)


class ModelInfoOnly:
    """Stands in for a Client where the evaluation must stop before sending any image."""

    def __init__(self, keypoint_names: tuple[str, ...]) -> None:
        self.keypoint_names = keypoint_names

    def model_info(self) -> ModelInfoOnly:
        return self

    def stream(self, *args: object, **kwargs: object) -> Iterator[object]:
        raise AssertionError("no image may be sent")


def test_bad_annotations_missing_images_and_keypoint_mismatch_stop_before_sending(tmp_path: Path) -> None:
    client = ModelInfoOnly(tuple(f"k{i}" for i in range(17)))
    not_keypoints = tmp_path / "instances.json"
    not_keypoints.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    with pytest.raises(
        evaluation.EvaluationError, match="0 categories with 'keypoints'; expected a COCO keypoint annotation"
    ):
        evaluation.evaluate_server(client, not_keypoints, PHOTOS, tmp_path / "out.json")
    with pytest.raises(evaluation.EvaluationError, match="is not JSON"):
        evaluation.evaluate_server(client, PHOTOS / COCO_PHOTOS[0].name, PHOTOS, tmp_path / "out.json")
    some_photos = tmp_path / "photos"
    some_photos.mkdir()
    shutil.copy(COCO_PHOTOS[0], some_photos)
    with pytest.raises(evaluation.EvaluationError, match=r"3 of the 4 images .* are not in .*first: 000000040083.jpg"):
        evaluation.evaluate_server(client, ANNOTATIONS, some_photos, tmp_path / "out.json")
    with pytest.raises(evaluation.EvaluationError, match="the server's model has 14 keypoints but .* annotates 17"):
        evaluation.evaluate_server(
            ModelInfoOnly(tuple(f"k{i}" for i in range(14))), ANNOTATIONS, PHOTOS, tmp_path / "out.json"
        )
    assert not (tmp_path / "out.json").exists()


@pytest.mark.integration
def test_interrupted_server_run_resumes_from_its_partial_results(rtmo_server: TritonServer, tmp_path: Path) -> None:
    with Client(rtmo_server.urls.grpc) as client:
        full = evaluation.evaluate_server(client, ANNOTATIONS, PHOTOS, tmp_path / "full.json", concurrency=2)
        assert full.images == 4 and full.resumed == 0 and full.people > 0

        def stop_after_two(finished: Iterator[int], total: int, done: int) -> Iterator[int]:
            for count, image_id in enumerate(finished, 1):
                yield image_id
                if count == 2:
                    raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            evaluation.evaluate_server(client, ANNOTATIONS, PHOTOS, tmp_path / "run.json", progress=stop_after_two)
        assert not (tmp_path / "run.json").exists()
        with (tmp_path / "run.json.partial.jsonl").open("a") as partial:
            partial.write('{"image_id": 1979')  # the line being written when it was killed
        resumed = evaluation.evaluate_server(client, ANNOTATIONS, PHOTOS, tmp_path / "run.json")
    assert resumed.resumed == 2 and not (tmp_path / "run.json.partial.jsonl").exists()
    assert json.loads((tmp_path / "run.json").read_text()) == json.loads((tmp_path / "full.json").read_text())
    assert resumed.stats == full.stats


def people_by_image(results: list[dict], file_ids: dict[str, int]) -> dict[int, np.ndarray]:
    """COCO keypoint results → image_id → (N, J*3 + 1) rows of keypoint triplets and score, best score first."""
    rows: dict[int, list[list[float]]] = {image_id: [] for image_id in file_ids.values()}
    for result in results:
        rows[result["image_id"]].append([*result["keypoints"], result["score"]])
    return {image_id: np.array(sorted(r, key=lambda row: -row[-1])).reshape(len(r), -1) for image_id, r in rows.items()}


def mmpose_results(predictions: Path, file_ids: dict[str, int]) -> list[dict]:
    """MMPose's ``predict`` output as COCO keypoint results (score = box score, as CocoMetric with
    score_mode='bbox').
    """
    results = []
    with np.load(predictions) as reference:
        for i in range(int(reference["num_images"])):
            image_id = file_ids[Path(str(reference[f"img{i}_img_path"])).name]
            for keypoints, scores, score in zip(
                reference[f"img{i}_keypoints"], reference[f"img{i}_keypoint_scores"], reference[f"img{i}_bbox_scores"]
            ):
                triplets = np.concatenate([keypoints, scores[:, None]], axis=1)
                results.append({"image_id": image_id, "keypoints": triplets.ravel().tolist(), "score": float(score)})
    return results


@pytest.mark.parity
@pytest.mark.integration
def test_server_run_scores_the_ap_mmpose_scores_for_the_same_checkpoint(
    mmpose_python: Path, mmpose_checkpoint: object, tmp_path: Path
) -> None:
    checkpoint, _ = mmpose_checkpoint("body7", "t")
    run_reference(
        mmpose_python,
        "predict",
        "--dataset",
        "body7",
        "--size",
        "t",
        "--checkpoint",
        str(checkpoint),
        "--images",
        *map(str, COCO_PHOTOS),
        "--out",
        str(tmp_path / "mmpose.npz"),
    )
    theirs = run_reference(
        mmpose_python, "coco-metric", "--annotations", str(ANNOTATIONS), "--predictions", str(tmp_path / "mmpose.npz")
    )["stats"]
    with (
        serve_model(rtmo.load_checkpoint(checkpoint), tmp_path / "serving") as server,
        Client(server.urls.grpc) as client,
    ):
        ours = evaluation.evaluate_server(client, ANNOTATIONS, PHOTOS, tmp_path / "results.json")
    assert ours.people >= 5, "the calibrated checkpoint must detect people, or equal APs prove nothing"
    assert ours.stats == pytest.approx(theirs, abs=1e-9)
    # The same people, not just the same AP: equal counts and person scores per image, and each of MMPose's people
    # has its own served counterpart. Keypoints are compared by their median: ONNX Runtime's FP32 convolutions differ
    # from PyTorch's by ~1e-4 (boxes by ~0.03 px), and the DCC's sine encoding of pixel offsets amplifies that for a
    # few people of this random-weight checkpoint (measured: median 0.010 px, p90 0.09 px, p99 1.5 px over 343 people).
    file_ids = {image["file_name"]: image["id"] for image in json.loads(ANNOTATIONS.read_text())["images"]}
    served = people_by_image(json.loads(ours.results_path.read_text()), file_ids)
    reference = people_by_image(mmpose_results(tmp_path / "mmpose.npz", file_ids), file_ids)
    closest = []
    for image_id, rows in reference.items():
        assert served[image_id].shape == rows.shape, image_id
        np.testing.assert_allclose(served[image_id][:, -1], rows[:, -1], atol=2e-4, rtol=0, err_msg=str(image_id))
        keypoints = rows[:, :-1].reshape(len(rows), -1, 3)[..., :2]
        served_keypoints = served[image_id][:, :-1].reshape(len(rows), -1, 3)[..., :2]
        distance = np.abs(keypoints[:, None] - served_keypoints[None]).max(axis=(2, 3))
        assert len(set(distance.argmin(axis=1))) == len(rows), f"{image_id}: two MMPose people match one served person"
        closest.extend(distance.min(axis=1))
    assert np.median(closest) <= 0.05, np.percentile(closest, [50, 90, 99])


@pytest.mark.integration
def test_rtmo_client_eval_prints_the_ap_table_and_refuses_missing_images(
    rtmo_server: TritonServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtmo_client.cli import main

    common = ["--annotations", str(ANNOTATIONS), "--url", rtmo_server.urls.grpc, "--no-progress"]
    assert main(["eval", *common, "--images", str(PHOTOS), "--results", str(tmp_path / "r.json"), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("metric") and any(line.startswith("AR (L)") for line in out)
    report = json.loads(out[-1])
    assert list(report["stats"])[0] == "AP" and report["images"] == 4
    assert len(json.loads((tmp_path / "r.json").read_text())) == report["people"] > 0
    assert main(["eval", *common, "--images", str(tmp_path), "--results", str(tmp_path / "s.json")]) == 2
    assert "4 of the 4 images" in capsys.readouterr().err

"""Write the JSON schemas of tests/crd_schemas/ from the CRDs their projects publish (run by hand, not by the tests).

    python tests/crd_schemas/extract.py servicemonitor monitoring.coreos.com_servicemonitors.yaml
    python tests/crd_schemas/extract.py inferenceservice serving.kserve.io_inferenceservices.yaml

Each schema is the CRD's ``openAPIV3Schema`` of its storage version without the ``description`` texts. The
InferenceService CRD is 2 MB: only ``spec.predictor`` is kept (what deploy/kserve uses), without the other model
frameworks (sklearn, xgboost, ...), so an example using anything left out fails validation instead of passing it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
UNUSED_PREDICTOR_FIELDS = (
    "huggingface",
    "lightgbm",
    "onnx",
    "paddle",
    "pmml",
    "pytorch",
    "sklearn",
    "tensorflow",
    "xgboost",
    "workerSpec",
)


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: without_descriptions(value) for key, value in node.items() if key != "description"}
    if isinstance(node, list):
        return [without_descriptions(value) for value in node]
    return node


def storage_schema(crd: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["name"], without_descriptions(version["schema"]["openAPIV3Schema"])


def main(kind: str, crd_file: str) -> None:
    crd = yaml.safe_load(Path(crd_file).read_text())
    version, schema = storage_schema(crd)
    if kind == "inferenceservice":
        spec = schema["properties"]["spec"]
        spec["properties"] = {"predictor": spec["properties"]["predictor"]}
        predictor = spec["properties"]["predictor"]["properties"]
        for field in UNUSED_PREDICTOR_FIELDS:
            del predictor[field]
        schema["properties"].pop("status", None)  # written by the controller, never by us
    group = crd["spec"]["group"]
    document = {"apiVersion": f"{group}/{version}", "kind": crd["spec"]["names"]["kind"], "schema": schema}
    (HERE / f"{kind}.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])

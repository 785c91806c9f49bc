"""Build stages: checkpoint → ONNX (+ DCC weights) → TensorRT plan → Triton model repository.

Each stage is a typed function with a thin ``main(argv)`` CLI; ``python -m rtmo.build`` runs them all.
"""

"""The Triton-side runtime: what the Python-backend stubs import. NumPy, OpenCV, Pillow, threadpoolctl
and SciPy (the tracker's assignment) only.

Modules, in data-path order (each imports only those before it):

- ``preprocess``: decode/validate an image or frame, letterbox it;
- ``dcc``: the DCC keypoint decoder;
- ``pose_nms``: MMPose's nearby-joints pose NMS;
- ``postprocess``: one image's candidates -> people (score filter, NMS, DCC, pose NMS, cap, un-letterbox);
- ``triton``: the per-request response loop, BLAS threads and output packing the adapters share;
- ``tracking``: people -> tracks across a video's frames (the ``tracker`` model, after postprocess).
"""

"""Serving RTMO on NVIDIA Triton Inference Server: launching the server, repositories, clients."""

"""Training RTMO as MMPose trains it: SimOTA assignment, the head's losses, optimizer, schedule and EMA.

Needs the ``train`` extra (PyTorch); nothing in the serving runtime imports it.
"""

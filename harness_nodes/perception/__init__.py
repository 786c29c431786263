"""Perception and active viewpoint selection: RGB-D segmentation to 3-D object observations with
uncertainty (core.py), negative evidence, and where to look next (viewpoint.py); node.py is the
ROS wrapper."""

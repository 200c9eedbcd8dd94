"""Boxes and crops: the coordinate conventions (``boxes``), the original's template/search crop
on the host with NumPy and OpenCV (``crop``) and the same crop on the device, pixel-exact, inside
the jitted tracking step (``device_crop``).
"""

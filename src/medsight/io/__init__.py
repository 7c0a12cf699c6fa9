"""Readers and writers by format, all returning / taking :class:`medsight.io.Image`."""

from medsight.io.image import Image
from medsight.io.readers import read_image, write_image

__all__ = ["Image", "read_image", "write_image"]

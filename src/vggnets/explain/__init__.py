"""Why a VGG predicts what it does: class activation maps on named layers, and pictures of them.

cam.py      Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM and HiResCAM on any named layer, one forward pass per batch
overlay.py  heat-map colouring (matplotlib colormaps), overlays on the image, captioned grids, PNG files
files.py    image files explained batch by batch: cropped as their weights expect, overlays and maps written
"""

from .cam import METHODS, CamResult, cam, cam_layers, default_layer, explain
from .files import explain_files
from .overlay import DEFAULT_COLORMAP, colorize, colormap_table, grid, overlay, save_png

__all__ = [
    "DEFAULT_COLORMAP",
    "METHODS",
    "CamResult",
    "cam",
    "cam_layers",
    "colorize",
    "colormap_table",
    "default_layer",
    "explain",
    "explain_files",
    "grid",
    "overlay",
    "save_png",
]

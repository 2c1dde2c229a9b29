"""What the network sees, for other tasks than classification.

extractor.py   named layers (``conv1_1`` ... ``relu7``) and the frozen multi-layer FeatureExtractor
embeddings.py  the paper's Appendix B image descriptors, batched over files
losses.py      perceptual (content and style) losses
lpips.py       LPIPS, the learned perceptual image distance of Zhang et al. (2018), equal to the lpips package
lpips_pairs.py LPIPS over image files: two files or folders paired by name, measured in batches
style.py       neural style transfer (Gatys et al.): ``vggnets.stylize``
"""

from .extractor import HEAD_NAMES, FeatureExtractor, layer_names, named_layers

__all__ = ["HEAD_NAMES", "FeatureExtractor", "layer_names", "named_layers"]

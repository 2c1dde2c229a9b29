"""What the network sees, for other tasks than classification.

extractor.py   named layers (``conv1_1`` ... ``relu7``) and the frozen multi-layer FeatureExtractor
embeddings.py  the paper's Appendix B image descriptors, batched over files
losses.py      perceptual (content and style) losses
"""

from .extractor import HEAD_NAMES, FeatureExtractor, layer_names, named_layers

__all__ = ["HEAD_NAMES", "FeatureExtractor", "layer_names", "named_layers"]

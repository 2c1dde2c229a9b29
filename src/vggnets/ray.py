"""The Ray Data adapter's import path: ``from vggnets.ray import Classifier, Embedder`` (see vggnets.scale.ray).

``Classifier`` and ``Embedder`` are callable classes for ``ray.data.Dataset.map_batches``: each actor builds its model
once, then turns batches of image bytes (``ray.data.read_binary_files``) or decoded uint8 arrays
(``ray.data.read_images``) into top-k labels and probabilities, or into descriptors, as Arrow columns. Needs the
``ray`` extra: ``pip install 'vggnets[ray]'``. Importing this module does not import Ray.
"""

from __future__ import annotations

from .scale.ray import Classifier, Embedder, actor_device

__all__ = ["Classifier", "Embedder", "actor_device"]

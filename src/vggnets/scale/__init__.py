"""Inference beyond one process: pieces any distributed runner can share, and the Ray Data adapter.

images.py   the values of an image column (encoded bytes or decoded HWC uint8 arrays) as uint8 (3, H, W) tensors
runners.py  the model a worker builds once (classifier or descriptor), run on decoded images, errors kept per image
columns.py  batches in Ray Data's formats in, typed Arrow result columns out, the other columns passed through
ray.py      Classifier and Embedder, callable classes for ``ray.data.Dataset.map_batches`` (Ray imported lazily)
"""

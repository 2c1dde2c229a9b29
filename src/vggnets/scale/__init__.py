"""Inference beyond one process: pieces any distributed runner can share, and the Ray Data adapter.

images.py   the values of an image column (encoded bytes or decoded HWC uint8 arrays) as uint8 (3, H, W) tensors
runners.py  the model a worker builds once (classifier or descriptor), run on decoded images, errors kept per image
columns.py  batches in Ray Data's formats in, typed Arrow result columns out, the other columns passed through
ray.py      Classifier and Embedder, callable classes for ``ray.data.Dataset.map_batches`` (Ray imported lazily)
shards.py   units: the ordered input list cut into slices of a few hundred images, shared round-robin among ranks
parts.py    committed units as atomic part files beside the output, the run's fingerprint, skip and refuse on rerun
ranks.py    torchrun for inference: LOCAL_RANK's device, CPU threads shared out, process group, errors agreed
jobs.py     the one loop: each rank's units computed, committed to parts (or gathered), merged in order on rank 0
records.py  what a unit's part files hold: predictions (JSON lines), descriptors (.npy + index), evaluation counts
merge.py    feature parts into one .npy (memory-mapped concatenation), .parquet (row groups) or .pt
"""

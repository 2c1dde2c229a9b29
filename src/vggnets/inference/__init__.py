"""Fast inference: ``optimize`` -> ``Predictor``, batched classification of files, the machine it runs on.

engine.py    graph rewrites, precision, compilation, the AOT cache, Predictor
classify.py  top-k classification of image files in batches
machine.py   CPU kind, capabilities and measured peaks
"""

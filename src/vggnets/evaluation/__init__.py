"""The paper's evaluation: labelled data, protocols, streaming metrics, one pass over many protocols.

datasets.py   labelled image folders and lists, the loader
labels.py     ground-truth label files, class names and ids, the ILSVRC devkit's meta.mat
protocols.py  center, dense, multi-scale, multi-crop and their averages (paper section 3.2)
geometry.py   resize and crop geometry of the protocols (resized sizes, the resize, crop grids)
cost.py       multiply-accumulates of a forward pass at any input size (the protocols' cost)
checks.py     checks of numeric arguments (integers, lists of scales)
metrics.py    streaming top-k, per-class accuracy and confusion
evaluate.py   the runs of models and ensembles, and one pass over the data for all of them
results.py    the results as a paper-shaped Markdown table and a JSON document
"""

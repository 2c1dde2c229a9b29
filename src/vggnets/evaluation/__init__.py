"""The paper's evaluation: labelled data, protocols, streaming metrics, one pass over many protocols.

datasets.py   labelled image folders and lists, the loader
labels.py     ground-truth label files and the ILSVRC devkit
protocols.py  center, dense, multi-scale, multi-crop and their averages (paper section 3.2)
metrics.py    streaming top-k, per-class accuracy and confusion
evaluate.py   one pass over the data for every protocol, and the results table
"""

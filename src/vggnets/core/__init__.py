"""The network itself, with no I/O.

configs.py     the paper's Table 1 as data, model names, parameter and MAC counts
vgg.py         the VGG module, its convolutional features and initialisation schemes
layout.py      state_dict layout: expected shapes, architecture guessing, layout checks, key order
transforms.py  preprocessing presets and the one home of the ImageNet/Caffe mean and std
"""

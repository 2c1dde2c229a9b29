"""Training and fine-tuning (``vggnets train``), single process or under torchrun.

train.py   recipes, optimisation, data, the loop, checkpoints, distributed set-up, surgery
curves.py  learning curves (PNG) and TensorBoard logs
"""

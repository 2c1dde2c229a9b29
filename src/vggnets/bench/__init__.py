"""``vggnets benchmark``: the engine against torchvision's eager model, side by side in one run.

runner.py  timing, memory, agreement, end-to-end runs, the report table and plot
"""

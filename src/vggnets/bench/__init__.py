"""``vggnets benchmark``: the engine against torchvision's eager model, side by side in one run.

runner.py   the run: inputs, baseline and engine paths, end to end from files to labels
measure.py  instruments: timing, peak memory, percentiles, agreement of logits, FLOPs, matmul peaks, cold caches
report.py   the report: machine description, rows, the Markdown table, the plot, the JSON file
peers.py    --peers: ONNX Runtime and OpenVINO on our own ONNX export, timed like our paths
ratios.py   ours / the best peer at each precision, and its lines in the report
peaks.py    the peak reference per dtype: the best of convolution and matmul primitives at VGG16's shapes
"""

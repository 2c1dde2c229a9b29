"""Fast inference: ``optimize`` -> ``Predictor``, batched classification of files, the machine it runs on.

engine.py       optimize and the Predictor: puts the steps below together
plan.py         what runs here: precision, compile mode, device, batch buckets, capability checks
graph.py        batch norm folding, uint8 input normalised in the graph, channels-last, torch.export capture
calibration.py  int8 calibration images and PT2E quantisation
compiled.py     AOTInductor packages cached on disk, torch.compile, warm-up
winograd.py     Winograd F(2x2, 3x3) for the wide fp32 convolutions on the CPU
memory.py       freed memory kept for reuse (no page faults on every call)
backends.py     optimize(backend=...): ONNX Runtime and OpenVINO behind the same Predictor
onnx_models.py  our ONNX export of the engine's graph and onnxruntime's int8 QDQ model, cached
classify.py     top-k classification of image files in batches
machine.py      CPU kind, capabilities and measured peaks
"""

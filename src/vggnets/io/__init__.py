"""Files in and out; knows nothing of checkpoint layouts or models.

download.py    torch.hub cache, mirrors, verified downloads
checkpoint.py  safe reading of .pth/.pt/.safetensors files into flat state dicts
images.py      image decoding (torchvision.io, Pillow fallback) and collecting image files
output.py      the one atomic writer of output files
"""

"""CUDA sources (*.cu), shipped inside the wheel as the package edvr_vs.kernels; edvr_vs/kernel_loader.py compiles and launches them."""

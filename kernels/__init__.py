"""CUDA sources (*.cu), shipped inside the wheel as edvr_vs.kernel_src; see edvr_vs/kernels.py."""

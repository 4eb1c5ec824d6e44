"""Training EDVR as the paper describes it, with BasicSR-style YAML configs (``edvr-vs train``).

Recipe (Wang et al. 2019, §4.1): Charbonnier loss (ε = 1e-3), Adam (β = 0.9, 0.999),
learning rate 4e-4 with cosine annealing (optional restarts), random crops of 2N+1
frames with one random horizontal flip and 90° rotation for the whole window, and
optional initialisation of a deeper model from a shallower one's weights wherever
tensor shapes match.

``data``          training sources (video files, frame folders) and random windows
``degradations``  how inputs are made from ground truth (MATLAB bicubic, blur, noise, H.264)
``metrics``       loss, PSNR/SSIM (RGB and Y) and validation against bicubic
``loop``          the optimisation loop, checkpoints that resume, weight export, the command
"""

from edvr_vs.train.loop import export_weights, main, run, train

__all__ = ["export_weights", "main", "run", "train"]

"""edvr_vs: EDVR video restoration as a VapourSynth filter."""

from edvr_vs.checkpoint import CheckpointError, load_model
from edvr_vs.filter import edvr, two_stage
from edvr_vs.nn.edvr import EDVR, EDVRConfig
from edvr_vs.window_clips import window_clips
from edvr_vs.zoo import ZooError, names as models

__version__ = "0.1.0"
__all__ = ["EDVR", "EDVRConfig", "CheckpointError", "ZooError", "edvr", "load_model", "models", "two_stage",
           "window_clips", "__version__"]

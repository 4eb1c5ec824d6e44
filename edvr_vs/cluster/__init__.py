"""Scale-out on Ray: ``edvr-vs run --workers N`` (a local Ray instance) or ``--cluster ADDRESS``.

``run_distributed(job, output, ...)`` feeds the encoder the frames a single ``edvr-vs run`` feeds it
(bit for bit, on the same kind of device), computed by many workers in chunks; with a lossless
encoder the file decodes to the single run's frames. Needs the optional
``ray`` dependency: ``pip install "edvr_vs[cluster]"``.
"""

from edvr_vs.cluster.driver import Report, run_distributed
from edvr_vs.cluster.session import ClusterError

__all__ = ["ClusterError", "Report", "run_distributed"]

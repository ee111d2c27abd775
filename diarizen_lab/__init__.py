"""diarizen_lab: offline-first training, pruning and evaluation of WavLM-Conformer diarization models.

Importing the package makes every hub client offline and pyannote's telemetry silent (see
:mod:`diarizen_lab.offline`) and, when ``DIARIZEN_LAB_BLOCK_NETWORK=1``, installs a guard that refuses outbound
connections and name resolution (:mod:`diarizen_lab.utils.netguard`).
"""

from diarizen_lab.offline import OFFLINE_DEFAULTS, go_offline
from diarizen_lab.utils.netguard import install_from_env

__all__ = ["OFFLINE_DEFAULTS", "__version__"]

go_offline()
install_from_env()

__version__ = "0.1.0"

"""diarizen_lab: offline-first training, pruning and evaluation of WavLM-Conformer diarization models.

Importing the package makes every hub client offline (unless the user chose otherwise) and, when
``DIARIZEN_LAB_BLOCK_NETWORK=1``, installs a guard that refuses outbound connections.
"""

import os

from diarizen_lab.utils.netguard import install_from_env

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "PYANNOTE_METRICS_ENABLED": "0",
}
for _name, _value in OFFLINE_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

install_from_env()

__version__ = "0.1.0"

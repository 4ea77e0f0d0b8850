"""Process set-up every Enclave entry point makes before it does anything else.

* **No outbound calls**: the Hugging Face hub, transformers and unstructured are told to
  stay offline and send no telemetry, unless the deployer set those variables (e.g.
  ``HF_HUB_OFFLINE=0`` to let a deployment download a model named by hub id once).
* **Private files**: everything the process creates (the SQLite database, uploads,
  stores, logs, backups) is readable by its own user only (umask 077), and the data dir
  is made private (0700) if it is not.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
}


def prepare_process() -> None:
    """Offline by default, and private files (see the module docstring)."""
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    os.umask(0o077)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only this user may enter: created 0700, or tightened to 0700
    when it is ours and open to others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        info = path.stat()
        if info.st_mode & 0o077 and info.st_uid == os.getuid():
            path.chmod(0o700)
    return path

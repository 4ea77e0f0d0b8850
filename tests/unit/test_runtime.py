"""Process set-up: offline and telemetry-free by default, private files (run in child
processes: the umask and the environment are the process's own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, os, sys
from pathlib import Path
from core.runtime import prepare_process, private_dir
prepare_process()
folder = private_dir(Path(sys.argv[1]) / "data")
(folder / "enclave.db").write_text("x")
open_folder = Path(sys.argv[1]) / "shared"
open_folder.mkdir(mode=0o755)
os.chmod(open_folder, 0o755)
private_dir(open_folder)
print(json.dumps({
    "env": {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
                                           "DO_NOT_TRACK", "TRANSFORMERS_OFFLINE")},
    "dir": folder.stat().st_mode & 0o777,
    "file": (folder / "enclave.db").stat().st_mode & 0o777,
    "tightened": open_folder.stat().st_mode & 0o777,
}))
"""


def probe(tmp_path: Path, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    clean.pop("DO_NOT_TRACK", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_offline_and_private_by_default(tmp_path: Path) -> None:
    result = probe(tmp_path)
    assert result["env"] == {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "true",
        "TRANSFORMERS_OFFLINE": "1",
    }
    assert result["dir"] == 0o700
    assert result["file"] == 0o600  # the database, uploads...: this user only
    assert result["tightened"] == 0o700  # an existing open folder is made private


def test_a_deployer_may_allow_hub_downloads(tmp_path: Path) -> None:
    result = probe(tmp_path, HF_HUB_OFFLINE="0")
    assert result["env"]["HF_HUB_OFFLINE"] == "0"  # type: ignore[index]

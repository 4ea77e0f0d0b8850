"""Container health check of the Enclave image (the image has no curl; stdlib + redis).

    python healthcheck.py           GET http://127.0.0.1:8000/healthz (the API)
    python healthcheck.py URL       GET URL (the UI: http://127.0.0.1:8501/_stcore/health)
    python healthcheck.py --queue   PING the Redis queue at ENCLAVE_QUEUE__URL (worker, ingest)

Exit 0 when healthy, 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/healthz"
TIMEOUT_S = 4.0


def check_http(url: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    with opener.open(url, timeout=TIMEOUT_S) as response:  # raises on 4xx/5xx
        response.read(256)


def check_queue() -> None:
    import redis

    url = os.environ.get("ENCLAVE_QUEUE__URL")
    if not url:
        raise RuntimeError("ENCLAVE_QUEUE__URL is not set")
    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    try:
        client.ping()
    finally:
        client.close()


def main(argv: list[str]) -> int:
    target = argv[0] if argv else DEFAULT_URL
    try:
        if target == "--queue":
            check_queue()
        else:
            check_http(target)
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
        print(f"unhealthy: {target}: {exc.__class__.__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

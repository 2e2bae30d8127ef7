"""Container HEALTHCHECK for both images (stdlib only, no writes).

Looks at what PID 1 runs: `modelloop serve` -> GET /v2/health/live on MODELLOOP_PORT;
`modelloop monitor` -> GET /metrics on MODELLOOP_MONITOR_PORT; anything else (the trainer,
which has no HTTP port) is healthy while its process runs.
"""

import os
import sys
import urllib.request


def main() -> int:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        argv = []
    if "serve" in argv or "up" in argv:
        url = f"http://127.0.0.1:{os.environ.get('MODELLOOP_PORT', '8000')}/v2/health/live"
    elif "monitor" in argv:
        url = f"http://127.0.0.1:{os.environ.get('MODELLOOP_MONITOR_PORT', '8001')}/metrics"
    else:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return 0 if r.status == 200 else 1
    except OSError as e:
        print(f"unhealthy: {url}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

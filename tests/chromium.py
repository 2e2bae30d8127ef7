"""Headless Chromium for the tests that check pages in a real browser."""

# A quiet, offline, sandbox-free headless run (tests run as root in CI).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

"""Security headers. `X-Content-Type-Options: nosniff` goes on every response: the fast path
puts it in its own precomputed header list, `SecurityHeaders` adds it to everything else the
app answers (FastAPI routes, the body limit's 413 and 415, errors), and connections.py writes
it into the answers it makes itself (408, 503 over the connection limit). The report page
also gets a Content-Security-Policy and `Referrer-Policy: no-referrer` (`report_headers`)."""

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")

# The report page is one self-contained file: inline <style> blocks and inline SVG, no script,
# image, font, frame or form. Everything else is refused.
_REPORT_POLICY = (
    "default-src 'none'; style-src {styles}; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def report_headers(html: str) -> dict[str, str]:
    """The report page's headers: its CSP allows exactly the page's own inline <style>
    blocks, by hash (hashed here rather than from the monitor's style sheet: a page written
    by another version of the monitor keeps its look); no script runs."""
    hashes = sorted(
        {
            "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
            for s in _STYLE.findall(html)
        }
    )
    return {
        "Content-Security-Policy": _REPORT_POLICY.format(styles=" ".join(hashes) or "'none'"),
        "Referrer-Policy": "no-referrer",
    }


class SecurityHeaders:
    """Adds `X-Content-Type-Options: nosniff` to every response that lacks it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(k.lower() == NOSNIFF[0] for k, _ in headers):
                    headers.append(NOSNIFF)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

"""What unauthenticated readers see of actors and free text: no file paths (base names left),
no hosts or addresses (`admin@10.0.0.7` is `admin`). Used by `GET /v1/models/{m}` without the
admin token and by the report page."""

import re

# An absolute path (POSIX or Windows), up to whitespace, a quote or a comma; group 1 its base name.
_PATH = re.compile(r"""(?<![\w.~])(?:[A-Za-z]:)?[/\\](?:[^\s"',/\\]*[/\\])*([^\s"',/\\]*)""")
# `name@host`, `name@1.2.3.4`, `name@host:pid` as the service, CLI and trainer write actors.
_ADDRESS = re.compile(r"\b([\w.-]+)@[\w.:\[\]-]+")


def scrub(text: str) -> str:
    """`text` without file paths (base names left) and without actors' hosts or addresses."""
    return _ADDRESS.sub(r"\1", _PATH.sub(r"\1", text))


def actor_name(actor: str) -> str:
    """`admin@10.0.0.7` -> `admin`, `trainer@node:123` -> `trainer`."""
    return actor.partition("@")[0]

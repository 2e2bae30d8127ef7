"""Version numbers as they come in a path: ASCII digits, few enough to name a version.

One parse for every route (the prediction fast path, the FastAPI routes' schema, OIP). A
segment of 5,000 digits would otherwise reach `int`, which refuses more than 4,300 (a 500).
"""

MAX_VERSION_DIGITS = 9
MAX_VERSION = 10**MAX_VERSION_DIGITS - 1  # a registry numbers versions 1, 2, 3 …


def parse_version(text: str) -> int | None:
    """The version a path segment names, or None if it names none: not ASCII digits
    (`str.isdigit` also takes '²' or '٣'), or more digits than any version has."""
    if len(text) <= MAX_VERSION_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


def shown(text: str) -> str:
    """A segment for an error message, cut short: it may be thousands of characters long."""
    return repr(text if len(text) <= 20 else text[:20] + "…")

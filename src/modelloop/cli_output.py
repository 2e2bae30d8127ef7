"""How the command line reports errors: one line on stderr and a non-zero exit code."""

import os
import platform
import sys

EXIT_INPUT = 2  # the caller's input or the data is wrong
EXIT_REFUSED = 3  # the result was checked and refused (parity, smoke test)


def fail(message: str, code: int = EXIT_INPUT) -> int:
    print(f"modelloop: error: {message}", file=sys.stderr)
    return code


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def default_actor() -> str:
    return f"{os.environ.get('USER', 'user')}@{platform.node()}"

import re

from modelloop.store.errors import InvalidModelName

_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def check_model_name(name: str) -> str:
    """Return `name` if it is a valid model name, else raise InvalidModelName."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise InvalidModelName(str(name))
    return name

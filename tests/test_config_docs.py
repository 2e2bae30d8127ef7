"""docs/configuration.md lists every MODELLOOP_* setting with its default and meaning.

Regenerate it with `.venv/bin/python tests/test_config_docs.py --write`.
"""

import sys
from pathlib import Path

from pydantic_settings import BaseSettings

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _classes() -> list[tuple[str, type[BaseSettings]]]:
    from modelloop.monitoring.settings import MonitorSettings
    from modelloop.service.settings import ServiceSettings
    from modelloop.store.settings import StoreSettings
    from modelloop.training.worker import TrainerSettings

    return [
        ("All components", StoreSettings),
        ("Service (`modelloop serve`)", ServiceSettings),
        ("Monitor (`modelloop monitor`)", MonitorSettings),
        ("Trainer (`modelloop trainer`)", TrainerSettings),
    ]


def render() -> str:
    out = [
        "# Configuration",
        "",
        "Every setting is an environment variable (so a ConfigMap configures a pod). This "
        "page is generated from the settings classes: `.venv/bin/python "
        "tests/test_config_docs.py --write`.",
        "",
    ]
    shared = set(_classes()[0][1].model_fields)
    for title, cls in _classes():
        out += [f"## {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        for name, field in cls.model_fields.items():
            if cls is not _classes()[0][1] and name in shared:
                continue
            default = field.get_default(call_default_factory=True)
            shown = "(none)" if default is None else f"`{default}`"
            out.append(f"| `MODELLOOP_{name.upper()}` | {shown} | {field.description or ''} |")
        out.append("")
    return "\n".join(out)


def test_configuration_doc_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/configuration.md is out of date: run .venv/bin/python tests/test_config_docs.py "
        "--write"
    )


if __name__ == "__main__" and "--write" in sys.argv:
    DOC.write_text(render())

"""The `modelloop` command. Each subcommand imports its component only when it runs."""

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from modelloop.store.settings import StoreSettings

S = TypeVar("S", bound="StoreSettings")


def _train_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("train", help="train a model and publish it to the registry")
    p.add_argument("--model", default="default", help="model name (default: default)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="CSV file to train on (needs --target)")
    src.add_argument(
        "--dataset",
        default="synthetic",
        help="built-in data: synthetic (default), breast_cancer, wine, iris, diabetes",
    )
    p.add_argument("--target", help="the column to predict (with --data)")
    p.add_argument(
        "--task", choices=["classification", "regression"], help="default: inferred from the target"
    )
    p.add_argument(
        "--categorical",
        default="",
        help="comma-separated columns to treat as categorical (default: columns of strings)",
    )
    p.add_argument("--numeric", default="", help="comma-separated columns to treat as numeric")
    p.add_argument(
        "--estimator",
        default="hist_gradient_boosting",
        help="logreg, random_forest, hist_gradient_boosting (classification); "
        "linear, random_forest, hist_gradient_boosting (regression)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, default=20_000, help="rows of synthetic data")
    p.add_argument(
        "--promote",
        choices=["auto", "always", "never"],
        default="auto",
        help="auto: when there is no active version or the new one is better",
    )
    p.add_argument("--json", action="store_true", help="print the new version's metadata")


def _models_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("models", help="list, show, promote and roll back model versions")
    msub = p.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="every model with its active version")
    ls.add_argument("--json", action="store_true")
    show = msub.add_parser("show", help="a model's versions, metrics and history")
    show.add_argument("model")
    show.add_argument("--version", type=int, help="one version's full metadata")
    show.add_argument("--json", action="store_true")
    pr = msub.add_parser("promote", help="make a version the active one")
    pr.add_argument("model")
    pr.add_argument("version", type=int)
    pr.add_argument("--reason", default="promoted from the command line")
    rb = msub.add_parser("rollback", help="return to the previously active version")
    rb.add_argument("model")
    rb.add_argument("--reason", default="rolled back from the command line")


def _serve_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("serve", help="run the HTTP service (settings from MODELLOOP_*)")
    p.add_argument("--host", help="default: MODELLOOP_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, help="default: MODELLOOP_PORT or 8000")
    p.add_argument(
        "--grpc-port", type=int, help="OIP gRPC; default: MODELLOOP_GRPC_PORT or 8081; 0: off"
    )


def _monitor_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("monitor", help="run the monitor worker (drift, live metrics, triggers)")
    p.add_argument("--host", help="for /metrics; default: MODELLOOP_MONITOR_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, help="default: MODELLOOP_MONITOR_PORT or 8001")


def _trainer_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sub.add_parser("trainer", help="run the trainer worker (claims retrain jobs)")


def _up_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "up",
        help="run the whole loop on this machine (trains a default "
        "model first if the registry is empty)",
    )
    p.add_argument("--host", help="default: MODELLOOP_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, help="default: MODELLOOP_PORT or 8000")
    p.add_argument(
        "--grpc-port", type=int, help="OIP gRPC; default: MODELLOOP_GRPC_PORT or 8081; 0: off"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelloop",
        description="Serve scikit-learn models as ONNX, watch them for drift, retrain them.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _models_parser(sub)
    _serve_parser(sub)
    _monitor_parser(sub)
    _trainer_parser(sub)
    _up_parser(sub)
    from modelloop.log_cli import add_parser as log_parser
    from modelloop.simulate import add_parser as simulate_parser

    log_parser(sub)
    simulate_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from modelloop.training.cli import train_command

        return train_command(args)
    if args.command == "models":
        from modelloop.models_cli import models_command

        return models_command(args)
    if args.command == "serve":
        from modelloop.service.server import serve
        from modelloop.service.settings import ServiceSettings

        overrides = {
            k: v for k in ("host", "port", "grpc_port") if (v := getattr(args, k)) is not None
        }
        settings = _settings(ServiceSettings, **overrides)
        if isinstance(settings, int):
            return settings
        return serve(settings)
    if args.command == "monitor":
        from modelloop.monitoring.server import run_monitor
        from modelloop.monitoring.settings import MonitorSettings

        given = {"monitor_host": args.host, "monitor_port": args.port}
        monitor_settings = _settings(
            MonitorSettings, **{k: v for k, v in given.items() if v is not None}
        )
        if isinstance(monitor_settings, int):
            return monitor_settings
        if (problem := _registry_problem(monitor_settings)) is not None:
            return problem
        run_monitor(monitor_settings)
        return 0
    if args.command == "trainer":
        from modelloop.training.worker import TrainerSettings, run_trainer

        trainer_settings = _settings(TrainerSettings)
        if isinstance(trainer_settings, int):
            return trainer_settings
        if (problem := _registry_problem(trainer_settings)) is not None:
            return problem
        run_trainer(trainer_settings)
        return 0
    if args.command == "log":
        from modelloop.log_cli import log_command

        return log_command(args)
    if args.command == "simulate":
        from modelloop.simulate import simulate_command

        return simulate_command(args)
    if args.command == "up":
        from modelloop.up import up_command

        return up_command(args.host, args.port, args.grpc_port)
    raise AssertionError(args.command)


def _settings(cls: type[S], **overrides: Any) -> S | int:
    """The component's settings, or one line naming each bad variable and exit code 2 (the
    values are never shown: they include the admin token and database passwords)."""
    from pydantic import ValidationError

    from modelloop.cli_output import fail

    try:
        return cls(**overrides)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_input=False, include_url=False):
            name = "MODELLOOP_" + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(err["msg"] if name in err["msg"] else f"{name}: {err['msg']}")
        return fail("; ".join(problems))


def _registry_problem(settings: "StoreSettings") -> int | None:
    """A worker starts only on a registry it can reach: else one line and exit code 2."""
    from modelloop.cli_output import fail
    from modelloop.store.errors import RegistryUnavailable
    from modelloop.store.registry import open_registry

    try:
        open_registry(settings.registry_location).check()
    except RegistryUnavailable as e:
        return fail(str(e))
    return None


if __name__ == "__main__":
    sys.exit(main())

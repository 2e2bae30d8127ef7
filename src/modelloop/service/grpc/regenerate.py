"""Regenerate `grpc_predict_v2_pb2.py(i)` from `grpc_predict_v2.proto` (KServe's, unmodified).

Run with grpcio-tools installed (a build-time tool only, not a dependency of the service, so
in a venv of its own: it upgrades setuptools where it goes). The committed files come from
grpcio-tools 1.81.1 (protobuf gencode 6.33.5, hence `protobuf>=6.33.5` in the serve extra):

    python3 -m venv /tmp/grpctools && /tmp/grpctools/bin/pip install grpcio-tools==1.81.1
    /tmp/grpctools/bin/python src/modelloop/service/grpc/regenerate.py

The proto is KServe's `python/kserve/kserve/protocol/grpc/grpc_predict_v2.proto`, unmodified
(Triton's `grpc_service.proto` is a superset: same package, service, names and field numbers).

The generated module registers its messages in a descriptor pool of its own, not protobuf's
default pool: tritonclient and kserve define the same `inference.*` names in theirs, and one
process (a test, an embedding application) may import them next to us.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2]
PROTO = HERE / "grpc_predict_v2.proto"
DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
OWN_POOL = "_POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = _POOL.AddSerializedFile("


def main() -> int:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{SRC}",
            f"--python_out={SRC}",
            f"--pyi_out={SRC}",
            str(PROTO.relative_to(SRC)),
        ],
        check=True,
        cwd=SRC,
    )
    generated = HERE / "grpc_predict_v2_pb2.py"
    text = generated.read_text()
    if text.count(DEFAULT_POOL) != 1:
        print(f"{generated}: expected one {DEFAULT_POOL!r}", file=sys.stderr)
        return 1
    generated.write_text(text.replace(DEFAULT_POOL, OWN_POOL))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regenerate `grpc_predict_v2_pb2.py(i)` from `grpc_predict_v2.proto` (KServe's, unmodified).

Run from the repository root with grpcio-tools installed (a build-time tool only, not a
dependency of the service): `python src/modelloop/service/grpc/regenerate.py`.

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

"""Run with the kserve package's own Python (tests/service/kserve/setup.sh makes the venv):
KServe's stock InferenceGRPCClient against a modelloop gRPC port. Reads the rows from stdin
(JSON), prints what the client got (JSON).

    python client.py HOST:PORT MODEL < rows.json
"""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest

NUMERIC = ["age", "income", "tenure_months", "sessions_per_week", "support_tickets"]
CATEGORICAL = ["region", "plan", "device"]


async def main(target: str, model: str, rows: list[dict[str, object]]) -> dict[str, object]:
    client = InferenceGRPCClient(target)
    try:
        inputs = []
        for name in NUMERIC:
            values = np.array([[r[name]] for r in rows], dtype=np.float32)
            tensor = InferInput(name, list(values.shape), "FP32")
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
        for name in CATEGORICAL:
            values = np.array([[str(r[name])] for r in rows], dtype=object)
            tensor = InferInput(name, list(values.shape), "BYTES")
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
        request = InferRequest(model_name=model, infer_inputs=inputs, request_id="kserve-1")
        response = await client.infer(request)
        outputs = {o.name: o.as_numpy().tolist() for o in response.outputs}
        for name, values in outputs.items():
            outputs[name] = [v.decode() if isinstance(v, bytes) else v for v in values]
        return {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready(model),
            "unknown_ready": await client.is_model_ready("no-such-model"),
            "model_name": response.model_name,
            "id": response.id,
            "outputs": outputs,
        }
    finally:
        await client.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], json.load(sys.stdin)))))

"""Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService`, as KServe and Triton
define it, served in the HTTP process on the same event loop and through the same predictor.

Modules: `grpc_predict_v2_pb2` (generated from KServe's `grpc_predict_v2.proto`, committed; see
`regenerate.py`), `tensors` (messages to and from the predictor's requests), `status` (our
errors as gRPC status codes), `servicer` (the RPCs), `server` (start and drain).
"""

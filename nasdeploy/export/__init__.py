"""Export targets: ONNX (+ ONNX Runtime), TensorRT and AOTInductor, each with a parity check."""

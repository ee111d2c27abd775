"""Deployment export of segmentation models (ONNX, optional ``[export]`` extra: onnx, onnxruntime, onnxscript)."""

"""The ONNX Runtime toolchain: sessions and execution providers, export with manifests, graph rewrites and
lower precisions. The graphs of each model live beside the model (`detection.florence2_onnx`,
`segmentation.sam2_onnx`)."""

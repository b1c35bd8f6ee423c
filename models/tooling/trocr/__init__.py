"""TrOCR tooling: Hugging Face checkpoint -> ONNX graphs, INT8 copies, parity checks."""

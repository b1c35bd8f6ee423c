"""The model layer: OCR engines behind one small interface, and model tooling."""

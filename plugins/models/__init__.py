"""Built-in model plugins (scikit-learn estimators that skl2onnx can export)."""

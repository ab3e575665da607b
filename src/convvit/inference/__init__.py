"""Inference with trained models: prediction on image files (CSV) and export (ONNX / .safetensors, verified).

:func:`~convvit.inference.trained.load_trained_model` builds the model of a ``convvit fit`` checkpoint with its raw
or EMA weights; :mod:`convvit.inference.predict` classifies images with it; :mod:`convvit.inference.export`
writes it to ONNX (checked against PyTorch with onnxruntime) or ``.safetensors``.
"""

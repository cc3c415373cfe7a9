"""`llmft serve`: a run (or a model) behind an OpenAI-compatible HTTP API with dynamic batching and Prometheus metrics.
app.py (routes), batcher.py (the queue that batches), served_model.py (the model and the code paths `llmft generate`
uses), onnx_model.py (backend=onnx: a classifier's verified ONNX export on onnxruntime), schemas.py (request models),
errors.py (OpenAI-style errors), metrics.py (prometheus-client), server.py (uvicorn). Needs the `serve` extra:
pip install "llmft[serve]"."""

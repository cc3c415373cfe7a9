"""`llmft serve`: a run (or a model) behind an OpenAI-compatible HTTP API with dynamic batching and Prometheus metrics.
app.py (routes), batcher.py (the queue that batches), served_model.py (the model and the code paths `llmft generate`
uses), schemas.py (request models), errors.py (OpenAI-style errors), metrics.py (prometheus-client), server.py
(uvicorn). Needs the `serve` extra: pip install "llmft[serve]"."""

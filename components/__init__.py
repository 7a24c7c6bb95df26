"""The science of slowfast: data, models, methods and metrics.

Plain Python, PyTorch and polars only. Nothing here imports prefect or mlflow, so every
piece can be unit-tested without a server.
"""

"""Prefect tasks: the coarse steps of the pipeline, each a thin call into components/."""

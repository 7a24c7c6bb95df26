"""The code of a registered text model (MLflow's models from code: this file travels with
the model and defines it at load, so nothing is unpickled). Input: a table with a `text`
column, one document per row; output: one row per document with `bytes`, `bpb_static`,
`bpb_fast` and `gain` (components/text/serving.py; README "Serving")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class TextReaderModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from components.checkpoint import load_state
        from components.text.serving import TextReader

        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.reader = TextReader.from_spec(spec, load_state(context.artifacts["slow"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from components.text.serving import COLUMNS

        if "text" not in model_input.columns:
            raise ValueError(f"the input needs a 'text' column (one document per row); it has {list(model_input.columns)}")
        return pd.DataFrame(self.reader.read(list(model_input["text"])), columns=list(COLUMNS))


mlflow.models.set_model(TextReaderModel())

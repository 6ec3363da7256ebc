"""The MLflow pyfunc that serves generation: tokenizer + model + decoder in one logged model.

Input: a DataFrame with a ``prompt`` column (strings; "" starts a new document). Params (in the
signature, so ``mlflow models serve`` accepts them per request): strategy, temperature, top_k (0 = off),
top_p, beam_width, length_penalty, max_tokens, min_tokens, seed. Output: a DataFrame with ``prompt`` and ``text`` (the
prompt followed by the best continuation: the first sample, or the best beam).

Serving (arpipe must be installed in the serving environment, hence ``--env-manager local``)::

    mlflow models serve --env-manager local -m runs:/<run_id>/ngram -p 5001
    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
      -d '{"dataframe_records": [{"prompt": "ROMEO:"}], "params": {"strategy": "top-p", "top_p": 0.9}}'
"""

from __future__ import annotations

from typing import Any, Optional

import mlflow.models
import mlflow.pyfunc
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

PARAMS = ParamSchema([
    ParamSpec("strategy", "string", "sample"),
    ParamSpec("temperature", "double", 1.0),
    ParamSpec("top_k", "long", 0),
    ParamSpec("top_p", "double", 1.0),
    ParamSpec("beam_width", "long", 4),
    ParamSpec("length_penalty", "double", 0.0),
    ParamSpec("max_tokens", "long", 64),
    ParamSpec("min_tokens", "long", 0),
    ParamSpec("seed", "long", 0),
])
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "prompt")]),
    outputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "text")]),
    params=PARAMS,
)


def requirements() -> list[str]:
    """What the model's ``arcore`` code imports, pinned to the versions it was logged with."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "numpy", "pandas", "pyarrow", "pydantic",
                                                 "tokenizers", "torch")]


def decode_config(params: Optional[dict[str, Any]]):
    from arcore.decode import DecodeConfig

    p = {spec.name: spec.default for spec in PARAMS.params} | dict(params or {})
    return DecodeConfig(
        strategy=p["strategy"], temperature=float(p["temperature"]), top_k=int(p["top_k"]) or None,
        top_p=float(p["top_p"]) if float(p["top_p"]) < 1.0 or p["strategy"] == "top-p" else None,
        beam_width=int(p["beam_width"]), length_penalty=float(p["length_penalty"]),
        max_tokens=int(p["max_tokens"]), min_tokens=int(p["min_tokens"]), seed=int(p["seed"]),
    )


class TextGenerator(mlflow.pyfunc.PythonModel):
    # The input columns and params are declared in SIGNATURE; MLflow's predict type hints cannot express a
    # DataFrame's columns (pd.DataFrame is inferred as AnyType), so its type-hint wrapper would validate
    # nothing and warn on every load of this file (several times per pipeline run). MLflow reads this
    # attribute in PythonModel.__init_subclass__ to skip that wrapper; schema enforcement is unchanged.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from arcore.generate import load_bundle

        self.tok, self.model, self.name = load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input, params: Optional[dict[str, Any]] = None):
        import pandas as pd

        from arcore.generate import generate_text

        cfg = decode_config(params)
        prompts = [str(p) for p in model_input["prompt"]]
        texts = [generate_text(self.model, self.tok, prompt, cfg)[0] for prompt in prompts]
        return pd.DataFrame({"prompt": prompts, "text": texts})


# Models from code: MLflow loads this file (not a pickle) and takes the model set here.
mlflow.models.set_model(TextGenerator())

"""The MLflow pyfunc that serves generation: tokenizer + model + decoder in one logged model.

Input: prompts (strings; "" starts a new document) as a list (``predict(["ROMEO:"])``, served as
``{"inputs": ["ROMEO:"]}``) or as a DataFrame's ``prompt`` column. The signature declares one unnamed string
column, as MLflow's own text-generation models do: a named column would refuse a plain list. Params (in the
signature, so ``mlflow models serve`` accepts them per request): strategy, temperature, top_k (0 = off),
top_p, beam_width, length_penalty, max_tokens, min_tokens, seed; their defaults are ``arpipe generate``'s.
An unknown param is refused by ``predict`` with the allowed names; note that ``mlflow.pyfunc.load_model``
and ``mlflow models serve`` drop params outside the signature before ``predict`` sees them (MLflow logs
"Unrecognized params ... are ignored"), so through them only the known names arrive. Output: a DataFrame
with ``prompt`` and ``text`` (the prompt followed by the best continuation: the first sample, or the best
beam).

Each is logged as an MLflow 3 LoggedModel (``tasks.tracking.Tracker.log_generator``) with ``INPUT_EXAMPLE`` as
its input example. Serving (arpipe must be installed in the serving environment, hence ``--env-manager
local``; ``models:/<model_id>`` of a run's ``arpipe.model.<name>`` tag serves the same way)::

    mlflow models serve --env-manager local -m models:/arpipe-ngram@champion -p 5001
    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
      -d '{"inputs": ["ROMEO:"], "params": {"strategy": "top-p", "top_p": 0.9}}'
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
    ParamSpec("length_penalty", "double", 0.6),  # arpipe generate's --length-penalty (GNMT's alpha)
    ParamSpec("max_tokens", "long", 64),
    ParamSpec("min_tokens", "long", 0),
    ParamSpec("seed", "long", 0),
])
# A list of prompts, the input ``predict(["ROMEO:"])`` takes; saved with the model as {"inputs": ["ROMEO:"]}.
INPUT_EXAMPLE = ["ROMEO:"]
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string")]),
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
    from mlflow.exceptions import MlflowException

    allowed = [spec.name for spec in PARAMS.params]
    unknown = sorted(set(params or {}) - set(allowed))
    if unknown:
        raise MlflowException.invalid_parameter_value(
            f"unknown param(s) {', '.join(map(repr, unknown))}; the params are: {', '.join(allowed)}")
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
        prompts = [str(p) for p in _prompts(model_input)]
        texts = [generate_text(self.model, self.tok, prompt, cfg)[0] for prompt in prompts]
        return pd.DataFrame({"prompt": prompts, "text": texts})


def _prompts(model_input) -> list:
    """The prompts of ``predict``'s input: a DataFrame's ``prompt`` column, or the one column MLflow makes of
    a list or a string (named ``0``). ``["ROMEO:"] -> ["ROMEO:"]``."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    if isinstance(model_input, str):
        return [model_input]
    if not isinstance(model_input, pd.DataFrame):
        return list(model_input)
    for column in ("prompt", 0):
        if column in model_input.columns:
            return list(model_input[column])
    raise MlflowException.invalid_parameter_value(
        f"no prompts in the input: pass a list of strings or a DataFrame with a 'prompt' column "
        f"(got columns {list(model_input.columns)})")


# Models from code: MLflow loads this file (not a pickle) and takes the model set here.
mlflow.models.set_model(TextGenerator())

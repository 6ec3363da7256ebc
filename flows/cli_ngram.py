"""``arpipe ngram``: KenLM-style commands on whitespace-tokenized text (one sentence per line).

    arpipe ngram estimate --order 5 --smoothing kneser-ney --input train.txt --arpa model.arpa
    arpipe ngram score --arpa model.arpa --input test.txt

``estimate`` does lmplz's job with any of the smoothings (mle, laplace, add-k, interpolated, katz,
kneser-ney); ``score`` does query's and prints the total log10 probability, OOV and token counts and the
perplexity including and excluding OOVs. Failures print one ``error:`` line and exit with code 2.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from arcore.errors import ArpipeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="n-gram language models on whitespace-tokenized text, the KenLM way.")


class Smoothing(str, Enum):
    mle = "mle"
    laplace = "laplace"
    add_k = "add-k"
    interpolated = "interpolated"
    katz = "katz"
    kneser_ney = "kneser-ney"


def _fail(error: ArpipeError) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


@app.command()
def estimate(
    input: Path = typer.Option(..., "--input", help="training text, one sentence per line", dir_okay=False),
    arpa: Path = typer.Option(..., "--arpa", help="ARPA file to write (.gz compresses)", dir_okay=False),
    order: int = typer.Option(5, "--order", min=1, max=10, help="highest n-gram order"),
    smoothing: Smoothing = typer.Option(Smoothing.kneser_ney, "--smoothing", help="estimator"),
    k: float = typer.Option(0.5, "--k", min=0.0, help="k for add-k smoothing"),
    heldout: Optional[Path] = typer.Option(None, "--heldout", dir_okay=False,
                                           help="held-out text for the interpolation weights (default: "
                                                "last tenth of the training sentences)"),
    discount_fallback: bool = typer.Option(False, "--discount-fallback",
                                           help="Kneser-Ney: use D = 0.5 1 1.5 when counts-of-counts "
                                                "cannot give discounts (tiny data), as lmplz does"),
    memory_mb: int = typer.Option(1024, "--memory-mb", min=16, help="counting memory budget"),
) -> None:
    """Estimate an n-gram model from TRAIN.txt and write it as ARPA."""
    try:
        from arcore.ngram.text import estimate_arpa_from_text

        model, vocab = estimate_arpa_from_text(
            input, arpa, order, smoothing.value, k=k, heldout=heldout,
            discount_fallback=(0.5, 1.0, 1.5) if discount_fallback else None, memory_budget_mb=memory_mb)
    except ArpipeError as error:
        raise _fail(error)
    typer.echo(f"{smoothing.value} order {order}: vocabulary {len(vocab)}, n-grams per order "
               + " / ".join(str(m) for m in model.num_ngrams()))
    if "discounts" in model.info:
        for n, d in enumerate(model.info["discounts"], start=1):
            typer.echo(f"  discounts order {n}: " + " / ".join(f"{x:.6g}" for x in d))
    if "weights" in model.info:
        typer.echo("  interpolation weights: " + " ".join(f"{x:.4f}" for x in model.info["weights"]))
    typer.echo(f"wrote {arpa}")


@app.command()
def score(
    arpa: Path = typer.Option(..., "--arpa", help="ARPA model", dir_okay=False),
    input: Path = typer.Option(..., "--input", help="text to score, one sentence per line", dir_okay=False),
) -> None:
    """Score TEST.txt with an ARPA model, with KenLM query's conventions."""
    try:
        from arcore.ngram.text import score_text_with_arpa

        result = score_text_with_arpa(arpa, input)
    except ArpipeError as error:
        raise _fail(error)
    typer.echo(f"Perplexity including OOVs:\t{result.perplexity:.4f}")
    typer.echo(f"Perplexity excluding OOVs:\t{result.perplexity_excl_oov:.4f}")
    typer.echo(f"OOVs:\t{result.oov}")
    typer.echo(f"Tokens:\t{result.tokens}")
    typer.echo(f"Total log10 probability:\t{result.total_log10:.4f}")

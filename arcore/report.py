"""The run report: one self-contained page per pipeline run (nanochat's ``report.md`` is the anchor).

In: the run summary (``flows.pipeline``: each stage's state, seconds and output directory, the registry
decisions) and the resolved config as YAML. Everything else is read from the stage outputs the summary
names: ingest's ``report.json``, the tokenizer's ``preview.txt`` and records, the shards' records, the
training stages' ``history.json`` and ``gradient_norms.png``, evaluate's ``comparison.md``,
``mixtures.json``, ``bits_per_byte.png`` and ``samples.md``. A stage the run did not have is left out.
Out: ``build_report`` -> ``Report(markdown, html)``: the same sections, in Markdown (charts named, not
embedded: what a Prefect artifact or a terminal shows) and in HTML with every chart embedded as a PNG
data URI (what the MLflow UI shows as an artifact, and a browser opens from the work dir)::

    # arpipe run <flow run>      stages: state, seconds, output
    ## Corpus and splits          documents, bytes, tokens per split; duplicates and repairs
    ## Tokenizer                  kind, size, tokens per word, bytes per token, the first merges
    ## Models                     the ranked test table, the bar chart, the mixtures' weights
    ## Training                   per epoch: train/valid loss, valid bits per byte; learning curves; ||dL/dh||
    ## Samples                    one per decoder per model
    ## Registry                   the champion decision per model family
    ## Config                     the resolved config
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

TRAINING_STAGES = ("rnn", "transformer")


@dataclass(frozen=True)
class Report:
    markdown: str
    html: str


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _manifest(out: Path) -> dict:
    return _read_json(out / "manifest.json") or {}


def _learning_curves(histories: Mapping[str, list]) -> Optional[bytes]:
    """PNG: train and valid loss per epoch for each training stage."""
    if not histories:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, history in histories.items():
        epochs = range(1, len(history) + 1)
        ax.plot(epochs, [h.get("train_loss") for h in history], marker="o", label=f"{name} train")
        ax.plot(epochs, [h.get("valid_loss") for h in history], marker="s", linestyle="--", label=f"{name} valid")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title("Learning curves")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def build_report(summary: Mapping, config_yaml: str) -> Report:
    outs = {s["stage"]: Path(s["output_dir"]) for s in summary["stages"] if s.get("state") in ("completed", "cached")}
    md: list[str] = []  # Markdown blocks; images as ("image", title, png bytes)
    blocks: list = []

    def text(s: str) -> None:
        blocks.append(s)

    def image(title: str, png: Optional[bytes]) -> None:
        if png:
            blocks.append(("image", title, png))

    text(f"# arpipe run {summary.get('flow_run_name') or summary.get('flow_run_id') or ''}".rstrip())
    text(f"MLflow run `{summary.get('mlflow_run_id')}`, Prefect flow run `{summary.get('flow_run_id')}`, "
         f"runner `{summary.get('runner')}`.")
    rows = ["| stage | state | seconds | output |", "|---|---|---|---|"]
    rows += [f"| {s['stage']} | {s['state']} | {float(s.get('seconds') or 0):.2f} | `{s['output_dir']}` |"
             for s in summary["stages"]]
    text("\n".join(rows))

    if "ingest" in outs:
        rep = _read_json(outs["ingest"] / "report.json") or {}
        shards = _manifest(outs["shards"]).get("records", {}) if "shards" in outs else {}
        rows = ["| split | documents | bytes | tokens |", "|---|---|---|---|"]
        for split in ("train", "valid", "test"):
            rows.append(f"| {split} | {rep.get('documents', {}).get(split, '-')} | {rep.get('bytes', {}).get(split, '-')} "
                        f"| {shards.get(f'{split}_tokens', '-')} |")
        repairs = {k: v for k, v in (rep.get("repairs") or {}).items() if v}
        text("## Corpus and splits\n\n" + "\n".join(rows) + "\n\n"
             f"{rep.get('files_read', '-')} file(s) read, {rep.get('raw_documents', '-')} raw documents, "
             f"{rep.get('duplicates_dropped', 0)} duplicates dropped, {rep.get('empty_documents', 0)} empty, "
             f"{rep.get('binary_files_skipped', 0)} binary files skipped, repairs: "
             f"{', '.join(f'{k} {v}' for k, v in repairs.items()) or 'none'}.")

    if "tokenizer" in outs:
        preview = _read_text(outs["tokenizer"] / "preview.txt") or ""
        text("## Tokenizer\n\n```text\n" + "\n".join(preview.splitlines()[:16]) + "\n```")

    if "evaluate" in outs:
        ev = outs["evaluate"]
        table = _read_text(ev / "comparison.md")
        section = ["## Models", table.strip() if table else "(no comparison table)"]
        text("\n\n".join(section))
        image("Bits per byte on the test split", (ev / "bits_per_byte.png").read_bytes()
              if (ev / "bits_per_byte.png").is_file() else None)

    histories = {name: h for name in TRAINING_STAGES if name in outs
                 and isinstance(h := _read_json(outs[name] / "history.json"), list) and h}
    if histories:
        rows = ["| model | epoch | train loss | valid loss | valid ppl | valid bits/byte |", "|---|---|---|---|---|---|"]
        for name, history in histories.items():
            for i, h in enumerate(history, 1):
                rows.append(f"| {name} | {i} | {h.get('train_loss', float('nan')):.4f} | "
                            f"{h.get('valid_loss', float('nan')):.4f} | {h.get('valid_ppl', float('nan')):.2f} | "
                            f"{h.get('valid_bpb', float('nan')):.4f} |")
        text("## Training\n\n" + "\n".join(rows))
        image("Learning curves", _learning_curves(histories))
        for name in histories:
            png = outs[name] / "gradient_norms.png"
            image(f"{name}: gradient norm across a BPTT window", png.read_bytes() if png.is_file() else None)

    if "evaluate" in outs:
        samples = _read_text(outs["evaluate"] / "samples.md")
        if samples:
            body = samples.split("\n", 1)[1] if samples.startswith("Samples") else samples
            first = samples.split("\n", 1)[0]
            text("## Samples\n\n" + first + "\n" + body.replace("\n## ", "\n### "))

    decisions = summary.get("registry") or []
    if decisions:
        rows = ["| model | version | promoted | candidate valid bpb | champion valid bpb | why |", "|---|---|---|---|---|---|"]
        for d in decisions:
            champion = ("-" if d.get("champion_valid_bpb") is None
                        else f"{d['champion_valid_bpb']:.4f} (v{d.get('champion_version')})")
            rows.append(f"| {d['model']} | {d.get('version')} | {'yes' if d.get('promoted') else 'no'} | "
                        f"{d['candidate_valid_bpb']:.4f} | {champion} | {d.get('reason', '')} |")
        text("## Registry\n\n" + "\n".join(rows))
    else:
        text("## Registry\n\nNothing registered by this run.")
    text("## Config\n\n```yaml\n" + config_yaml.rstrip() + "\n```")

    for b in blocks:
        md.append(f"*Chart: {b[1]}* (embedded in report.html)" if isinstance(b, tuple) else b)
    return Report(markdown="\n\n".join(md) + "\n", html=_html(blocks))


def _html(blocks: list) -> str:
    import markdown

    body = []
    for b in blocks:
        if isinstance(b, tuple):
            data = base64.b64encode(b[2]).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(b[1])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(b[1])}</figcaption></figure>")
        else:
            body.append(markdown.markdown(b, extensions=["tables", "fenced_code"]))
    style = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em}"
             "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>arpipe run report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

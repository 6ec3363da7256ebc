"""`arpipe ngram estimate|score` through typer's CliRunner on a small file."""

import re

import pytest
from typer.testing import CliRunner

from flows.cli_ngram import app

TRAIN = "the cat sat on the mat\nthe dog sat on the log\n\na cat saw a dog\nthe dog saw the cat\n" * 4
TEST = "the cat sat on the log\na zebra saw the dog\n"

runner = CliRunner()


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "train.txt").write_text(TRAIN)
    (tmp_path / "test.txt").write_text(TEST)
    return tmp_path


def field(output, name):
    return float(re.search(rf"^{re.escape(name)}:\t(\S+)$", output, flags=re.M).group(1))


@pytest.mark.parametrize("smoothing", ["mle", "laplace", "add-k", "interpolated", "katz", "kneser-ney"])
def test_estimate_then_score(files, smoothing):
    arpa = files / "m.arpa"
    est = runner.invoke(app, ["estimate", "--order", "3", "--smoothing", smoothing, "--input",
                              str(files / "train.txt"), "--arpa", str(arpa), "--discount-fallback"])
    assert est.exit_code == 0, est.output
    assert arpa.exists() and "n-grams per order" in est.output
    out = runner.invoke(app, ["score", "--arpa", str(arpa), "--input", str(files / "test.txt")])
    assert out.exit_code == 0, out.output
    # 6 + 5 words + 2 </s>; "zebra" is the only OOV
    assert field(out.output, "Tokens") == 13 and field(out.output, "OOVs") == 1
    total = field(out.output, "Total log10 probability")
    if smoothing != "mle":  # MLE gives probability 0 to unseen events (-99 in ARPA)
        assert field(out.output, "Perplexity including OOVs") == pytest.approx(10 ** (-total / 13), rel=1e-3)
        assert field(out.output, "Perplexity excluding OOVs") > 1


def test_laplace_on_tiny_text_is_hand_checkable(files, tmp_path):
    """unigram add-one over V' = 4 ids (a, b, </s>, <unk>); blank lines are dropped, so the counts are
    a 1, b 1, </s> 1 of 3 tokens -> p(a) = p(</s>) = (1+1)/(3+4); the line "a" scores log10(2/7 * 2/7)."""
    (tmp_path / "tiny.txt").write_text("a b\n\n\n")
    (tmp_path / "one.txt").write_text("a\n")
    runner.invoke(app, ["estimate", "--order", "1", "--smoothing", "laplace", "--input", str(tmp_path / "tiny.txt"),
                        "--arpa", str(tmp_path / "u.arpa")])
    out = runner.invoke(app, ["score", "--arpa", str(tmp_path / "u.arpa"), "--input", str(tmp_path / "one.txt")])
    import math
    assert field(out.output, "Total log10 probability") == pytest.approx(math.log10(2 / 7 * 2 / 7), abs=1e-4)


def test_errors_are_one_line_with_exit_code_2(files):
    missing = runner.invoke(app, ["score", "--arpa", str(files / "none.arpa"), "--input", str(files / "test.txt")])
    assert missing.exit_code == 2
    assert missing.output.strip().startswith("error: ") and "Traceback" not in missing.output
    kn = runner.invoke(app, ["estimate", "--order", "3", "--input", str(files / "train.txt"),
                             "--arpa", str(files / "kn.arpa")])  # tiny data: discounts cannot be computed
    assert kn.exit_code == 2 and "--discount-fallback" in kn.output

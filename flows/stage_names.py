"""The stage names in run order, without the stage table's imports (the CLI's help lists them, and a
``--help`` must import no stage library). ``flows.stages`` checks its table against this tuple."""

STAGE_NAMES = ("ingest", "tokenizer", "shards", "ngram", "rnn", "transformer", "infinigram", "evaluate")

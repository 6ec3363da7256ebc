"""The infini-gram (unbounded n-gram) model: a suffix array over the training ids, queried at the longest
matching suffix of each context (Liu et al. 2024). ``suffix_array`` builds the array, ``index`` stores and
queries it memory-mapped, ``model`` is the ``LanguageModel``, ``stage`` the pipeline stage."""

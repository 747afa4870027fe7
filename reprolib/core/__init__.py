"""The engine every paper runs on: the stage graph and pipelines (``pipeline``), the results
store (``results``), atomic files (``io``), the one compressed-model format (``compressed``),
the training loop (``train``), measurement (``measure``), devices, progress bars and the
tables / figures built from records (``report``).  Nothing here knows a paper."""

"""Tools built on the stage graph: ``plan`` (what a profile would run), ``bench`` (measured
speedups), ``export`` (ONNX), ``readme`` (the README's results section) and ``nbclean``
(committed notebooks)."""

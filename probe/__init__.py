"""probe: a linear-probe benchmarking harness for frozen vision encoders."""

__version__ = "0.1.0"

"""Support for the test suite and benchmarks: real servers started from local binaries."""

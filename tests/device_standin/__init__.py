"""Test-only stand-in for an Android phone: an ADB device, its arm64 userland and a benchmark_model stand-in."""

"""Benchmarking on ARM devices (Android over ADB, Linux boards over SSH): output parsing and device handling.

Kept import-light: submodules are imported where used.
"""

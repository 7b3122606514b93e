"""Benchmarks: each Guestlist figure beside its peer, measured in one run on the same servers."""

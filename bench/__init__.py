"""Benchmarks: each Guestlist figure beside its peer, measured in the same run on the same servers."""

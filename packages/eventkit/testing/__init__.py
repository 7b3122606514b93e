"""In-memory fakes and contract suites shared by the adapters' tests."""

"""eventkit."""

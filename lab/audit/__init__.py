"""A live gateway read over SSH (read-only), its facts, and its twin in the lab."""

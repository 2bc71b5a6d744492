"""Session fixtures that start real S3 servers on loopback (filled in by the storage work)."""

"""The OTLP/HTTP traces door: decode, map to our spans, accept."""

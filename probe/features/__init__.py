"""The feature stage: cached embeddings per (encoder config, dataset config, source split).

Owns the cache (fingerprints, verification), batched extraction (loading, OOM fallback,
resumable checksummed shards), the per-entry lock and torchrun sharding. May import `core`,
`encoders` and `datasets`; the probe stages only read the entries it has finished.
"""

"""Everything between files on disk and padded batches: manifests, media, alignment, batching."""

"""Bytes on disk, atomically: the safetensors header reader and streaming writer (``store``),
the temp-file-validate-rename commit every writer uses (``atomic``), output checks and tensor
writers (``outputs``), split outputs and their index (``split``), shard manifests, pipes."""

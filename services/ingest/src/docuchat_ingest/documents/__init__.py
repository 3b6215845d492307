"""Documents: upload (streamed multipart), list, get, delete and reindex."""

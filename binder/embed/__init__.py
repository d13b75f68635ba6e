"""Files → vectors: discover files, decode them on a thread pool, encode in batches, write shards.

``pipeline`` (discover, embed_items), ``workers`` (the decode pool), ``shards`` (row-aligned
``.npy`` + ``.jsonl`` shards and their manifest). Submodules are imported where used, so that
importing one part does not load the model stack.
"""

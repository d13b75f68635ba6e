"""The persistent cross-modal index and everything that reads it.

``store`` (snapshots), ``integrity`` (what readers and writers check before trusting a folder),
``verify`` (``anybind index verify`` / ``repair``), ``writer`` (single writer, atomic commits,
tombstones), ``build`` (build/add/rm/compact), ``search`` (EmbeddingIndex over a backend),
``backends`` (exact and faiss behind one name table), ``ann_cache``, ``query`` (query
expressions), ``classify``, ``ray_job`` (Ray Data builds), ``lance`` (LanceDB export).
"""

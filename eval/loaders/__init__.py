"""Benchmark loaders (eval): one module per family of dataset layouts, named by ``emocap.eval.registry``.

- :mod:`.ferplus`: ``ferplus``, ``ferplus-soft``; :mod:`.compound`: ``ferplus-compound`` (core's FER+ reader).
- :mod:`.imagefolder`: ``imagefolder`` (core's ImageFolder class-folder rule).
- :mod:`.in_the_wild`: RAF-DB, AffectNet, FER2013, SFEW, CAER-S, ExpW (their official layouts).
- :mod:`.posed`: CK+, JAFFE, KDEF, and subject-disjoint folds.
- :mod:`.video`: DFEW, FERV39k, MAFW, AFEW (core's frame sampler, :mod:`emocap.readers.frames`).
- :mod:`.generic`: ``csv``, ``webdataset``, ``hf`` (core's label-file, webdataset and HF readers).
- :mod:`.common`: helpers every loader shares.

Nothing is imported here: the registry imports a loader module only when its benchmark is loaded.
"""

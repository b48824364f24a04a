"""emocap.captioning: face images -> EmoCap-style caption datasets (``emocap caption``; see docs/captions.md).

Flow: ``sources`` (samples from the core readers, ``emocap.readers``) -> ``analysis`` (``landmarks`` +
``action_units``) -> ``facts`` (with ``facs``) -> a writer (``templates``, ``llm_local``, ``endpoint``; shared checks in ``writers``) -> ``build``
(shards) -> ``stats`` (report, HF ImageFolder). ``class_prompts`` writes class descriptions with the same writers.
"""

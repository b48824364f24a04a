"""emocap.captioning: face images -> EmoCap-style caption datasets (``emocap caption``; see docs/captions.md).

Flow: ``sources`` (samples from the core readers, ``emocap.readers``) -> core's ``emocap.face_analysis`` (landmarks + action units)
-> ``facts`` (with ``facs_knowledge``) -> a writer (``templates``, ``llm_local``, ``endpoint``; shared base in
``model_writer``, chosen by ``writers.make_writer``) -> ``shards`` (webdataset shards in core's
``emocap.caption_records`` format; ``run_settings`` guards resumes) -> ``stats`` (report, HF ImageFolder).
``class_prompts`` writes class descriptions with the same writers.
"""

"""learn: what the station learns from its own parts: a LoRA fine-tune of the judge's model on an
exported dataset (:mod:`.train`), the merge of the adapter into a full checkpoint that the judge loads
and ``tools/quantize_awq.py`` quantizes (:mod:`.merge`), and the model versions the station serves
(:mod:`.models`, scored by :mod:`.evaluation`). The review queue and the dataset export live in
``edge_inspector.review`` and ``edge_inspector.dataset``.

Importing this package imports no torch; the modules that train or merge import it when called.
"""

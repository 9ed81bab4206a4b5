"""The learning loop's training side: a chat-format dataset (written by ``dataset export``), a LoRA
fine-tune of the judge's model on it (:mod:`.train`), and the merge of the adapter into a full
checkpoint that the judge loads and ``tools/quantize_awq.py`` quantizes (:mod:`.merge`).

Importing this package imports no torch; the modules that train or merge import it when called.
"""

"""The learning loop's data set: labelled inspections as chat conversations, built with the judge's own
prompt (``export``), and synthetic boards with templated descriptions (``synthetic``, ``describe``)."""

"""learn: what the station learns from its own parts (review, dataset, training, model versions)."""

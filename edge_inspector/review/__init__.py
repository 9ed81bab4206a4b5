"""Review: what people say of the station's inspections (labels) and which parts they should look at
(the review queue). One owner of the ``labels`` table for every door (the CLI, the HTTP API)."""

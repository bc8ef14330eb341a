"""The read-only audit web UI (``labelgate ui``): traces, labels with their evidence,
decisions with their rule chains, eval runs with samples, transcripts and scores."""

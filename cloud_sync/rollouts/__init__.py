"""Staged rollouts (issue 10): canary, bake, waves, model-health verdicts and rollback,
advanced by the elected controller from rows in the store."""

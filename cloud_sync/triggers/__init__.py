"""Retraining triggers: policy, controller step (drift windows -> scores -> trigger)."""

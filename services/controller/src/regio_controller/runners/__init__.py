"""The region's runners: their heartbeats (observed state) and what each is told to run (desired state)."""

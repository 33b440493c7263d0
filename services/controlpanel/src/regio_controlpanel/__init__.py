"""Control Panel: the public API (Divio v3 compatible) and web frontend; orchestrates deployments."""

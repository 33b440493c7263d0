"""What the controller consumes from JetStream, and under which durable names."""

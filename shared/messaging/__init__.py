"""Messaging: topology, broker adapters (RabbitMQ and in-process), outbox relay."""

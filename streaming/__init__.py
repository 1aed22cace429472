"""The Kafka side: local broker, topic admin, producers, the loader and dead letters."""

"""The action outbox: what fired triggers ask for (command, webhook, MQTT event), run
with retries by the leader; every attempt is a row."""

"""MQTT: results from a durable outbox, availability, state, stats and a few commands.

Importing this package imports no paho: the config and the outbox table are usable without it.
:func:`edge_inspector.outputs.mqtt.publisher.build_mqtt` wires the parts for the daemon.
"""

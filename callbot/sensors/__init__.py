"""Sensor data: measurements, the delta codec, backpressure, generators."""

"""Sensor overlays drawn into outgoing video: badges, waveform strips, labels."""

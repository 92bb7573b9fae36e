"""callbot: headless WebRTC call agents for Sensocto calls."""

__version__ = "0.1.0"

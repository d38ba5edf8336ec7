"""mnetdeploy: MobileNet from a YAML description to a measured, gated edge deployment."""

__version__ = "0.1.0"

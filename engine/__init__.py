"""livemix engine: session model, real-time kernels, backends, recorder."""
__version__ = "0.1.0"

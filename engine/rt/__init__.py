"""The real-time boundary: state allocation, rings, and the block function."""

"""The operator library: every built-in series function with a batch and a streaming kernel.

See `runtime.ops.registry` for the registry (`OPERATORS`) and `runtime.ops.base` for the conventions.
"""

"""Why models are built the way they are: receptive field, memory of a training step, FLOPs.

``receptive_field`` traces the real operator graph; ``memory_profile`` measures the tensors
autograd saves for backward against the parameters; ``count_flops`` uses torch's flop counter.
All three run on the ``meta`` device, so they cost neither time nor memory.
"""

from seglab.analysis.memory import MemoryReport, count_flops, count_parameters, memory_profile
from seglab.analysis.receptive_field import ReceptiveField, receptive_field

__all__ = ["MemoryReport", "ReceptiveField", "count_flops", "count_parameters", "memory_profile", "receptive_field"]

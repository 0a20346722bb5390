"""Why models are built the way they are: receptive field, memory of a training step, FLOPs,
and up-sampling artefacts.

``receptive_field`` traces the real operator graph; ``memory_profile`` measures the tensors
autograd saves for backward against the parameters; ``count_flops`` uses torch's flop counter.
All three run on the ``meta`` device, so they cost neither time nor memory.
``measured_peak_bytes`` runs a real CPU step under torch's profiler; ``effective_receptive_field``
back-propagates from one output pixel (Luo et al. 2016); ``polyphase_ripple`` and
``checkerboard_energy`` measure checkerboard artefacts (boundary F1 is in :mod:`seglab.metrics`).
"""

from seglab.analysis.artifacts import checkerboard_energy, polyphase_ripple, power_spectrum
from seglab.analysis.effective_rf import effective_receptive_field, effective_rf_size
from seglab.analysis.memory import (
    MemoryReport,
    budget_side,
    count_flops,
    count_parameters,
    measured_peak_bytes,
    memory_profile,
)
from seglab.analysis.receptive_field import (
    ReceptiveField,
    receptive_field,
    receptive_field_per_layer,
)

__all__ = [
    "MemoryReport",
    "ReceptiveField",
    "budget_side",
    "checkerboard_energy",
    "count_flops",
    "count_parameters",
    "effective_receptive_field",
    "effective_rf_size",
    "measured_peak_bytes",
    "memory_profile",
    "polyphase_ripple",
    "power_spectrum",
    "receptive_field",
    "receptive_field_per_layer",
]

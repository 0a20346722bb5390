"""seglab: semantic, instance and panoptic image segmentation in PyTorch.

Sub-packages (import what you need; nothing heavy is imported here):
    seglab.data       readers, synthetic nuclei, label targets, transforms, datasets
    seglab.models     create_model() and the MODELS dict
    seglab.losses     region, distribution and embedding losses
    seglab.metrics    pixel, instance and panoptic metrics
    seglab.instances  decoders from probabilities / embeddings to instance maps
    seglab.spec       what a trained model is: recipes and the checkpoint format
    seglab.inference  Predictor, sliding windows, stitching, writers
    seglab.engine     Lightning training glue
    seglab.analysis   receptive field, memory and FLOP analysis
"""

__version__ = "0.1.0"

"""The lecture's claims, reproduced: one module per claim, each turning it into figures and numbers.

``run_experiment(name, out=DIR, quick=False)`` runs one and writes ``DIR/NAME.png`` (or several
PNGs), ``DIR/NAME.json`` (every number plotted) and ``DIR/NAME.md`` (claim, setup and a result
paragraph generated from the numbers); ``run_all`` runs every one and writes ``DIR/index.md``.
``quick=True`` shrinks every experiment to well under a minute on 2 CPU cores.

===================  =========================================================================
memory               parameter vs activation memory of one training step, and the size at
                     which a memory budget runs out
receptive-field      theoretical vs effective receptive field over depth: all-conv, pooling,
                     dilation; per layer of the library's models
checkerboard         polyphase ripple and spectra of up-sampling decoders, at init and trained
upsampling           the encoder-decoder with each up-sampling, with and without skips
imbalance            losses on a foreground of 10%, 1% and 0.1% of the pixels
routes               instance routes on nuclei: AJI, PQ, speed, overlays
===================  =========================================================================
"""

from seglab.experiments.runner import EXPERIMENTS, run_all, run_experiment

__all__ = ["EXPERIMENTS", "run_all", "run_experiment"]

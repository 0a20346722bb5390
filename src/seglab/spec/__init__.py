"""What a trained model is: its recipe (targets, heads, decoder input) and its checkpoint format.

Training (:mod:`seglab.engine`) writes a model by these rules and prediction
(:mod:`seglab.inference`) reads it back by the same ones, so both import this package and it
imports neither of them (nor Lightning):

    seglab.spec.recipes      task + instance method -> targets, extra heads, decoder and the
                             decoder's input stack (:func:`~seglab.spec.recipes.decoder_input`)
    seglab.spec.checkpoint   the checkpoint file: metadata block, save / load (``weights_only``),
                             rebuilding the recorded model without downloading anything
"""

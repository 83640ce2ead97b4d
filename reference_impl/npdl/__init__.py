"""npdl: a small NumPy deep-learning framework, one module per course chapter.

    core          the Layer base class and shared input checks
    gradcheck     ch. 1  backpropagation and finite-difference checks
    activations   ch. 2
    initializers  ch. 3
    layers        ch. 4
    losses        ch. 5
    models        ch. 6  Sequential and the training loop (with callbacks, metrics,
                         and data: mini-batches and the offline datasets)
    optimizers    ch. 7  (with schedules)
    conv          ch. 9  im2col/col2im, Conv2D and pooling on NCHW images
"""

__version__ = "0.1.0"

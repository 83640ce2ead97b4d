"""npdl: a small NumPy deep-learning framework, one module per course chapter.

    gradcheck     ch. 1  backpropagation and finite-difference checks
    activations   ch. 2
    initializers  ch. 3
    layers        ch. 4
    losses        ch. 5
    models        ch. 6  Sequential and the training loop
    optimizers    ch. 7  (with schedules)
    data          ch. 8  offline datasets and batching
"""

__version__ = "0.1.0"

"""The supernet side: search spaces and the ``Arch`` value (``space``), the blocks of each model family
(``blocks``), a standalone network built from an ``Arch`` with its input setting (``net``), the weight-sharing
supernet (``supernet``), the path samplers that choose which subnets a training step trains (``paths``), the
recipe that makes a supernet learn at small budgets (``recipe``), the training loop (``train``) and the supernet
checkpoint, read and written without the training loop (``supernet_checkpoint``).

It imports only what lies below it: the data's input settings, the checkpoint file reader (``nasdeploy.checkpoints``),
errors, atomic writes, devices and progress bars (``tests/test_structure.py`` holds the table).
"""

"""LightningDataModules that hold a data set in memory as uint8 and serve whole batches.

MNIST / Fashion-MNIST come from IDX files (``mnist.py``), any folder of images from a decoded
cache (``images.py``). Add a datamodule: subclass :class:`aelightning.data.base.InMemoryDataModule`,
implement ``_load`` (fill ``<split>_images`` / ``<split>_labels`` and ``split_sizes``) and add
``conf/data/<name>.yaml``; batching, device placement and DDP sharding come from the base class.
"""

"""Objectives: one ``LightningModule`` per variant, each with its own loss, on any net.

Add an objective: subclass :class:`aelightning.models.base.AutoencoderModule` in a new
module here, override :meth:`loss` (named terms; ``loss`` is their total) and, if the code is
made differently (e.g. a VAE's sample), :meth:`forward_step`; then add ``conf/model/<name>.yaml``
with its ``_target_``. The tests find it from that file. Noise (``noise.py``) and learning-rate
schedules (``schedulers.py``) are config groups of their own (``conf/noise``,
``conf/model/scheduler``)::

    class MyAutoencoder(AutoencoderModule):
        def loss(self, x, x_in, code, x_hat):
            terms = super().loss(x, x_in, code, x_hat)     # {"recon": ..., "loss": ...}
            terms["l2_code"] = 1e-3 * code.pow(2).mean()
            terms["loss"] = terms["loss"] + terms["l2_code"]
            return terms
"""

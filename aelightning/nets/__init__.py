"""Architectures: plain ``nn.Module``\\ s with ``encode``/``decode``, independent of the objective.

Plug your own network: subclass :class:`aelightning.nets.base.AutoencoderNet`, set
``code_shape`` and ``latent_shape``, keep the encoder's parameters under ``self.encoder``,
and add ``conf/net/<name>.yaml`` (its ``_target_`` and widths); every objective then runs on it::

    class TinyNet(AutoencoderNet):
        def __init__(self, input_shape, code_multiplier=1, latent_dim=8):
            super().__init__(input_shape, code_multiplier)
            size, code = math.prod(self.input_shape), latent_dim * code_multiplier
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(size, code))
            self.decoder = nn.Sequential(nn.Linear(latent_dim, size), nn.Unflatten(1, input_shape))
            self.code_shape, self.latent_shape = (code,), (latent_dim,)

        def encode(self, x):
            return self.encoder(x)

        def decode(self, latent, skips=None):
            return self.decoder(latent)
"""

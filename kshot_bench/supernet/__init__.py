"""nn.Modules: K-shot parameters and ops, the NB201 supernet and stand-alone network."""

"""Tests of lionspec.impls.torch: the torch.optim API and the three code paths."""

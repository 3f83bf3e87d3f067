"""The backend boundary: real Vast or the simulator, chosen once when a Client is built.

A :class:`~vastnb.backends.base.Backend` supplies the REST transport, how to reach a box
(SSH, or a local process for a simulated one) and how a box destroys itself. Nothing
above this package asks which backend it has."""

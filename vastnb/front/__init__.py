"""The fronts: the ``%vast`` magics, the ``vastnb`` command, both built from one command
table (:mod:`~vastnb.front.commands`), the widgets, and the demo."""

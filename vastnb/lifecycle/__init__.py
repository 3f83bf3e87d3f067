"""An instance's life: its states (:mod:`~vastnb.lifecycle.states`), the one owner that
records and changes them (:class:`~vastnb.lifecycle.fleet.Fleet`), the state store with its
migrations, the launch sequence, the boot switch, and :class:`~vastnb.lifecycle.box.Box`."""
